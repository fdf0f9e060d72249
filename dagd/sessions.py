"""Web UI logins without a password: `dagctl ui` asks dagd (over the control socket, so the
socket's rule decides) for a one-time link; opening it sets a session cookie.

Links live two minutes and work once; sessions live twelve hours. Both are kept in memory only
(a restart of dagd logs everyone out) and by the SHA-256 of their secret, so neither a memory dump
nor a timing side channel hands out a usable value. The clock is injected for tests.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from dagd.access import Principal

LINK_TTL = 120.0
SESSION_TTL = 12 * 3600.0
MAX_LINKS = 1000
MAX_SESSIONS = 10_000
COOKIE = "dagd_session"


@dataclass(frozen=True)
class _Grant:
    who: Principal
    expires: float


def _key(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "replace")).digest()


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._links: OrderedDict[bytes, _Grant] = OrderedDict()
        self._sessions: OrderedDict[bytes, _Grant] = OrderedDict()

    def issue_link(self, who: Principal) -> str:
        """A one-time login token for `who` (already authorised by the control socket)."""
        token = secrets.token_urlsafe(32)
        self._links[_key(token)] = _Grant(who, self.clock() + LINK_TTL)
        while len(self._links) > MAX_LINKS:
            self._links.popitem(last=False)
        return token

    def redeem(self, token: str) -> tuple[str, Principal] | None:
        """A new session (its cookie value and principal) for a valid, unused login token."""
        grant = self._links.pop(_key(token), None)
        if grant is None or grant.expires < self.clock():
            return None
        session = secrets.token_urlsafe(32)
        who = Principal("session", grant.who.name, grant.who.uid)
        self._sessions[_key(session)] = _Grant(who, self.clock() + SESSION_TTL)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session, who

    def lookup(self, session: str) -> Principal | None:
        key = _key(session)
        grant = self._sessions.get(key)
        if grant is None:
            return None
        if grant.expires < self.clock():
            del self._sessions[key]
            return None
        return grant.who

    def end(self, session: str) -> None:
        self._sessions.pop(_key(session), None)
