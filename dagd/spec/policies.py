"""Readers for the small structured values shared by DAGs and steps.

env, preconditions, continue_on, retry_policy, repeat_policy, declared outputs — each a
function from a located YAML node to a model value, recording errors in the Ctx.
"""

from __future__ import annotations

import re

from dagd.spec.fields import Ctx, scalar_text, type_name
from dagd.spec.keys import (
    CONTINUE_KEYS,
    OUTPUT_DECL_KEYS,
    PRECONDITION_KEYS,
    REPEAT_KEYS,
    RETRY_KEYS,
)
from dagd.spec.model import (
    ContinueOn,
    Location,
    OutputDecl,
    Precondition,
    RepeatPolicy,
    RetryPolicy,
)
from dagd.spec.yamlnode import Node

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def parse_env(ctx: Ctx, node: Node, key: str) -> list[tuple[str, str, Node]]:
    """env as ordered (name, value, value-node) entries: a map, a list of maps or "K=V" strings."""
    entries: list[tuple[str, str, Node]] = []
    if node.kind == "scalar" and node.value is None:
        return entries
    shape = "env must be a map or array of KEY=value strings / single-key maps"
    if node.kind == "map":
        items = [(k, v, node.keys.get(k, node)) for k, v in node.value.items()]
    elif node.kind == "seq":
        items = []
        for i, item in enumerate(node.value):
            if item.kind == "map":
                items.extend((k, v, item.keys.get(k, item)) for k, v in item.value.items())
            elif item.kind == "scalar" and isinstance(item.value, str):
                name, eq, value = item.value.partition("=")
                if not eq:
                    ctx.error(
                        item,
                        f"{key}[{i}]",
                        f'"{item.value}" is not KEY=value (env list entries need "=")',
                    )
                    continue
                items.append((name.strip(), Node(value, item.line, item.col, "scalar"), item))
            else:
                ctx.error(item, f"{key}[{i}]", f"{shape}; got {type_name(item)}")
    else:
        ctx.error(node, key, f"{shape}; got {type_name(node)}")
        return entries
    for name, value, knode in items:
        if not ENV_NAME.match(name):
            ctx.error(knode, f"{key}.{name}", f'invalid env name "{name}": must match {ENV_NAME.pattern}')
            continue
        if value.kind != "scalar":
            ctx.error(value, f"{key}.{name}", f"env values must be scalars, got {type_name(value)}")
            continue
        entries.append((name, scalar_text(value.value), value))
    return entries


def parse_preconditions(ctx: Ctx, node: Node, key: str) -> tuple[Precondition, ...]:
    if node.kind == "scalar" and node.value is None:
        return ()
    if node.kind == "scalar":
        text = scalar_text(node.value)
        if not isinstance(node.value, str) or not text.strip():
            ctx.error(node, key, "preconditions must be a non-empty command string or a list")
            return ()
        return (Precondition(condition=text, location=Location(node.line, node.col)),)
    if node.kind != "seq":
        ctx.error(
            node,
            key,
            f"preconditions must be a string or a list of strings / condition objects, got {type_name(node)}",
        )
        return ()
    out: list[Precondition] = []
    for i, item in enumerate(node.value):
        p = _precondition(ctx, item, f"{key}[{i}]")
        if p is not None:
            out.append(p)
    return tuple(out)


def _precondition(ctx: Ctx, node: Node, key: str) -> Precondition | None:
    loc = Location(node.line, node.col)
    if node.kind == "scalar":
        if isinstance(node.value, str) and node.value.strip():
            return Precondition(condition=node.value, location=loc)
        ctx.error(node, key, f"preconditions entries must be non-empty strings or objects, got {type_name(node)}")
        return None
    allowed = PRECONDITION_KEYS | ({"command"} if ctx.classic else set())
    m = ctx.mapping(node, key, allowed, what="a precondition")
    if m is None:
        return None
    if "command" in m and "condition" not in m:
        m["condition"] = m.pop("command")

    def text(name: str) -> str | None:
        n = m.get(name)
        if n is None:
            return None
        if n.kind != "scalar" or not isinstance(n.value, str) or not n.value.strip():
            ctx.error(n, f"{key}.{name}", f"preconditions {name} must be a non-empty string, got {type_name(n)}")
            return None
        return n.value

    condition, evaluated, expected = text("condition"), text("eval"), text("expected")
    if "condition" in m and "eval" in m:
        ctx.error(node, key, "preconditions: only one of condition or eval is allowed")
    elif "condition" not in m and "eval" not in m:
        ctx.error(node, key, "preconditions: condition or eval is required")
    if "eval" in m and "expected" not in m:
        ctx.error(node, key, "preconditions: expected is required when eval is set")
    if expected is not None and expected.startswith("re:"):
        pattern = expected[3:]
        if not pattern:
            ctx.error(m["expected"], f"{key}.expected", "preconditions expected regexp is empty")
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                ctx.error(m["expected"], f"{key}.expected", f"preconditions expected regexp is invalid: {exc}")
    negate = False
    if "negate" in m:
        n = m["negate"]
        if n.kind == "scalar" and isinstance(n.value, bool):
            negate = n.value
        else:
            ctx.error(n, f"{key}.negate", f"preconditions negate must be a boolean, got {type_name(n)}")
    return Precondition(condition, evaluated, expected, negate, loc)


def parse_continue_on(ctx: Ctx, node: Node, key: str) -> ContinueOn:
    if node.kind == "scalar" and isinstance(node.value, str):
        word = node.value.strip().lower()
        if word in ("failed", "failure"):
            return ContinueOn(failure=True)
        if word == "skipped":
            return ContinueOn(skipped=True)
        ctx.error(node, key, f"continue_on: expected 'skipped' or 'failed', got \"{node.value}\"")
        return ContinueOn()
    m = ctx.mapping(node, key, CONTINUE_KEYS, what="continue_on")
    if m is None:
        return ContinueOn()
    failure = any(ctx.boolean(m[k], f"{key}.{k}") for k in ("failure", "failed") if k in m)
    skipped = bool(ctx.boolean(m["skipped"], f"{key}.skipped")) if "skipped" in m else False
    mark = bool(ctx.boolean(m["mark_success"], f"{key}.mark_success")) if "mark_success" in m else False
    codes = ctx.int_list(m["exit_code"], f"{key}.exit_code") if "exit_code" in m else ()
    output: list[str] = []
    if "output" in m:
        output = ctx.string_list(m["output"], f"{key}.output") or []
        for i, pattern in enumerate(output):
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    ctx.error(m["output"], f"{key}.output[{i}]", f"invalid regexp: {exc}")
    return ContinueOn(failure, skipped, codes or (), tuple(output), mark)


def _backoff(ctx: Ctx, node: Node, key: str) -> float | None:
    if node.kind == "scalar" and isinstance(node.value, bool):
        return 2.0 if node.value else None
    v = ctx.number(node, key)
    if v is not None and v <= 1.0:
        ctx.error(node, key, f"backoff must be greater than 1.0 for exponential growth, got: {v:g}")
        return None
    return v


def parse_retry(ctx: Ctx, node: Node, key: str) -> RetryPolicy | None:
    m = ctx.mapping(node, key, RETRY_KEYS, what="retry_policy")
    if m is None:
        return None
    limit = ctx.int_or_ref(m["limit"], f"{key}.limit") if "limit" in m else None
    if "limit" not in m:
        ctx.error(node, key, "limit is required when retry_policy is specified")
    interval: float | str | None = 0.0
    if "interval_sec" in m:
        interval = ctx.number_or_ref(m["interval_sec"], f"{key}.interval_sec")
    elif not ctx.classic:
        ctx.error(node, key, "interval_sec is required when retry_policy is specified")
    codes = ctx.int_list(m["exit_code"], f"{key}.exit_code") if "exit_code" in m else ()
    backoff = _backoff(ctx, m["backoff"], f"{key}.backoff") if "backoff" in m else None
    max_iv = ctx.number(m["max_interval_sec"], f"{key}.max_interval_sec") if "max_interval_sec" in m else None
    if limit is None or interval is None:
        return None
    return RetryPolicy(limit, interval, codes or (), backoff, max_iv)


def parse_repeat(ctx: Ctx, node: Node, key: str) -> RepeatPolicy | None:
    m = ctx.mapping(node, key, REPEAT_KEYS, what="repeat_policy")
    if m is None:
        return None
    condition = ctx.string(m["condition"], f"{key}.condition") if "condition" in m else None
    expected = ctx.string(m["expected"], f"{key}.expected") if "expected" in m else None
    codes = ctx.int_list(m["exit_code"], f"{key}.exit_code") if "exit_code" in m else ()
    mode = ""
    if "repeat" in m:
        r = m["repeat"]
        if r.kind == "scalar" and isinstance(r.value, bool):
            mode = "while" if r.value else ""
            if not r.value:
                return None
            if condition is not None or codes:  # Dagu 1.17's own repeat-limit-condition fixture runs to its limit
                given = ", ".join(k for k in ("condition", "expected", "exit_code") if k in m)
                ctx.warn(
                    r,
                    f"{key}.repeat",
                    f"repeat: true repeats while the step succeeds; {given} has no effect with it"
                    " (use repeat: while or until to repeat on a condition)",
                )
                condition = expected = None
                codes = ()
        elif r.kind == "scalar" and r.value in ("while", "until"):
            mode = r.value
            if condition is None and not codes:
                ctx.error(
                    r,
                    f"{key}.repeat",
                    f"repeat mode '{mode}' requires either 'condition' or 'exit_code' to be specified",
                )
        else:
            ctx.error(r, f"{key}.repeat", f'repeat must be "while", "until" or a boolean, got {scalar_text(r.value)!r}')
    elif condition is not None and expected is not None:
        mode = "until"
    elif condition is not None or codes:
        mode = "while"
    else:
        ctx.error(node, key, "repeat_policy needs repeat, condition or exit_code")
        return None
    interval = ctx.number_or_ref(m["interval_sec"], f"{key}.interval_sec") if "interval_sec" in m else 0
    limit = ctx.int_or_ref(m["limit"], f"{key}.limit") if "limit" in m else 0
    backoff = _backoff(ctx, m["backoff"], f"{key}.backoff") if "backoff" in m else None
    max_iv = ctx.number(m["max_interval_sec"], f"{key}.max_interval_sec") if "max_interval_sec" in m else None
    return RepeatPolicy(mode or "while", condition, expected, codes or (), interval or 0, limit or 0, backoff, max_iv)


def parse_outputs(ctx: Ctx, node: Node, key: str, step_id: str | None) -> tuple[OutputDecl, ...]:
    if node.kind != "seq" or not node.value:
        ctx.error(node, key, "outputs must be a non-empty sequence of {name, type} entries")
        return ()
    if not step_id:
        ctx.error(
            node, key, "a step with outputs must define id (outputs are referenced as ${steps.<id>.outputs.<name>})"
        )
    out: list[OutputDecl] = []
    seen: set[str] = set()
    for i, item in enumerate(node.value):
        k = f"{key}[{i}]"
        if item.kind != "map":
            ctx.error(item, k, f"outputs entries must be objects with name and type, got {type_name(item)}")
            continue
        for raw in item.value:
            if raw not in OUTPUT_DECL_KEYS:
                ctx.error(
                    item.keys.get(raw, item),
                    f"{k}.{raw}",
                    f'outputs entry has unknown field "{raw}" (allowed: name, type)',
                )
        name_node = item.value.get("name")
        if name_node is None:
            ctx.error(item, k, "outputs entry name is required")
            continue
        name = scalar_text(name_node.value) if name_node.kind == "scalar" else ""
        if not IDENT.match(name):
            ctx.error(name_node, f"{k}.name", f'outputs name must match {IDENT.pattern}, got "{name}"')
            continue
        if name in seen:
            ctx.error(name_node, f"{k}.name", f'duplicate output name "{name}"')
            continue
        seen.add(name)
        typ = "string"
        if "type" in item.value:
            t = item.value["type"]
            typ = scalar_text(t.value) if t.kind == "scalar" else ""
            if typ not in ("string", "json"):
                ctx.error(t, f"{k}.type", f'outputs type must be "string" or "json", got "{typ}"')
                continue
        out.append(OutputDecl(name, typ))
    return tuple(out)
