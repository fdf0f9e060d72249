"""`wait.duration` / `until` / `file` / `http` (Dagu 1.x `type: wait`, the operation as the
command): the step waits on dagd's loop — no process — until the time comes, a path exists (or is
gone), or a URL answers with the expected status. A stop ends the wait at once; the step's
`timeout_sec` bounds it. The step's stdout gets one JSON line saying what was waited for."""

from __future__ import annotations

import datetime
import json
import os
import re
import time
from collections.abc import Mapping
from typing import Any, BinaryIO

import httpx
import trio

from dagd.engine.step import StepFailed, reject_unknown
from dagd.spec.executors import WAIT_KEYS as KEYS

OPS = ("duration", "until", "file", "http")
ACTIONS = frozenset(f"wait.{op}" for op in OPS)
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def operation(action: str, commands: tuple[str, ...]) -> str:
    if len(commands) == 1 and commands[0].strip().lower() in OPS:
        return f"wait.{commands[0].strip().lower()}"
    return action


def duration(value: Any, what: str) -> float:
    """Go's duration syntax (`1h30m`, `500ms`, `2.5s`); a bare number is seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value or "").strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise StepFailed(f"{what} is a duration such as 30s, 5m or 1h30m, got {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _emit(out: BinaryIO, result: Mapping[str, Any]) -> None:
    out.write((json.dumps(result, separators=(",", ":")) + "\n").encode())
    out.flush()


async def run(action: str, config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    reject_unknown(action, config, KEYS)
    started = time.monotonic()
    op = action.partition(".")[2]
    poll = duration(config.get("poll_interval") or "1s", f"{action}: poll_interval")
    if op == "duration":
        seconds = duration(config.get("duration"), f"{action}: duration")
        await trio.sleep(seconds)
        _emit(out, {"operation": "duration", "duration": config.get("duration"), "waited_seconds": round(seconds, 3)})
    elif op == "until":
        text = str(config.get("until") or "")
        try:
            when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise StepFailed(
                f"{action}: until is an RFC 3339 time such as 2026-12-01T02:00:00Z, got {text!r}"
            ) from None
        if when.tzinfo is None:
            raise StepFailed(f"{action}: until needs a time zone (Z or +01:00), got {text!r}")
        delay = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
        await trio.sleep(max(0.0, delay))
        _emit(out, {"operation": "until", "until": text, "waited_seconds": round(time.monotonic() - started, 3)})
    elif op == "file":
        raw = config.get("path")
        if not isinstance(raw, str) or not raw:
            raise StepFailed(f"{action} needs with.path")
        path = raw if os.path.isabs(raw) else os.path.join(cwd, raw)
        state = str(config.get("state") or "exists")
        if state not in ("exists", "missing"):
            raise StepFailed(f"{action}: state is exists or missing, got {state!r}")
        while os.path.lexists(path) != (state == "exists"):
            await trio.sleep(poll)
        _emit(
            out,
            {"operation": "file", "path": path, "state": state, "waited_seconds": round(time.monotonic() - started, 3)},
        )
    elif op == "http":
        await _http(action, config, poll, out, started)
    else:  # pragma: no cover - callers check ACTIONS
        raise StepFailed(f"step type {action} is not supported by dagd yet")


async def _http(action: str, config: Mapping[str, Any], poll: float, out: BinaryIO, started: float) -> None:
    url = str(config.get("url") or "")
    if not url.startswith(("http://", "https://")):
        raise StepFailed(f"{action} needs with.url, an absolute http(s) URL")
    method = str(config.get("method") or "GET").upper()
    want = int(config.get("status") or 200)
    headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
    body = config.get("body")
    timeout = duration(config.get("request_timeout") or "10s", f"{action}: request_timeout")
    attempts = 0
    last = ""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        while True:
            attempts += 1
            try:
                answer = await client.request(method, url, headers=headers, content=None if body is None else str(body))
                if answer.status_code == want:
                    break
                last = f"status {answer.status_code}"
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
            await trio.sleep(poll)
    _emit(
        out,
        {"operation": "http", "url": url, "status": want, "attempts": attempts}
        | {"waited_seconds": round(time.monotonic() - started, 3)}
        | ({"last_failure": last} if last else {}),
    )
