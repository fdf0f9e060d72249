"""HTTP authentication: basic users with scrypt-hashed passwords, and bearer API tokens.

config.yaml:

    http_auth:
      users:                       # HTTP basic; hashes from `dagd --hash-password`
        alice: "scrypt$16384$8$1$<salt>$<hash>"
      tokens:                      # bearer tokens, as given or as "sha256:<hex of the token>"
        - "sha256:9f86d0…"

When any credential is configured every request but GET /api/v1/health needs one. A browser
gets `WWW-Authenticate: Basic` and asks for the user and password itself; a bearer token is
for scripts. Verifying scrypt costs ~50 ms: it runs in a worker thread (one at a time), an unknown
user costs the same as a known one, and a successful (user, password) pair is remembered by its
SHA-256 for the life of the process. Failed attempts are limited per client address.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from dagd.access import Principal

SCRYPT = (16384, 8, 1)  # n, r, p: ~50 ms and 16 MiB per hash


def hash_password(password: str, salt: bytes | None = None) -> str:
    n, r, p = SCRYPT
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, want)


class AuthConfigError(ValueError):
    pass


@dataclass
class Auth:
    users: dict[str, str] = field(default_factory=dict)  # name → scrypt hash
    tokens: list[str] = field(default_factory=list)  # sha256 hex digests
    _verified: set[bytes] = field(default_factory=set)

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens)

    @classmethod
    def from_config(cls, section: object, legacy_token: str | None = None) -> Auth:
        """The `http_auth` section (checked: every error names the key) plus `api_token`."""
        auth = cls()
        if section is not None:
            if not isinstance(section, dict):
                raise AuthConfigError("http_auth: must be a mapping with users and/or tokens")
            unknown = set(section) - {"users", "tokens"}
            if unknown:
                raise AuthConfigError(f"http_auth: unknown keys {sorted(unknown)} (allowed: users, tokens)")
            users = section.get("users") or {}
            if not isinstance(users, dict):
                raise AuthConfigError("http_auth.users: must map user names to password hashes")
            for name, stored in users.items():
                if not isinstance(stored, str) or not stored.startswith("scrypt$") or stored.count("$") != 5:
                    raise AuthConfigError(
                        f"http_auth.users.{name}: not a password hash (make one with `dagd --hash-password`)"
                    )
                if ":" in str(name):
                    raise AuthConfigError(f"http_auth.users.{name}: a user name cannot contain ':'")
                auth.users[str(name)] = stored
            tokens = section.get("tokens") or []
            if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
                raise AuthConfigError("http_auth.tokens: must be a list of tokens (or sha256:<hex> digests)")
            auth.tokens += [_token_digest(t) for t in tokens]
        if legacy_token:
            auth.tokens.append(_token_digest(legacy_token))
        return auth

    async def verify(self, authorization: str) -> Principal | None:
        """Who the Authorization header names, when it holds a valid credential; else None.

        scrypt runs in worker threads under a small limiter, never on the event loop, and an
        unknown user is checked against a dummy hash so both cost the same."""
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value:
            digest = hashlib.sha256(value.strip().encode()).hexdigest()
            for t in self.tokens:
                if hmac.compare_digest(digest, t):
                    return Principal("token", f"sha256:{t[:12]}")
            return None
        if scheme == "basic" and value and self.users:
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return None
            key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
            if key not in self._verified:
                stored = self.users.get(user)
                ok = await trio.to_thread.run_sync(verify_password, password, stored or _dummy_hash(), limiter=_HASHING)
                if not ok or stored is None:
                    return None
                self._verified.add(key)
            return Principal("basic", user)
        return None


_HASHING = trio.CapacityLimiter(1)  # scrypt costs ~50 ms and 16 MiB: one at a time leaves a core to the loop
_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password(os.urandom(16).hex()))
    return _DUMMY[0]


class FailureLimit:
    """Failed logins per client address: after `limit` in `window` seconds, that address is
    refused (429) until the window has passed. Bounded: the oldest addresses are forgotten."""

    def __init__(self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def blocked(self, address: str) -> float:
        """Seconds until `address` may try again (0: it may now)."""
        now = self.clock()
        recent = [t for t in self._failures.get(address, []) if now - t < self.window]
        if len(recent) < self.limit:
            return 0.0
        return self.window - (now - recent[0])

    def failed(self, address: str) -> None:
        now = self.clock()
        recent = [t for t in self._failures.pop(address, []) if now - t < self.window][-self.limit :]
        self._failures[address] = [*recent, now]
        while len(self._failures) > 10_000:
            self._failures.popitem(last=False)


def _token_digest(token: str) -> str:
    if token.startswith("sha256:") and len(token) == 71:
        return token[7:].lower()
    return hashlib.sha256(token.encode()).hexdigest()
