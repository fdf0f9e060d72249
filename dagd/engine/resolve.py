"""Value resolution at run time: what Dagu owns in a string, and what it leaves to the shell.

In `run` (shell-owned) text only namespaced references are Dagu's: `${env.X}`,
`${params.x}`, `${params}`, `${consts.x}`, `${steps.<id>.outputs.<name>}`, `${context.*}` (and
their frozen aliases), legacy step properties (`${id.stdout}`, `${id.output.a}`), JSON paths into
variables (`${VAR.a.b}`) and positional `$1`. In every other field bare `$NAME`/`${NAME}` and
the common shell operators are Dagu's too (unless single-quoted). Anything unknown is kept
verbatim; one pass, no re-scanning; an odd run of backslashes escapes the `$`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_REF = re.compile(r"(\\*)\$(?:\{([^{}\n]*)\}|([A-Za-z_][A-Za-z0-9_]*)|([1-9][0-9]*))")
_IDENT = r"[A-Za-z][A-Za-z0-9_]*"
_STEP_OUT = re.compile(rf"^steps\.({_IDENT})\.outputs\.({_IDENT})$")
_NS = re.compile(r"^(env|params|consts)\.([A-Za-z_][A-Za-z0-9_]*)$")
_PATH = re.compile(rf"^({_IDENT})((?:\.[A-Za-z0-9_]+|\[\d+\])+)$")
_SHELL_OP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(:-|-|:\+|\+|:=|=|##|#|%%|%|:)(.*)$", re.S)
_ALIASES = {
    "dag.name": "dag.name",
    "run.id": "run.id",
    "run.status": "run.status",
    "run.started_at": "attempt.started_at",
    "run.scheduled_at": "run.scheduled_at",
    "run.root_name": "run.root_name",
    "run.root_id": "run.root_id",
    "attempt.id": "attempt.id",
    "step.id": "step.id",
    "step.name": "step.name",
    "trigger.type": "trigger.type",
    "trigger.actor": "trigger.actor",
    "paths.log_file": "paths.log_file",
    "paths.work_dir": "paths.work_dir",
    "paths.artifacts_dir": "paths.artifacts_dir",
    "paths.step_stdout_file": "paths.step_stdout_file",
    "paths.step_stderr_file": "paths.step_stderr_file",
    "paths.step_output_file": "paths.step_output_file",
}


@dataclass
class Scope:
    """Everything a string may refer to at one point of a run."""

    env: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)  # declared named params only
    params_json: str | None = None
    positional: list[str] = field(default_factory=list)
    consts: Mapping[str, str] = field(default_factory=dict)
    step_outputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # id → declared
    step_props: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # id/name → stdout…
    variables: Mapping[str, str] = field(default_factory=dict)  # `output: VAR` values
    context: Mapping[str, str] = field(default_factory=dict)


def json_path(value: str, path: str) -> str | None:
    """`.a.b[0]` into a JSON document; None when it does not apply."""
    try:
        data: Any = json.loads(value)
    except ValueError:
        return None
    for part in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        key, index = part
        if key and isinstance(data, dict) and key in data:
            data = data[key]
        elif index and isinstance(data, list) and int(index) < len(data):
            data = data[int(index)]
        elif key.isdigit() and isinstance(data, list) and int(key) < len(data):
            data = data[int(key)]
        else:
            return None
    if isinstance(data, str):
        return data
    if isinstance(data, bool):
        return "true" if data else "false"
    return json.dumps(data, separators=(",", ":"))


def _braced(inner: str, scope: Scope, shell_owned: bool) -> str | None:
    m = _NS.match(inner)
    if m:
        ns, name = m.groups()
        src = scope.env if ns == "env" else scope.params if ns == "params" else scope.consts
        return src.get(name)
    if inner == "params":
        return scope.params_json
    if inner.isdigit():
        i = int(inner) - 1
        return scope.positional[i] if 0 <= i < len(scope.positional) else None
    m = _STEP_OUT.match(inner)
    if m:
        return scope.step_outputs.get(m.group(1), {}).get(m.group(2))
    if inner.startswith("context."):
        return scope.context.get(inner[8:])
    if inner in _ALIASES:
        return scope.context.get(_ALIASES[inner])
    m = _PATH.match(inner)
    if m:
        head, path = m.groups()
        if head in scope.variables:
            return json_path(scope.variables[head], path)
        props = scope.step_props.get(head)
        if props is not None:
            key = path.lstrip(".")
            if key in props:
                return props[key]
            if key.startswith("output"):
                base = props.get("output")
                rest = key[len("output") :]
                if base is not None and rest:
                    return json_path(base, rest if rest.startswith(("[", ".")) else "." + rest)
        if head in scope.env and not shell_owned:
            return json_path(scope.env[head], path)
        return None
    if shell_owned:
        return None
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", inner):
        return scope.env.get(inner)
    if inner.startswith("#") and re.fullmatch(r"#[A-Za-z_][A-Za-z0-9_]*", inner):
        v = scope.env.get(inner[1:])
        return str(len(v)) if v is not None else None
    return _shell_op(inner, scope)


def _shell_op(inner: str, scope: Scope) -> str | None:
    m = _SHELL_OP.match(inner)
    if not m:
        return None
    name, op, arg = m.groups()
    value = scope.env.get(name)
    if value is None:  # a missing variable keeps the whole expression as written
        return None
    arg = resolve(arg, scope, shell_owned=False)
    if op in (":-", ":="):
        return value if value else arg
    if op in ("-", "="):
        return value if value is not None else arg
    if op == ":+":
        return arg if value else ""
    if op == "+":
        return arg if value is not None else ""
    if value is None:
        return None
    import fnmatch

    def cut(prefix: bool, greedy: bool) -> str:
        rng = range(len(value) + 1)
        order = list(rng) if not greedy else list(reversed(rng))
        for i in order:
            part = value[:i] if prefix else value[len(value) - i :]
            if fnmatch.fnmatchcase(part, arg):
                return value[i:] if prefix else value[: len(value) - i]
        return value

    if op == "#":
        return cut(True, False)
    if op == "##":
        return cut(True, True)
    if op == "%":
        return cut(False, False)
    if op == "%%":
        return cut(False, True)
    if op == ":":
        parts = arg.split(":")
        try:
            start = int(parts[0])
            length = int(parts[1]) if len(parts) > 1 else None
        except ValueError:
            return None
        return value[start:] if length is None else value[start : start + length]
    return None


_ASSIGN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?=)")


def _needs_assignment(text: str, scope: Scope) -> bool:
    """A `${X:=v}`/`${X=v}` that would have to assign: Dagu then leaves shell operators alone."""
    for m in _ASSIGN.finditer(text):
        value = scope.env.get(m.group(1))
        if value is not None and (m.group(2) == ":=" and value == ""):
            return True
    return False


def resolve(text: str, scope: Scope, *, shell_owned: bool = False) -> str:
    """Substitute Dagu-owned references in `text`; unknown ones stay exactly as written."""
    keep_operators = not shell_owned and _needs_assignment(text, scope)
    out: list[str] = []
    pos = 0
    quoted = False
    for m in _REF.finditer(text):
        between = text[pos : m.start()]
        quoted ^= between.count("'") % 2 == 1
        out.append(between)
        pos = m.end()
        slashes, inner, bare, positional = m.groups()
        if len(slashes) % 2 == 1:
            out.append(slashes[:-1] + m.group(0)[len(slashes) :])
            continue
        value: str | None = None
        if positional is not None and quoted:  # '$1' stays as written (Dagu 1.17's own test)
            value = None
        elif positional is not None:
            i = int(positional) - 1
            value = scope.positional[i] if i < len(scope.positional) else None
        elif bare is not None:
            if not shell_owned and not quoted:
                value = scope.env.get(bare)
        elif inner is not None:
            namespaced = "." in inner or inner == "params" or inner.isdigit()
            operator = not namespaced and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", inner)
            if (quoted and not namespaced) or (keep_operators and operator):
                value = None
            else:
                value = _braced(inner, scope, shell_owned)
        out.append(m.group(0) if value is None else slashes + value)
    out.append(text[pos:])
    return "".join(out)


def resolve_data(value: Any, scope: Scope) -> Any:
    """resolve() over every string leaf of nested data (with:, output objects, params)."""
    if isinstance(value, str):
        return resolve(value, scope)
    if isinstance(value, Mapping):
        return {k: resolve_data(v, scope) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [resolve_data(v, scope) for v in value]
    return value
