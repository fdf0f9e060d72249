"""Declared step outputs: the `name=value` / `name<<DELIM … DELIM` records in DAGU_OUTPUT_FILE."""

from __future__ import annotations

import json

from dagd.spec.model import OutputDecl


class OutputError(Exception):
    pass


def parse_output_file(text: str, declared: tuple[OutputDecl, ...]) -> dict[str, str]:
    """Every declared output exactly once; undeclared, duplicate or invalid records fail."""
    names = {d.name: d for d in declared}
    values: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            raise OutputError("empty line in the step output file (each record is name=value or name<<DELIM)")
        eq, heredoc = line.find("="), line.find("<<")
        if heredoc != -1 and (eq == -1 or heredoc < eq):
            name, delim = line[:heredoc], line[heredoc + 2 :]
            body: list[str] = []
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise OutputError(f"output {name!r}: missing closing delimiter {delim!r}")
            i += 1
            value = "\n".join(body)
        elif eq != -1:
            name, value = line[:eq], line[eq + 1 :]
        else:
            raise OutputError(f"invalid record {line!r} in the step output file (expected name=value)")
        if name not in names:
            raise OutputError(f"undeclared step output {name!r} written (declare it under outputs:)")
        if name in values:
            raise OutputError(f"output {name!r} written more than once")
        if names[name].type == "json":
            try:
                json.loads(value)
            except ValueError as exc:
                raise OutputError(f"output {name!r} is not valid JSON: {exc}") from None
        values[name] = value
    missing = [n for n in names if n not in values]
    if missing:
        raise OutputError(
            f"declared output(s) {', '.join(missing)} not emitted (write name=value to $DAGU_OUTPUT_FILE)"
        )
    return values
