"""Dagu-owned `${…}` references: params, consts, positional $1, env — a pure substitution.

One pass; inserted values are not re-scanned; anything unknown is left unchanged; a `$` behind
an odd number of backslashes is literal (one backslash is removed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from dagd.spec.model import Dag, Param
from dagd.spec.params import split_param_string

_REF = re.compile(
    r"(\\*)\$(?:\{(consts|params|env)\.([A-Za-z_][A-Za-z0-9_]*)\}|\{params\}|([1-9][0-9]*)|\{([1-9][0-9]*)\})"
)


def substitute(
    text: str,
    *,
    consts: Mapping[str, str],
    params: Mapping[str, str],
    positional: Sequence[str],
    env: Mapping[str, str],
    params_json: str | None = None,
) -> str:
    def repl(m: re.Match[str]) -> str:
        slashes = m.group(1)
        if len(slashes) % 2 == 1:
            return slashes[:-1] + m.group(0)[len(slashes) :]
        ns, name, pos = m.group(2), m.group(3), m.group(4) or m.group(5)
        value: str | None = None
        if pos is not None:
            i = int(pos) - 1
            value = positional[i] if i < len(positional) else None
        elif ns == "consts":
            value = consts.get(name)
        elif ns == "params":
            value = params.get(name)
        elif ns == "env":
            value = env.get(name)
        else:
            value = params_json
        return m.group(0) if value is None else slashes + value

    return _REF.sub(repl, text)


def resolve_params(
    dag: Dag, overrides: Sequence[str], param_string: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """(named values, positional values) from the declared defaults and CLI-style overrides.

    `param_string` is Dagu's `--params "K=V K2=V2"` (tokenised like Dagu); `overrides` are the
    arguments after `--`, one value each (`K=V` or positional), or a single JSON object.
    """
    named: dict[str, str] = {}
    positional: list[str] = []
    for p in dag.params:
        if p.name is None:
            positional.append(p.default or "")
        elif p.default is not None:
            named[p.name] = p.default
    tokens: list[tuple[str | None, str]] = []
    if param_string:
        if param_string.strip().startswith("{"):
            overrides = [param_string, *overrides]
        else:
            tokens.extend(split_param_string(param_string))
    if len(overrides) == 1 and overrides[0].strip().startswith("{"):
        data = json.loads(overrides[0])
        tokens = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in data.items()]
    else:
        for o in overrides:
            key, eq, value = o.partition("=")
            if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
                tokens.append((key, value))
            else:
                tokens.append((None, o))
    declared = [str(p.name) for p in dag.params if p.name]
    unknown = [k for k, _ in tokens if k is not None and declared and k not in declared]
    if unknown:
        names = ", ".join(f'"{u}"' for u in unknown)
        raise ValueError(f"unknown parameter(s): {names}; accepted parameters are: {', '.join(declared)}")
    pi = 0
    for k, val in tokens:
        v = val or ""
        if k is None:
            if pi < len(positional):
                positional[pi] = v
            else:
                positional.append(v)
            pi += 1
        else:
            named[k] = v
    missing = [p.name for p in dag.params if p.name and p.required and p.name not in named]
    if missing:
        raise ValueError(f"missing required parameter(s): {', '.join(str(m) for m in missing)}")
    return named, positional


def declared(dag: Dag) -> list[Param]:
    return [p for p in dag.params if p.name]
