"""`jq.filter` (Dagu 1.x `executor: jq`, the filter as `command:`, the input JSON as `script:`):
the filter run by the jq program (Debian's jq) as the step's process — its group, timeout and
exit code are the step's. Output as Dagu writes it: each result as JSON indented by four spaces
with sorted keys, or with `raw: true` strings bare, null as an empty line and objects compact."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

from dagd.engine.step import StepFailed
from dagd.spec.executors import JQ_KEYS as KNOWN


def argv(cfg: Mapping[str, Any], commands: tuple[str, ...], script: str | None, cwd: str, scratch: str) -> list[str]:
    """The jq command for this step; the inline input is written to `scratch` first."""
    program = shutil.which("jq")
    if program is None:
        raise StepFailed("jq.filter needs the jq program on this host (apt install jq)")
    extra = sorted(str(k) for k in cfg if k not in KNOWN)
    if extra:
        raise StepFailed(f"jq: {', '.join(extra)} is not a setting of jq.filter (allowed: data, filter, input, raw)")
    query = cfg.get("filter")
    if query is None and commands:
        if len(commands) > 1:
            raise StepFailed('action "jq.filter" supports only one command')
        query = commands[0]
    if query is None or (isinstance(query, str) and not query.strip()):
        query = "empty"  # as Dagu: no filter, no output (and no error)
    if not isinstance(query, str):
        raise StepFailed("jq: the filter is a string")
    inline = cfg.get("data", script if script and script.strip() else None)
    path = cfg.get("input")
    if inline is not None and path is not None:
        raise StepFailed("jq: config.input and script are mutually exclusive; provide one, not both")
    if path is not None:
        source = str(path) if os.path.isabs(str(path)) else os.path.join(cwd, str(path))
        if not os.path.isfile(source):
            raise StepFailed(f"jq: reading input file {str(path)!r}: no such file")
    elif inline is not None:
        if isinstance(inline, str):
            try:
                json.loads(inline)
            except ValueError as exc:
                raise StepFailed(f"jq: the input is not JSON: {exc}") from None
            text = inline
        else:
            text = json.dumps(inline)
        os.makedirs(os.path.dirname(scratch), exist_ok=True)
        with open(scratch, "w", encoding="utf-8") as fh:
            fh.write(text)
        source = scratch
    else:
        raise StepFailed("jq: no input provided (set config.input to a file path, or script to inline JSON)")
    if cfg.get("raw") is True:
        return [program, "--raw-output", "--compact-output", f'({query}) | if . == null then "" else . end', source]
    return [program, "--indent", "4", "--sort-keys", query, source]
