"""Params of a run: declared defaults combined with CLI-style overrides, as Dagu combines them.

(`${…}` references are resolved by dagd.engine.resolve, for dry runs and real runs alike.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from dagd.spec.model import Dag
from dagd.spec.params import split_param_string


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
