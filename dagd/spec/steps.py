"""One step's YAML → a Step, for both naming generations (docs/compat.md)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagd.spec.executors import check_action, check_container
from dagd.spec.fields import Ctx, frozen, scalar_text, type_name
from dagd.spec.keys import (
    BUILTIN_ACTIONS,
    CLASSIC_STEP_KEYS,
    FOREACH_KEYS,
    LEGACY_TYPES,
    NO_EFFECT_STEP,
    PARALLEL_KEYS,
    REFUSED_STEP,
    RESERVED_STEP_IDS,
    SIGNALS,
    STEP_KEYS,
    refused_action,
)
from dagd.spec.model import (
    ContinueOn,
    Foreach,
    Location,
    Parallel,
    Precondition,
    Step,
    StepKind,
    SubDagCall,
)
from dagd.spec.policies import (
    parse_continue_on,
    parse_env,
    parse_outputs,
    parse_preconditions,
    parse_repeat,
    parse_retry,
)
from dagd.spec.yamlnode import Node

STEP_ID = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")
LEGACY_EXEC_FIELDS = (
    "call",
    "command",
    "config",
    "exec",
    "llm",
    "messages",
    "params",
    "routes",
    "script",
    "shell",
    "shell_args",
    "shell_packages",
    "type",
    "value",
    "executor",
)


@dataclass
class StepScope:
    """What a step's reading depends on besides its own node."""

    defaults: dict[str, Node] = field(default_factory=dict)
    # Decides whether `run: WORD` calls a sub-DAG (classic) or runs a command.
    run_is_sub_dag: Callable[[str], bool] = lambda _word: False
    handler: bool = False


def build_step(ctx: Ctx, node: Node, path: str, auto_index: int, scope: StepScope) -> Step | None:
    loc = Location(node.line, node.col)
    if node.kind == "scalar" and isinstance(node.value, str):
        ctx.warn(node, path, "string shorthand is deprecated; use run", once=f"short:{path}")
        text = node.value.strip()
        if not text:
            ctx.error(node, path, "step command is empty")
            return None
        short = StepKind.SCRIPT if "\n" in text else StepKind.COMMAND
        return Step(
            name=f"cmd_{auto_index}",
            kind=short,
            path=path,
            location=loc,
            commands=() if short is StepKind.SCRIPT else (text,),
            script=text if short is StepKind.SCRIPT else None,
        )
    allowed = STEP_KEYS | CLASSIC_STEP_KEYS
    m = ctx.mapping(node, path, allowed, what="a step")
    if m is None:
        return None
    for old, new in (("dir", "working_dir"), ("precondition", "preconditions")):
        if old in m:
            ctx.warn(m[old], f"{path}.{old}", f'"{old}" is the Dagu 1.x key; use "{new}"', once=f"old:{old}")
            m.setdefault(new, m.pop(old))
    for old, new in (
        ("command", "run"),
        ("script", "run (a multi-line string)"),
        ("executor", "action + with"),
        ("call", "action: dag.run + with.dag"),
    ):
        if old in m:
            ctx.warn(m[old], f"{path}.{old}", f"{old} is deprecated; use {new}", once=f"dep:{old}")
    for k, v in scope.defaults.items():
        if k not in ("env", "preconditions"):
            m.setdefault(k, v)

    def opt(name: str, reader: Callable[[Node, str], Any]) -> Any:
        return reader(m[name], f"{path}.{name}") if name in m else None

    step_id = None
    if "id" in m:
        step_id = (ctx.string(m["id"], f"{path}.id") or "").strip()
        if ctx.classic and re.match(r"^[a-zA-Z][a-zA-Z0-9_-]*$", step_id) and "-" in step_id:
            ctx.warn(
                m["id"],
                f"{path}.id",
                f'step ID "{step_id}" has "-": accepted in Dagu 1.x files; current Dagu needs "_"',
            )
        elif not STEP_ID.match(step_id):
            ctx.error(
                m["id"],
                f"{path}.id",
                f"invalid step ID format: must match {STEP_ID.pattern} (use '_' instead of '-'), got \"{step_id}\"",
            )
        elif len(step_id) > 40:
            ctx.error(m["id"], f"{path}.id", "step ID must be at most 40 characters")
        elif step_id.lower() in RESERVED_STEP_IDS:
            ctx.error(m["id"], f"{path}.id", f"step ID '{step_id}' is a reserved word")
    name = (ctx.string(m["name"], f"{path}.name") or "").strip() if "name" in m else ""
    if len(name.encode()) > 255:
        ctx.error(m["name"], f"{path}.name", "step name must be at most 255 characters (bytes of UTF-8)")

    fields: dict[str, Any] = {"path": path, "location": loc, "id": step_id or None}
    fields["description"] = (opt("description", ctx.string) or "").strip()
    selected, prefix = _selector(ctx, m, path, fields, scope)
    if selected is None:
        return None
    kind: StepKind = selected
    fields["kind"] = kind
    fields["name"] = name or step_id or f"{prefix}_{auto_index}"

    env: list[tuple[str, str]] = []
    for src in (scope.defaults.get("env"), m.get("env")):
        if src is not None:
            env.extend((k, v) for k, v, _ in parse_env(ctx, src, f"{path}.env"))
    fields["env"] = tuple(env)
    pre: list[Precondition] = []
    for src in (scope.defaults.get("preconditions"), m.get("preconditions")):
        if src is not None:
            pre.extend(parse_preconditions(ctx, src, f"{path}.preconditions"))
    fields["preconditions"] = tuple(pre)
    if "depends" in m and not scope.handler:
        fields["depends"] = _depends(ctx, m["depends"], f"{path}.depends")
    if "working_dir" in m:
        fields["working_dir"] = ctx.string(m["working_dir"], f"{path}.working_dir")
    fields["continue_on"] = opt("continue_on", lambda n, k: parse_continue_on(ctx, n, k)) or ContinueOn()
    fields["retry_policy"] = opt("retry_policy", lambda n, k: parse_retry(ctx, n, k))
    fields["repeat_policy"] = opt("repeat_policy", lambda n, k: parse_repeat(ctx, n, k))
    fields["timeout_sec"] = opt("timeout_sec", ctx.number) or 0
    fields["mail_on_error"] = bool(opt("mail_on_error", ctx.boolean))
    if "signal_on_stop" in m:
        sig = (ctx.string(m["signal_on_stop"], f"{path}.signal_on_stop") or "").strip().upper()
        sig = sig if sig.startswith("SIG") else f"SIG{sig}"
        if sig not in SIGNALS:
            ctx.error(
                m["signal_on_stop"],
                f"{path}.signal_on_stop",
                f"invalid signal: {scalar_text(m['signal_on_stop'].value)} (use a name such as SIGTERM, SIGINT, SIGKILL)",
            )
        fields["signal_on_stop"] = sig
    if "output" in m:
        out = m["output"]
        if out.kind == "map":
            fields["output_fields"] = frozen(out.plain())
        else:
            var = (ctx.string(out, f"{path}.output") or "").strip().lstrip("$")
            if var and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", var):
                if ctx.classic:  # Dagu 1.x stored it anyway; nothing can read such a name
                    ctx.warn(out, f"{path}.output", f'output "{var}" is not a variable name; it is ignored')
                    var = ""
                else:
                    ctx.error(out, f"{path}.output", f'output variable "{var}" must match ^[A-Za-z_][A-Za-z0-9_]*$')
            fields["output"] = var or None
    if "outputs" in m:
        fields["outputs"] = parse_outputs(ctx, m["outputs"], f"{path}.outputs", step_id)
    for stream in ("stdout", "stderr"):
        if stream in m:
            n = m[stream]
            if n.kind == "map":
                fields.setdefault("extra", {})[stream] = n.plain()
            else:
                fields[stream] = ctx.string(n, f"{path}.{stream}")
    if "log_output" in m:
        lo = ctx.string(m["log_output"], f"{path}.log_output")
        if lo not in ("separate", "merged"):
            ctx.error(m["log_output"], f"{path}.log_output", f'log_output must be "separate" or "merged", got "{lo}"')
        fields["log_output"] = lo
    if "parallel" in m:
        if kind is not StepKind.SUB_DAG:
            ctx.error(
                m["parallel"],
                f"{path}.parallel",
                "parallel currently requires action: dag.run or dag.enqueue (or call)",
            )
        fields["parallel"] = _parallel(ctx, m["parallel"], f"{path}.parallel")
    if "dependencies" in m:
        deps = ctx.string_list(m["dependencies"], f"{path}.dependencies") or []
        for d in deps:
            if "${" in d or not d.strip():
                ctx.error(
                    m["dependencies"],
                    f"{path}.dependencies",
                    f'dependencies must be non-empty literal paths or globs, got "{d}"',
                )
    if "container" in m:
        check_container(ctx, m["container"], f"{path}.container")
    if kind is StepKind.ACTION and fields.get("action"):
        check_action(
            ctx, loc, path, fields["action"], fields["config"], fields.get("commands", ()), fields.get("script")
        )
    extra = {
        k: m[k].plain()
        for k in (
            "approval",
            "worker_selector",
            "container",
            "tools",
            "inputs",
            "output_schema",
            "dependencies",
            "shell_packages",
        )
        if k in m
    }
    for key, why in NO_EFFECT_STEP.items():
        if key in m:
            ctx.warn(m[key], f"{path}.{key}", f"`{key}:` has no effect in dagd: {why}", once=f"step-{key}")
            ctx.no_effect.append(f"step `{key}:` has no effect: {why}")
    for key, why in REFUSED_STEP.items():
        if key in m:
            ctx.warn(
                m[key],
                f"{path}.{key}",
                f"`{key}:` {why}: dagd refuses to run this DAG rather than run the step without it",
            )
    packages = fields["config"].get("shell_packages") if "run" in m else None
    if packages:
        extra["shell_packages"] = packages
    if extra:
        fields["extra"] = frozen({**fields.get("extra", {}), **extra})
    elif "extra" in fields:
        fields["extra"] = frozen(fields["extra"])
    return Step(**fields)


def _depends(ctx: Ctx, node: Node, key: str) -> tuple[str, ...]:
    if node.kind == "scalar":
        return () if node.value is None else (scalar_text(node.value),)
    if node.kind == "seq" and all(i.kind == "scalar" and i.value is not None for i in node.value):
        return tuple(scalar_text(i.value) for i in node.value)
    ctx.error(node, key, f"depends must be a string or array of strings, got {type_name(node)}")
    return ()


def _command_text(ctx: Ctx, node: Node, key: str) -> list[str] | None:
    if node.kind == "scalar" and node.value is not None:
        return [scalar_text(node.value)]
    if node.kind == "seq":
        out = []
        for i, item in enumerate(node.value):
            if item.kind == "map" and len(item.value) == 1:  # `- echo a: b` reads as a mapping
                ((k, v),) = item.value.items()
                out.append(f"{k}: {scalar_text(v.value) if v.kind == 'scalar' else v.plain()}")
            elif item.kind == "scalar":
                if item.value is not None and scalar_text(item.value).strip():
                    out.append(scalar_text(item.value))
            else:
                ctx.error(item, f"{key}[{i}]", "step command must be an array of strings or a string")
                return None
        return out
    ctx.error(node, key, f"step command must be an array of strings or a string, got {type_name(node)}")
    return None


def _selector(
    ctx: Ctx, m: dict[str, Node], path: str, f: dict[str, Any], scope: StepScope
) -> tuple[StepKind | None, str]:
    """Decide what the step executes; fill the matching fields. Returns (kind, auto-name prefix)."""
    run = m.get("run")
    run_sub_dag = (
        ctx.classic
        and run is not None
        and run.kind == "scalar"
        and isinstance(run.value, str)
        and bool(re.match(r"^[A-Za-z0-9_./-]+$", run.value.strip()))
        and ("parallel" in m or "params" in m or scope.run_is_sub_dag(run.value.strip()))
    )
    if "action" in m and "run" in m:
        ctx.error(m["action"], f"{path}.action", "run cannot be used together with action")
        return None, ""
    if ("action" in m or ("run" in m and not run_sub_dag)) and not ctx.classic:
        for legacy in LEGACY_EXEC_FIELDS:
            if legacy in m:
                selector = "action" if "action" in m else "run"
                ctx.error(m[legacy], f"{path}.{legacy}", f"{selector} cannot be used together with {legacy}")
                return None, ""
    if "with" in m and "config" in m:
        ctx.error(m["with"], f"{path}.with", 'fields "with" and "config" cannot be used together; use "with"')
    config_node = m.get("with") or m.get("config")
    config = config_node.plain() if config_node is not None else {}
    if config_node is not None and config_node.kind != "map":
        ctx.error(config_node, f"{path}.with", f"with must be a mapping, got {type_name(config_node)}")
        config = {}
    shell = _shell(ctx, m, config, path)
    if shell:
        f["shell"] = shell
    if "foreach" in m:
        fe = m["foreach"]
        if ctx.classic and fe.kind == "scalar" and isinstance(fe.value, str):
            # Dagu 1.16's example form `foreach: "[1, 2, 3]"`: the step itself runs once per item
            ctx.warn(
                fe,
                f"{path}.foreach",
                "a foreach string is a Dagu 1.16 example form; read as items of a loop over this step",
                once="foreach-str",
            )
            body_node = Node(
                {k: v for k, v in m.items() if k not in ("foreach", "output", "depends", "name")},
                fe.line,
                fe.col,
                "map",
            )
            inner = build_step(ctx, body_node, f"{path}.foreach", 1, StepScope(run_is_sub_dag=scope.run_is_sub_dag))
            f["foreach"] = Foreach(fe.value, (inner,) if inner is not None else ())
            return StepKind.FOREACH, "foreach"
        f["foreach"] = _foreach(ctx, fe, f"{path}.foreach", scope)
        return StepKind.FOREACH, "foreach"

    action: str | None = None
    if "action" in m:
        action = (ctx.string(m["action"], f"{path}.action") or "").strip()
        redis_op = action.startswith("redis.") and re.fullmatch(r"redis\.[A-Za-z][A-Za-z0-9_.]*", action)
        if action not in BUILTIN_ACTIONS and "@" not in action and not redis_op:
            ctx.error(m["action"], f"{path}.action", f'unknown action "{action}"')
    legacy_type = m.get("type") or m.get("executor")
    if legacy_type is not None and action is None:
        if legacy_type.kind == "map":  # v1 executor: {type: docker, config: {...}}
            em = legacy_type.value
            tname = scalar_text(em["type"].value) if "type" in em and em["type"].kind == "scalar" else ""
            if "config" in em:
                config = em["config"].plain()
        else:
            tname = scalar_text(legacy_type.value).strip()
        if tname not in LEGACY_TYPES:
            ctx.error(legacy_type, f"{path}.type", f'unknown action "{tname}" (step type/executor)')
            return None, ""
        action = LEGACY_TYPES[tname] or None
    if "exec" in m:
        action = "exec"
        config = m["exec"].plain()
    f["config"] = frozen(config if isinstance(config, dict) else {})
    if action:
        f["action"] = action
        why = refused_action(action)
        if why:
            where = m.get("action") or legacy_type or next(iter(m.values()))
            ctx.warn(
                where, f"{path}.action", f"{action} is refused by dagd: it {why}; this step fails when it would start"
            )

    call_target: str | None = None
    params: Any = m["params"].plain() if "params" in m else None
    if action in ("dag.run", "dag.enqueue"):
        target = config.get("dag") if isinstance(config, dict) else None
        call_target = scalar_text(target) if target is not None else None
        params = config.get("params", params) if isinstance(config, dict) else params
        if call_target is None and "command" in m:
            call_target = scalar_text(m["command"].value)
        if not call_target:
            ctx.error(
                m.get("action") or m.get("type") or m.get("executor"),
                f"{path}.with.dag",
                "dag.run needs with.dag: the name or path of the DAG to run",
            )
            return None, ""
    elif "call" in m:
        call_target = ctx.string(m["call"], f"{path}.call")
    elif run_sub_dag and run is not None:
        call_target = str(run.value).strip()
    if call_target is not None:
        f["sub_dag"] = SubDagCall(call_target, frozen(params), wait=action != "dag.enqueue")
        return StepKind.SUB_DAG, "dag"

    body = m.get("run") or m.get("command")
    commands = _command_text(ctx, body, f"{path}.{'run' if 'run' in m else 'command'}") if body is not None else []
    if commands is None:
        return None, ""
    script_node = m.get("script")
    if script_node is not None:
        script = ctx.string(script_node, f"{path}.script")
        if action and commands:  # v1 executors: `command:` says what (POST URL, a jq filter), `script:` with what
            f["commands"] = tuple(commands)
        elif ctx.classic and commands:  # v1: `command: python` + `script:` = the interpreter
            f["interpreter"] = tuple(shlex.split(" ".join(commands)))
        f["script"] = (script or "").strip("\n")
        return (StepKind.ACTION if action else StepKind.SCRIPT), (action or "script").split(".")[0]
    if body is not None and body.kind == "seq" and ctx.classic and "command" in m:
        commands = [shlex.join(commands)]  # v1 arrays were one command with its arguments
    if len(commands) == 1 and "\n" in commands[0] and body is not None and body.kind == "scalar":
        f["script"] = commands[0]
        return (StepKind.ACTION if action else StepKind.SCRIPT), (action or "script").split(".")[0]
    f["commands"] = tuple(commands)
    if action and action != "noop":
        return StepKind.ACTION, action.split(".")[0]
    if body is not None and not any(c.strip() for c in commands):
        ctx.error(body, f"{path}.run", "step command is empty")
        return None, ""
    if commands:
        return StepKind.COMMAND, "cmd"
    if action == "noop" or "output" in m:
        return StepKind.NOOP, "noop"
    ctx.error(
        None if not m else next(iter(m.values())),
        path,
        "step has nothing to execute: give it run, action, call, script or foreach",
    )
    return None, ""


def _shell(ctx: Ctx, m: dict[str, Node], config: Any, path: str) -> tuple[str, ...]:
    node = m.get("shell")
    parts: list[str] = []
    if node is None and isinstance(config, dict) and "shell" in config and "run" in m:
        value = config["shell"]
        parts = shlex.split(value) if isinstance(value, str) else [scalar_text(v) for v in value]
        parts += [scalar_text(a) for a in config.get("shell_args", []) or []]
        return tuple(parts)
    if node is not None:
        if node.kind == "seq":
            parts = [scalar_text(i.value) for i in node.value if i.kind == "scalar"]
        else:
            text = ctx.string(node, f"{path}.shell") or ""
            try:
                parts = shlex.split(text)
            except ValueError as exc:
                ctx.error(node, f"{path}.shell", f"cannot split shell command: {exc}")
    if "shell_args" in m:
        parts += ctx.string_list(m["shell_args"], f"{path}.shell_args") or []
    return tuple(parts)


def _max_concurrent(ctx: Ctx, node: Node, key: str) -> int:
    v = node.value
    if node.kind != "scalar" or isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
        ctx.error(
            node,
            key,
            f"max_concurrent must be an integer from 1 through 1000, got {scalar_text(v) if node.kind == 'scalar' else type_name(node)}",
        )
        return 10
    return v


def _items(ctx: Ctx, node: Node, key: str, *, flat: bool) -> tuple[Any, ...] | str:
    if node.kind == "scalar" and isinstance(node.value, str):
        return node.value
    if node.kind != "seq":
        ctx.error(node, key, f"items must be a list or a variable reference, got {type_name(node)}")
        return ()
    if flat:
        for i, item in enumerate(node.value):
            if item.kind == "seq" or (item.kind == "map" and any(v.kind != "scalar" for v in item.value.values())):
                ctx.error(item, f"{key}[{i}]", "parallel items must be scalars or flat mappings of scalars")
    return tuple(frozen(node.plain()))


def _parallel(ctx: Ctx, node: Node, key: str) -> Parallel:
    if node.kind == "map":
        m = ctx.mapping(node, key, PARALLEL_KEYS, what="parallel")
        if m is None:
            return Parallel(())
        if "items" not in m:
            ctx.error(node, key, "parallel must have either items array or variable reference")
            return Parallel(())
        mc = _max_concurrent(ctx, m["max_concurrent"], f"{key}.max_concurrent") if "max_concurrent" in m else 10
        return Parallel(_items(ctx, m["items"], f"{key}.items", flat=True), mc)
    return Parallel(_items(ctx, node, key, flat=True))


def _foreach(ctx: Ctx, node: Node, key: str, scope: StepScope) -> Foreach | None:
    m = ctx.mapping(node, key, FOREACH_KEYS, what="foreach")
    if m is None:
        return None
    if "items" not in m or "steps" not in m:
        ctx.error(node, key, "foreach needs items and steps")
        return None
    as_name = (ctx.string(m["as"], f"{key}.as") or "item") if "as" in m else "item"
    if as_name in ("index", "key") or not STEP_ID.match(as_name):
        ctx.error(m.get("as"), f"{key}.as", f'foreach.as must be an identifier other than index/key, got "{as_name}"')
    steps_node = m["steps"]
    body: list[Step] = []
    if steps_node.kind != "seq" or not steps_node.value:
        ctx.error(steps_node, f"{key}.steps", "foreach.steps must be a non-empty sequence")
    else:
        inner = StepScope(run_is_sub_dag=scope.run_is_sub_dag)
        for i, s in enumerate(steps_node.value):
            built = build_step(ctx, s, f"{key}.steps[{i}]", i + 1, inner)
            if built is not None:
                body.append(built)
    mc = _max_concurrent(ctx, m["max_concurrent"], f"{key}.max_concurrent") if "max_concurrent" in m else 10
    collect = m["collect"].plain() if "collect" in m else {}
    key_expr = ctx.string(m["key"], f"{key}.key") if "key" in m else None
    return Foreach(
        _items(ctx, m["items"], f"{key}.items", flat=False),
        tuple(body),
        as_name,
        key_expr,
        mc,
        frozen(collect if isinstance(collect, dict) else {}),
    )
