"""Webhooks as Dagu defines them (POST /api/v1/webhooks/{fileName}): one per DAG, a bearer token
(kept as its SHA-256 only, shown once), optionally an HMAC-SHA256 signature of the raw body
(`X-Dagu-Signature: sha256=<hex>`), strict or observed. A trigger queues a run whose
WEBHOOK_PAYLOAD is the body's `payload` as JSON and WEBHOOK_HEADERS the headers the DAG's
`webhook.forward_headers` allows. Pure functions: the service owns the store."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

TOKEN_PREFIX = "dagd_wh_"
AUTH_MODES = ("token_only", "token_and_hmac", "hmac_only")
HMAC_MODES = ("strict", "observe")
SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# never forwarded, whatever a DAG asks: they carry credentials
NEVER_FORWARDED = frozenset({"authorization", "proxy-authorization", "cookie", "x-dagu-signature"})


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_hmac_secret() -> str:
    return secrets.token_hex(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def shown_prefix(token: str) -> str:
    """Enough of a token to tell it from another (the random part starts after the fixed prefix)."""
    return token[: len(TOKEN_PREFIX) + 4]


@dataclass(frozen=True)
class Refusal:
    status: int  # 400 | 401 | 403
    message: str


def check(row: dict[str, Any], authorization: str | None, signature: str | None, body: bytes) -> Refusal | str | None:
    """Whether a trigger may pass: a Refusal, a warning to log (an observed HMAC mismatch), or None."""
    if not row["enabled"]:
        return Refusal(403, "this DAG's webhook is disabled")
    mode = row["auth_mode"]
    if mode in ("token_only", "token_and_hmac"):
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return Refusal(401, "the webhook token is required (Authorization: Bearer <token>)")
        if not hmac.compare_digest(digest(given.strip()), str(row["token_digest"])):
            return Refusal(401, "wrong webhook token")
    if mode in ("token_and_hmac", "hmac_only") and row["hmac_secret"]:
        strict = mode == "hmac_only" or row["hmac_mode"] != "observe"
        problem = _signature_problem(str(row["hmac_secret"]), signature, body)
        if problem and strict:
            return Refusal(401, problem)
        if problem:
            return f"webhook HMAC check failed (observe mode, let through): {problem}"
    return None


def _signature_problem(secret: str, signature: str | None, body: bytes) -> str | None:
    if not signature:
        return "the X-Dagu-Signature header (sha256=<hex HMAC of the body>) is required"
    m = SIGNATURE.fullmatch(signature.strip())
    if m is None:
        return "X-Dagu-Signature must be sha256=<64 hex digits>"
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m.group(1).lower()):
        return "X-Dagu-Signature does not match the body"
    return None


def payload_env(body: dict[str, Any], headers: dict[str, str], forward: list[str]) -> dict[str, str]:
    """WEBHOOK_PAYLOAD (the body's `payload`, compact JSON with sorted keys, as Dagu writes it) and
    WEBHOOK_HEADERS (the allowed headers that came, names in lower case)."""
    payload = body.get("payload")
    env = {"WEBHOOK_PAYLOAD": json.dumps(payload if payload is not None else {}, separators=(",", ":"), sort_keys=True)}
    wanted = [h.lower() for h in forward if h.lower() not in NEVER_FORWARDED]
    if wanted:
        env["WEBHOOK_HEADERS"] = json.dumps(
            {h: headers[h] for h in wanted if h in headers}, separators=(",", ":"), sort_keys=True
        )
    return env


def _time(t: float | None) -> str | None:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def details(row: dict[str, Any]) -> dict[str, Any]:
    """Dagu's WebhookDetails (no token, no secret)."""
    mode = row["auth_mode"]
    hmac_on = mode in ("token_and_hmac", "hmac_only") and bool(row["hmac_secret"])
    out: dict[str, Any] = {
        "id": row["id"],
        "dagName": row["dag"],
        "tokenPrefix": row["token_prefix"],
        "enabled": bool(row["enabled"]),
        "authMode": mode,
        "hmac": {
            "enabled": hmac_on,
            "secretConfigured": bool(row["hmac_secret"]),
            "algorithm": "HMAC-SHA256",
            "headerName": "X-Dagu-Signature",
            "format": "sha256=<hex>",
        },
        "profileSelection": {"allowedProfiles": []},
        "createdAt": _time(row["created_at"]),
        "updatedAt": _time(row["updated_at"]),
    }
    if hmac_on:
        out["hmac"]["enforcementMode"] = "strict" if mode == "hmac_only" else (row["hmac_mode"] or "strict")
    if row["hmac_updated_at"]:
        out["hmac"]["updatedAt"] = _time(row["hmac_updated_at"])
    if row["created_by"]:
        out["createdBy"] = row["created_by"]
    if row["last_used_at"]:
        out["lastUsedAt"] = _time(row["last_used_at"])
    return out
