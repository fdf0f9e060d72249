"""The one rule for DAG names and run ids, used by dagctl, RPC, HTTP and the store alike.

A name or run id becomes a path segment (logs/<dag>/<run id>/), a key in SQL and a word in a URL,
so it is matched in full (`fullmatch`: `$` would accept a trailing newline) against a pattern with
no separators, no control characters and no leading dot or dash (hidden files, flags).
Dagu's own names (`[a-zA-Z0-9_.-]+`) all fit, a leading `_` included.
"""

from __future__ import annotations

import re

NAME_MAX = 100
RUN_ID_MAX = 200  # sub-DAG runs append `_<step>_<i>` to their parent's id
NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{NAME_MAX - 1}}}")
RUN_ID = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{RUN_ID_MAX - 1}}}")
# the same rules as anchored patterns, for schema validators that search (msgspec, OpenAPI)
NAME_PATTERN = rf"\A{NAME.pattern}\Z"
RUN_ID_PATTERN = rf"\A{RUN_ID.pattern}\Z"


class InvalidName(ValueError):
    """A DAG name or run id that breaks the rule; the message says what is allowed."""


def _check(value: object, rule: re.Pattern[str], what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidName(f"{what} must be a string, got {type(value).__name__}")
    if not rule.fullmatch(value):
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise InvalidName(
            f"invalid {what} {shown!r}: use letters, digits, '_', '.' and '-' (not first), at most {limit} characters"
        )
    return value


def dag_name(value: object) -> str:
    """`value` when it is a valid DAG name, else InvalidName."""
    return _check(value, NAME, "DAG name", NAME_MAX)


def run_id(value: object) -> str:
    """`value` when it is a valid run id, else InvalidName."""
    return _check(value, RUN_ID, "run id", RUN_ID_MAX)


def is_dag_name(value: object) -> bool:
    return isinstance(value, str) and NAME.fullmatch(value) is not None


def is_run_id(value: object) -> bool:
    return isinstance(value, str) and RUN_ID.fullmatch(value) is not None


def explain_run_id(value: object) -> str:
    """Why `value` is no run id (for a CLI message)."""
    try:
        run_id(value)
    except InvalidName as exc:
        return str(exc)
    return "valid"
