"""The errors the service answers with: each transport maps them to its own codes (JSON-RPC
keeps these numbers; HTTP turns them into 400/404/409)."""

from __future__ import annotations

from collections.abc import Callable

from dagd import names


def checked(rule: Callable[[object], str], value: object) -> str:
    """`value` passed through a dagd.names rule; a broken rule is an INVALID ServiceError."""
    try:
        return rule(value)
    except names.InvalidName as exc:
        raise ServiceError(INVALID, str(exc)) from None


class ServiceError(Exception):
    """A request the service refuses; `code` is the stable JSON-RPC error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


NOT_FOUND = -32004
CONFLICT = -32009
INVALID = -32602
STORAGE_FULL = -32010  # the history cannot be written: no space left
UNAUTHORIZED = -32011  # a webhook's token or signature is missing or wrong
FORBIDDEN = -32012  # a webhook that is disabled, or asks for what dagd does not have
