"""One YAML document → Dag: root keys, base-config merge, steps, handlers, step graph checks."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from dagd.graph import find_cycle
from dagd.spec.executors import check_container, check_mail, check_ssh
from dagd.spec.fields import Ctx, frozen, scalar_text, type_name
from dagd.spec.keys import (
    CLASSIC_ROOT_KEYS,
    DAG_RETRY_KEYS,
    DEFAULTS_KEYS,
    HANDLER_EVENTS,
    HANDLER_NAMES,
    MANAGED_ENV,
    NO_EFFECT_ROOT,
    ROOT_KEYS,
    SECRET_KEYS,
)
from dagd.spec.model import ChainRule, Dag, DagRetryPolicy, DagType, Precondition, ResourceLimits, Secret, Step
from dagd.spec.params import parse_params
from dagd.spec.policies import ENV_NAME, IDENT, parse_env, parse_preconditions
from dagd.spec.schedule import parse_schedule
from dagd.spec.steps import StepScope, build_step
from dagd.spec.yamlnode import Node

DAG_NAME = re.compile(r"^[a-zA-Z0-9_.-]+$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_EXTRA_KEYS = [
    "smtp",
    "error_mail",
    "info_mail",
    "wait_mail",
    "container",
    "ssh",
    "s3",
    "redis",
    "kubernetes",
    "llm",
    "harness",
    "harnesses",
    "registry_auths",
    "resources",
    "artifacts",
    "otel",
    "actions",
    "step_types",
    "tools",
    "run_config",
    "webhook",
    "worker_selector",
    "tasks",
    "log_output",
    "shell_args",
    "functions",
]


def merge_base(base: Node, doc: Node) -> Node:
    """The document over a base config: child keys win, env appended, handlers per event."""
    out = Node(dict(base.value), doc.line, doc.col, "map", keys=dict(base.keys))
    for k, v in doc.value.items():
        b = base.value.get(k)
        if k == "env" and b is not None and b.kind == v.kind == "seq":
            v = Node(list(b.value) + list(v.value), v.line, v.col, "seq")
        elif k in ("handler_on", "handlerOn", "defaults") and b is not None and b.kind == v.kind == "map":
            v = Node({**b.value, **v.value}, v.line, v.col, "map", keys={**b.keys, **v.keys})
        out.value[k] = v
        out.keys[k] = doc.keys.get(k, doc)
    return out


def build_dag(ctx: Ctx, doc: Node, index: int, run_is_sub_dag: Callable[[str], bool]) -> Dag | None:
    m = ctx.mapping(doc, "", ROOT_KEYS | CLASSIC_ROOT_KEYS, what="a DAG")
    if m is None:
        return None
    ctx.no_effect = []  # what this document reads but does not act on: said again at each run
    if "precondition" in m:
        m.setdefault("preconditions", m.pop("precondition"))
    f: dict[str, Any] = {"file": ctx.file, "dialect": ctx.dialect, "document": index}
    stem = os.path.splitext(os.path.basename(ctx.file))[0]
    if "name" in m:
        name = (ctx.string(m["name"], "name") or "").strip()
        if ctx.classic and name and (len(name) > 40 or not DAG_NAME.match(name)):
            ctx.warn(
                m["name"],
                "name",
                f'name "{name}" is accepted in a Dagu 1.x file; current Dagu allows only [a-zA-Z0-9_.-], at most 40 characters',
            )
        elif len(name) > 40:
            ctx.error(m["name"], "name", "name must be less than 40 characters")
        elif name and not DAG_NAME.match(name):
            ctx.error(
                m["name"],
                "name",
                f'name "{name}" must only contain alphanumeric characters, dashes, dots, and underscores',
            )
        f["name"], f["name_explicit"] = name or stem, True
    else:
        f["name"] = stem
    for k in ("description", "group", "queue"):
        if k in m:
            f[k] = (ctx.string(m[k], k) or "").strip()
    if "labels" in m and "tags" in m:
        ctx.error(m["tags"], "tags", "labels and deprecated tags cannot both be set")
    if "labels" in m or "tags" in m:
        f["labels"] = frozen(_labels(ctx, m.get("labels") or m["tags"], "labels" if "labels" in m else "tags"))
    dag_type = DagType.CHAIN if ctx.classic else DagType.GRAPH
    if "type" in m:
        t = ctx.string(m["type"], "type") or ""
        if t not in ("graph", "chain"):
            hint = " (agent and build DAGs are not supported by dagd)" if t in ("agent", "build", "controller") else ""
            ctx.error(m["type"], "type", f"invalid type: {t} (must be one of: graph, chain){hint}")
        else:
            dag_type = DagType(t)
    f["type"] = dag_type
    if "schedule" in m:
        f["schedule"] = parse_schedule(ctx, m["schedule"])
    if "skip_if_successful" in m:
        f["skip_if_successful"] = bool(ctx.boolean(m["skip_if_successful"], "skip_if_successful"))
    if "catchup_window" in m:
        f["catchup_window_sec"] = _duration(ctx, m["catchup_window"], "catchup_window")
    if "overlap_policy" in m:
        op = (ctx.string(m["overlap_policy"], "overlap_policy") or "").lower()
        if op not in ("skip", "all", "latest"):
            ctx.error(
                m["overlap_policy"],
                "overlap_policy",
                f'invalid overlap_policy "{op}": must be "skip", "all", or "latest"',
            )
        f["overlap_policy"] = op
    if "params" in m:
        f["params"], f["params_json"] = parse_params(ctx, m["params"])
    if "env" in m:
        f["env"] = tuple((k, v) for k, v, _ in parse_env(ctx, m["env"], "env"))
    if "dotenv" in m:
        d = m["dotenv"]
        f["dotenv"] = () if d.kind == "seq" and not d.value else tuple([".env", *(ctx.string_list(d, "dotenv") or [])])
    if "consts" in m:
        f["consts"] = _consts(ctx, m["consts"])
    if "working_dir" in m:
        wd = ctx.string(m["working_dir"], "working_dir") or ""
        if wd and not wd.startswith(("/", "~", "$")):
            wd = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(ctx.file)), wd))
        f["working_dir"] = wd
    if "shell" in m:
        s = m["shell"]
        f["shell"] = (
            tuple(ctx.string_list(s, "shell") or [])
            if s.kind == "seq"
            else tuple((ctx.string(s, "shell") or "").split())
        )
    if "shell_args" in m:  # appended to the DAG's shell, as Dagu does; without a shell it has nothing to extend
        args = tuple(ctx.string_list(m["shell_args"], "shell_args") or [])
        if f.get("shell"):
            f["shell"] = (*f["shell"], *args)
        elif args:
            ctx.warn(
                m["shell_args"], "shell_args", "`shell_args:` has no effect without a DAG-level `shell:` (as in Dagu)"
            )
            ctx.no_effect.append("`shell_args:` has no effect without a DAG-level `shell:`")
    if "log_dir" in m:
        f["log_dir"] = ctx.string(m["log_dir"], "log_dir")
    ints = {"hist_retention_days": 0, "max_active_runs": None, "max_active_steps": 0, "max_output_size": 1}
    for k, minimum in ints.items():
        if k in m:
            v = ctx.integer(m[k], k, minimum=minimum)
            if v is not None:
                f[k] = v
    if "hist_retention_runs" in m:
        if "hist_retention_days" in m and not ctx.classic:
            ctx.error(
                m["hist_retention_runs"],
                "hist_retention_runs",
                "hist_retention_days and hist_retention_runs cannot both be specified",
            )
        f["hist_retention_runs"] = ctx.integer(m["hist_retention_runs"], "hist_retention_runs", minimum=1)
    if f.get("hist_retention_days") == 0:
        f["hist_retention_days"] = 30
    for k in ("timeout_sec", "delay_sec", "restart_wait_sec", "max_clean_up_time_sec"):
        if k in m:
            num = ctx.number(m[k], k)
            if num is not None:
                f[k] = num
    if "preconditions" in m:
        f["preconditions"] = parse_preconditions(ctx, m["preconditions"], "preconditions")
    if "mail_on" in m and ctx.classic and m["mail_on"].kind == "map":
        f["mail_on"] = frozen({k.lower(): bool(v.value) for k, v in m["mail_on"].value.items() if v.kind == "scalar"})
    elif "mail_on" in m:
        mo = ctx.mapping(m["mail_on"], "mail_on", {"failure", "success", "wait"}, what="mail_on")
        f["mail_on"] = frozen({k: bool(ctx.boolean(v, f"mail_on.{k}")) for k, v in (mo or {}).items()})
    if "secrets" in m:
        f["secrets"] = _secrets(ctx, m["secrets"])
    if "retry_policy" in m:
        f["retry_policy"] = _dag_retry(ctx, m["retry_policy"])
    if "resources" in m:
        f["resources"] = _resources(ctx, m["resources"])
    if "webhook" in m:
        _webhook(ctx, m["webhook"])
    if "container" in m:
        check_container(ctx, m["container"], "container")
    if "ssh" in m:
        check_ssh(ctx, m["ssh"])
    check_mail(ctx, m)
    extra = {k: m[k].plain() for k in _EXTRA_KEYS if k in m}
    if extra:
        f["extra"] = frozen(extra)

    said: set[str] = set()
    for key, why in NO_EFFECT_ROOT.items():
        if key in m and why not in said:
            said.add(why)
            ctx.warn(m[key], key, f"`{key}:` has no effect in dagd: {why}")
            ctx.no_effect.append(f"`{key}:` has no effect: {why}")

    defaults: dict[str, Node] = {}
    if "defaults" in m:
        defaults = ctx.mapping(m["defaults"], "defaults", DEFAULTS_KEYS, what="defaults") or {}
    run_rule = run_is_sub_dag
    f["steps"], f["chain_rule"] = _steps(
        ctx, m.get("steps"), dag_type, StepScope(defaults, run_rule), explicit_type="type" in m
    )
    if "handler_on" in m:
        f["handlers"] = frozen(_handlers(ctx, m["handler_on"], StepScope(defaults, run_rule, handler=True)))
    label = "entrypoint document" if index == 0 else f"document {index + 1}"
    # Dagu 1.x loaded documents without steps (its own tests keep one-key fragments); a file
    # read as 1.x - detected for a run, or named 1.x by the user for validate - may have none.
    lenient = not ctx.strict or ctx.forced
    if ctx.classic and lenient and ("steps" not in m or (m["steps"].kind == "seq" and not m["steps"].value)):
        ctx.warn(doc, "steps", "this DAG has no steps: accepted in a Dagu 1.x file, a run of it does nothing")
        f["steps"] = ()
        return Dag(**f, no_effect=tuple(dict.fromkeys(ctx.no_effect)))
    if "steps" not in m:
        ctx.error(doc, "steps", f"{label} must define steps (a non-empty list)")
        return None
    if not f["steps"]:
        if m["steps"].kind not in ("seq", "map") or not m["steps"].value or not ctx.failed:
            ctx.error(m["steps"], "steps", f"{label} steps must be a non-empty sequence of steps")
        return None
    return Dag(**f, no_effect=tuple(dict.fromkeys(ctx.no_effect)))


def _labels(ctx: Ctx, node: Node, key: str) -> dict[str, str]:
    out: dict[str, str] = {}

    def add(item: str) -> None:
        k, _, v = item.partition("=")
        if k.strip():
            out[k.strip().lower()] = v.strip().lower()

    if node.kind == "scalar":
        for item in re.split(r"[,\s]+", scalar_text(node.value)):
            add(item)
    elif node.kind == "map":
        out.update(
            {
                k.strip().lower(): scalar_text(v.value).strip().lower()
                for k, v in node.value.items()
                if v.kind == "scalar"
            }
        )
    elif node.kind == "seq":
        for i, item in enumerate(node.value):
            if item.kind == "map":
                out.update({k.strip().lower(): scalar_text(v.value).lower() for k, v in item.value.items()})
            elif item.kind == "scalar":
                add(scalar_text(item.value))
            else:
                ctx.error(item, f"{key}[{i}]", "labels entries must be strings or single-key maps")
    return out


def _duration(ctx: Ctx, node: Node, key: str) -> float:
    text = scalar_text(node.value).strip() if node.kind == "scalar" else ""
    m = _DURATION.match(text)
    if not text or not m or not any(m.groups()):
        ctx.error(node, key, f'invalid duration "{text}": use e.g. 30m, 6h, 2d12h')
        return 0
    d, h, mi, s = (int(g or 0) for g in m.groups())
    total = d * 86400 + h * 3600 + mi * 60 + s
    if total <= 0:
        ctx.error(node, key, "must be greater than 0")
    return float(total)


def _consts(ctx: Ctx, node: Node) -> tuple[tuple[str, str], ...]:
    if node.kind != "seq":
        ctx.error(
            node,
            "consts",
            f"consts must be a list of single-entry mappings (e.g. - service: api), got {type_name(node)}",
        )
        return ()
    out: list[tuple[str, str]] = []
    for i, item in enumerate(node.value):
        key = f"consts[{i}]"
        if item.kind != "map":
            ctx.error(item, key, f"{key} entries must be single-entry mappings (- name: value)")
            continue
        if len(item.value) != 1:
            ctx.error(item, key, f"{key} must have exactly one key, got {len(item.value)}")
            continue
        ((name, value),) = item.value.items()
        if not IDENT.match(name):
            ctx.error(item.keys.get(name, item), key, f'consts key "{name}" is invalid: must match {IDENT.pattern}')
            continue
        v = value.value
        if value.kind != "scalar" or v is None:
            ctx.error(value, f"consts.{name}", "a const must be a literal string, number, or boolean")
            continue
        if isinstance(v, float) and not math.isfinite(v):
            ctx.error(value, f"consts.{name}", "a const number must be finite")
            continue
        out.append((name, scalar_text(v)))
    return tuple(out)


def _secrets(ctx: Ctx, node: Node) -> tuple[Secret, ...]:
    if node.kind != "seq":
        ctx.error(node, "secrets", f"secrets must be a list of {{name, provider, key}} entries, got {type_name(node)}")
        return ()
    out: list[Secret] = []
    seen: set[str] = set()
    for i, item in enumerate(node.value):
        key = f"secrets[{i}]"
        m = ctx.mapping(item, key, SECRET_KEYS, what="a secret")
        if m is None or "name" not in m:
            if m is not None:
                ctx.error(item, key, "a secret needs a name")
            continue
        name = ctx.string(m["name"], f"{key}.name") or ""
        if not ENV_NAME.match(name):
            ctx.error(m["name"], f"{key}.name", f'secrets: secret "{name}" must match {ENV_NAME.pattern}')
        elif name.startswith("DAGU_"):
            ctx.error(m["name"], f"{key}.name", f'secrets: secret "{name}" must not start with DAGU_')
        elif name in MANAGED_ENV:
            ctx.error(
                m["name"],
                f"{key}.name",
                f'secrets: secret "{name}" collides with Dagu-managed runtime environment variable',
            )
        elif name in seen:
            ctx.error(m["name"], f"{key}.name", f'secrets: duplicate secret "{name}"')
        seen.add(name)
        has_ref, has_provider = "ref" in m, "provider" in m and "key" in m
        if has_ref == has_provider:
            ctx.error(item, key, "secrets: exactly one of ref or provider+key is required")
        provider, skey, ref = (ctx.string(m[k], f"{key}.{k}") if k in m else None for k in ("provider", "key", "ref"))
        options = m["options"].plain() if "options" in m else {}
        out.append(Secret(name, provider, skey, ref, frozen(options if isinstance(options, dict) else {})))
    return tuple(out)


def _dag_retry(ctx: Ctx, node: Node) -> DagRetryPolicy | None:
    m = ctx.mapping(node, "retry_policy", DAG_RETRY_KEYS, what="retry_policy")
    if m is None:
        return None
    if "limit" not in m:
        ctx.error(node, "retry_policy", "limit is required when retry_policy is specified")
        return None
    limit = ctx.integer(m["limit"], "retry_policy.limit")
    interval = ctx.number(m["interval_sec"], "retry_policy.interval_sec") if "interval_sec" in m else 60.0
    if interval is not None and interval <= 0:
        ctx.error(m["interval_sec"], "retry_policy.interval_sec", "must be > 0")
    backoff = ctx.number(m["backoff"], "retry_policy.backoff") if "backoff" in m else None
    max_iv = ctx.number(m["max_interval_sec"], "retry_policy.max_interval_sec") if "max_interval_sec" in m else 3600.0
    if limit is None or interval is None:
        return None
    return DagRetryPolicy(limit, interval, backoff, max_iv or 3600.0)


_CPU = re.compile(r"^(?:0*([1-9][0-9]*)m|([0-9]+(?:\.[0-9]{1,3})?))$")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(?:([KkMmGgTtPpEe])(i?)[Bb]?|[Bb])?$")
_UNIT = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_MAX_MILLICORES = 1_000_000  # 1000 cores
_MAX_MEMORY = 2**63 - 1  # what memory.max can hold


def _resources(ctx: Ctx, node: Node) -> ResourceLimits | None:
    """`resources: {limits: {cpu: "500m" | "1.5", memory: "512Mi" | "2G"}}` (Dagu's form)."""
    m = ctx.mapping(node, "resources", {"limits"}, what="resources")
    if not m or "limits" not in m:
        return None
    lim = ctx.mapping(m["limits"], "resources.limits", {"cpu", "memory"}, what="resources.limits")
    if lim is None:
        return None
    cpu: int | None = None
    memory: int | None = None
    if "cpu" in lim:
        text = scalar_text(lim["cpu"].value) if lim["cpu"].kind == "scalar" else ""
        match = _CPU.match(text)
        millis = int(Decimal(match[1] or Decimal(match[2]) * 1000)) if match else 0
        if not 0 < millis <= _MAX_MILLICORES:
            ctx.error(
                lim["cpu"],
                "resources.limits.cpu",
                f'{text[:40] or type_name(lim["cpu"])!r} is not a CPU limit: cores ("2", "0.5") or millicores'
                ' ("500m"), above 0 and at most 1000 cores',
            )
        else:
            cpu = millis
    if "memory" in lim:
        text = scalar_text(lim["memory"].value) if lim["memory"].kind == "scalar" else ""
        match = _MEMORY.match(text)
        unit = ((1024 if match[3] else 1000) ** _UNIT[match[2].lower()] if match[2] else 1) if match else 0
        amount = int(Decimal(match[1]) * unit) if match else 0
        if 0 < amount <= _MAX_MEMORY:
            memory = amount
        else:
            ctx.error(
                lim["memory"],
                "resources.limits.memory",
                f"{text[:40] or type_name(lim['memory'])!r} is not a memory limit: bytes or a number with a unit"
                ' ("512Mi", "1Gi", "2G"), above 0 and at most 8 EiB',
            )
    return ResourceLimits(memory, cpu) if (memory or cpu) else None


def _handlers(ctx: Ctx, node: Node, scope: StepScope) -> dict[str, Step]:
    allowed = set(HANDLER_EVENTS) | ({"cancel"} if ctx.classic else set())
    m = ctx.mapping(node, "handler_on", allowed, what="handler_on")
    out: dict[str, Step] = {}
    for event, hnode in (m or {}).items():
        if event == "cancel":
            ctx.warn(hnode, "handler_on.cancel", 'handler_on.cancel is deprecated; use "abort"', once="cancel")
            event = "abort"
        step = build_step(ctx, hnode, f"handler_on.{event}", 0, scope)
        if step is not None:
            from dataclasses import replace

            out[event] = replace(step, name=HANDLER_NAMES[event])
    return out


def _steps(
    ctx: Ctx, node: Node | None, dag_type: DagType, scope: StepScope, *, explicit_type: bool
) -> tuple[tuple[Step, ...], ChainRule | None]:
    """The steps, wired; and, for a classic chain DAG with an explicit depends, the rule applied."""
    if node is None or (node.kind == "scalar" and node.value is None):
        return (), None
    groups: list[list[Step]] = []
    explicit: dict[str, bool] = {}
    if node.kind == "map":  # legacy map form: the key is the step name, sorted by name
        items: list[Step] = []
        for k in sorted(node.value):
            built = build_step(ctx, node.value[k], f"steps.{k}", len(items) + 1, scope)
            if built is not None:
                from dataclasses import replace

                built = replace(built, name=built.name if "name" in node.value[k].value else k)
                items.append(built)
                explicit[built.name] = node.value[k].kind == "map" and "depends" in node.value[k].value
        groups = [[s] for s in items]
    elif node.kind == "seq":
        index = 0
        for i, entry in enumerate(node.value):
            members = entry.value if entry.kind == "seq" else [entry]
            group = []
            for j, member in enumerate(members):
                index += 1
                path = f"steps[{i}][{j}]" if entry.kind == "seq" else f"steps[{i}]"
                built = build_step(ctx, member, path, index, scope)
                if built is not None:
                    group.append(built)
                    explicit[built.name] = member.kind == "map" and "depends" in member.value
            groups.append(group)
    else:
        ctx.error(node, "steps", f"steps must be a non-empty sequence, got {type_name(node)}")
        return (), None
    rule = None
    if ctx.classic and dag_type is DagType.CHAIN and any(explicit.values()):
        # Step shorthand (`- echo hi`) and parallel groups (`- [a, b]`) came with Dagu 1.22, which
        # also made an explicit depends additive: a file using them was written for that rule.
        newer = node.kind == "seq" and any(e.kind in ("scalar", "seq") for e in node.value)
        rule = ChainRule.ADDITIVE if newer else ctx.chain
    steps = _wire(ctx, groups, dag_type, explicit, rule or ChainRule.ADDITIVE)
    if ctx.classic and not explicit_type and dag_type is DagType.CHAIN and any(explicit.values()):
        # Dagu <= 1.16 had no chain: steps without depends started at once. A file that only
        # makes sense that way (list-order wiring would close a cycle) is read that way.
        by_name = {s.name: s for s in steps}
        wired = {s.name: [by_name[d].name if d in by_name else d for d in s.depends] for s in steps}
        ids = {s.id: s.name for s in steps if s.id}
        wired = {k: [ids.get(d, d) for d in v] for k, v in wired.items()}
        if find_cycle(wired):
            ctx.warn(
                node,
                "steps",
                "list-order wiring would form a cycle: read with Dagu <= 1.16 semantics (steps without depends start at once)",
            )
            steps = _wire(ctx, groups, DagType.GRAPH, explicit, ChainRule.ADDITIVE)
            rule = None
    steps = _routes(ctx, node, steps)
    _check_graph(ctx, steps)
    return tuple(steps), rule


def _routes(ctx: Ctx, node: Node, steps: list[Step]) -> list[Step]:
    """router.route (Dagu 1.x `type: router`): each target of a route gets the precondition
    {condition: value, expected: pattern}, a dependency on the router and continue_on.skipped, so
    exactly the matching routes run; the router continues past skipped steps too."""
    routers = [s for s in steps if s.action == "router.route"]
    if not routers:
        return steps
    by_key = {s.name: i for i, s in enumerate(steps)} | {s.id: i for i, s in enumerate(steps) if s.id}
    out = list(steps)
    for router in routers:
        value, routes = router.config.get("value"), router.config.get("routes")
        if value is None or not isinstance(routes, Mapping) or not routes:
            ctx.error(node, router.path, f'router "{router.name}" needs with.value and with.routes (pattern: [steps])')
            continue
        seen: set[str] = set()
        for pattern, targets in routes.items():
            for target in [targets] if isinstance(targets, str) else list(targets or ()):
                name = str(target)
                if name not in by_key:
                    ctx.error(node, router.path, f'router "{router.name}" references non-existent step "{name}"')
                    continue
                if name in seen:
                    ctx.error(node, router.path, f'router "{router.name}": step "{name}" is in more than one route')
                    continue
                seen.add(name)
                i = by_key[name]
                t = out[i]
                out[i] = dataclasses.replace(
                    t,
                    preconditions=(*t.preconditions, Precondition(condition=str(value), expected=str(pattern))),
                    depends=t.depends if router.name in t.depends else (*t.depends, router.name),
                    continue_on=dataclasses.replace(t.continue_on, skipped=True),
                )
        i = by_key[router.name]
        out[i] = dataclasses.replace(out[i], continue_on=dataclasses.replace(out[i].continue_on, skipped=True))
    return out


def _webhook(ctx: Ctx, node: Node) -> None:
    """`webhook: {forward_headers: [...]}`: request headers a webhook-triggered run sees in
    WEBHOOK_HEADERS (dagd.webhooks); never one that carries credentials."""
    from dagd.webhooks import NEVER_FORWARDED

    m = ctx.mapping(node, "webhook", ("forward_headers",), what="webhook")
    if not m or "forward_headers" not in m:
        return
    for i, name in enumerate(ctx.string_list(m["forward_headers"], "webhook.forward_headers") or []):
        where = m["forward_headers"].value[i] if m["forward_headers"].kind == "seq" else m["forward_headers"]
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            ctx.error(where, f"webhook.forward_headers[{i}]", f"{name!r} is not an HTTP header name")
        elif name.lower() in NEVER_FORWARDED:
            ctx.error(where, f"webhook.forward_headers[{i}]", f"{name} is never forwarded: it carries credentials")


def _wire(
    ctx: Ctx, groups: list[list[Step]], dag_type: DagType, explicit: dict[str, bool], rule: ChainRule
) -> list[Step]:
    """Chain DAGs: each step depends on the previous entry. A classic step's own depends replace
    that (Dagu 1.17-1.21) or add to it (1.22+), per `rule`; `depends: []` opts out either way."""
    from dataclasses import replace

    out: list[Step] = []
    previous: list[Step] = []
    for group in groups:
        for s in group:
            if dag_type is DagType.CHAIN:
                implicit = tuple(p.id or p.name for p in previous)
                if explicit.get(s.name) and not ctx.classic:
                    ctx.error(
                        s.location,
                        f"{s.path}.depends",
                        "depends field is not allowed for DAGs with type 'chain'; use type 'graph' for explicit dependencies",
                    )
                elif not explicit.get(s.name):
                    s = replace(s, depends=implicit)
                elif s.depends and rule is ChainRule.ADDITIVE:  # (a step named by its name or its id: once)
                    extra = tuple(p.id or p.name for p in previous if p.name not in s.depends and p.id not in s.depends)
                    s = replace(s, depends=tuple(dict.fromkeys(extra + s.depends)))
            out.append(s)
        if group:
            previous = out[-len(group) :]
    return out


def _check_graph(ctx: Ctx, steps: list[Step]) -> None:
    names: dict[str, Step] = {}
    ids: dict[str, Step] = {}
    for s in steps:
        if s.name in names:
            ctx.error(s.location, f"{s.path}.name", f'step name "{s.name}" must be unique (step name must be unique)')
        names.setdefault(s.name, s)
        if s.id:
            if s.id in ids:
                ctx.error(s.location, f"{s.path}.id", f"duplicate step ID: {s.id}")
            ids.setdefault(s.id, s)
    for s in steps:
        if s.id and s.id in names and names[s.id] is not s:
            ctx.error(s.location, f"{s.path}.id", f"step ID '{s.id}' conflicts with another step's name")
        if s.name in ids and ids[s.name] is not s:
            ctx.error(s.location, f"{s.path}.name", f"step name '{s.name}' conflicts with another step's ID")
    deps: dict[str, list[str]] = {}
    for s in steps:
        resolved = []
        for d in s.depends:
            target = names.get(d) or ids.get(d)
            if target is None:
                ctx.error(
                    s.location,
                    f"{s.path}.depends",
                    f'step "{s.name}" depends on non-existent step "{d}" (names and ids are exact and case-sensitive)',
                )
            else:
                resolved.append(target.name)
        deps[s.name] = resolved
    if not ctx.failed:
        cycle = find_cycle(deps)
        if cycle:
            first = names[cycle[0]]
            ctx.error(first.location, f"{first.path}.depends", "cyclic plan detected: " + " -> ".join(cycle))
    for i, s in enumerate(steps):  # depends now always hold step names
        if s.depends != tuple(deps.get(s.name, ())):
            from dataclasses import replace

            steps[i] = replace(s, depends=tuple(deps.get(s.name, ())))
