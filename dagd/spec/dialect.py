"""Which Dagu era a file was written for, decided from what it contains (docs/compat.md).

current — the file uses anything only Dagu >= 2 understands: a snake_case key of more than one
word, `run:` holding a command (arguments, a path, a list or a script), action/with, outputs,
consts, labels, foreach, rich params or eval.
classic — everything else. Within classic, `run: NAME` calls the sub-DAG NAME when the file also
shows a 1.x construct (camelCase keys, command/script/executor/dir/precondition/call) or when a
DAG of that name exists; otherwise it is a command.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from dagd.spec.keys import CAMEL_TO_SNAKE, ROOT_KEYS, STEP_KEYS
from dagd.spec.model import Dialect
from dagd.spec.yamlnode import Node

_V2_WORDY_KEYS = frozenset(k for k in ROOT_KEYS | STEP_KEYS if "_" in k)
_V2_STEP_KEYS = frozenset({"action", "with", "outputs", "foreach"})
_V2_ROOT_KEYS = frozenset({"consts", "labels", "defaults", "actions"})
_CLASSIC_STEP_KEYS = frozenset({"command", "script", "executor", "dir", "precondition", "call"})
_DAG_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _steps(doc: Node) -> Iterator[Node]:
    steps = doc.value.get("steps")
    if steps is None:
        return
    items = steps.value.values() if steps.kind == "map" else steps.value if steps.kind == "seq" else []
    for s in items:
        if s.kind == "seq":
            yield from (x for x in s.value if x.kind == "map")
        elif s.kind == "map":
            yield s
    handlers = doc.value.get("handler_on") or doc.value.get("handlerOn")
    if handlers is not None and handlers.kind == "map":
        yield from (h for h in handlers.value.values() if h.kind == "map")


def run_is_command(value: Node) -> bool:
    """`run:` that can only be a command: a list, or text that is not a bare DAG name."""
    if value.kind == "seq":
        return True
    if value.kind != "scalar" or not isinstance(value.value, str):
        return True
    return not _DAG_NAME.match(value.value.strip())


def signals(docs: list[Node]) -> tuple[bool, bool]:
    """(has a Dagu >= 2 construct, has a Dagu 1.x construct)."""
    current = classic = False
    for doc in docs:
        keys = set(doc.value)
        current |= bool(keys & (_V2_WORDY_KEYS | _V2_ROOT_KEYS))
        classic |= bool(keys & (set(CAMEL_TO_SNAKE) | {"precondition"}))
        params = doc.value.get("params")
        if params is not None and params.kind == "seq":
            current |= any(p.kind == "map" and "name" in p.value for p in params.value)
        for step in _steps(doc):
            skeys = set(step.value)
            current |= bool(skeys & (_V2_WORDY_KEYS | _V2_STEP_KEYS))
            classic |= bool(skeys & (set(CAMEL_TO_SNAKE) | _CLASSIC_STEP_KEYS))
            run = step.value.get("run")
            if run is not None and run_is_command(run):
                current = True
            for pre in _preconditions(step) + _preconditions(doc):
                current |= "eval" in pre.value
    return current, classic


def _preconditions(node: Node) -> list[Node]:
    p = node.value.get("preconditions")
    if p is None or p.kind != "seq":
        return []
    return [x for x in p.value if x.kind == "map"]


def detect(docs: list[Node]) -> tuple[Dialect, bool]:
    """(dialect, whether a bare `run: NAME` always means a sub-DAG)."""
    current, classic = signals(docs)
    if current:
        return Dialect.CURRENT, False
    return Dialect.CLASSIC, classic
