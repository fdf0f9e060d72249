"""`http.request` (Dagu 1.x `executor: http`): one HTTP request from dagd's loop through httpx.

As Dagu does it: method and URL from `with:` or the step's command (`GET https://…`), the rest of
the request from `with:` (or, in 1.x, a JSON `script:`): headers, query, body, multipart form and
files, timeout (seconds), skip_tls_verify. Output to the step's stdout: unless `silent` on success,
the status line and headers, then the body; `json: true` (or `format: json`) writes
{status_code, headers, body} instead; `output: PATH` writes the body to a file. A status outside
2xx fails the step (`http status code not 2xx: 404`) after its output is written."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, BinaryIO

import httpx
import trio

from dagd.engine.step import StepFailed
from dagd.spec.executors import HTTP_KEYS as KNOWN


def request_config(config: Mapping[str, Any], commands: tuple[str, ...], script: str | None) -> dict[str, Any]:
    """The request's settings, checked: Dagu's rules and messages."""
    cfg: dict[str, Any] = dict(config)
    if script and script.strip():
        try:
            from_script = json.loads(script)
        except ValueError as exc:
            raise StepFailed(f"http executor: the script is not a JSON object of settings: {exc}") from None
        if not isinstance(from_script, dict):
            raise StepFailed("http executor: the script is not a JSON object of settings")
        cfg = {**from_script, **cfg}
    extra = sorted(str(k) for k in cfg if k not in KNOWN)
    if extra:
        raise StepFailed(f"http executor: {', '.join(extra)} is not a setting of http.request")
    if commands:
        method, _, url = commands[0].strip().partition(" ")
        if not url and method.startswith(("http://", "https://")):
            method, url = "GET", method
        cfg["method"], cfg["url"] = method, url.strip()
    if not cfg.get("url"):
        raise StepFailed("http executor: url is required (set via command, args, or with.url)")
    if not cfg.get("method"):
        raise StepFailed("http executor: method is required (set via command or with.method)")
    if cfg.get("body") and (cfg.get("form") or cfg.get("files")):
        raise StepFailed("http executor: body cannot be combined with form or files")
    for key in ("headers", "query", "form", "files"):
        if cfg.get(key) is not None and not isinstance(cfg[key], Mapping):
            raise StepFailed(f"http executor: {key} is a mapping of names to strings")
    timeout = cfg.get("timeout") or 0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise StepFailed("http executor: timeout is a number of seconds (0: none)")
    return cfg


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _headers_text(response: httpx.Response) -> bytes:
    """Like Go's http.Header.Write: canonical names, sorted, CRLF."""
    names = sorted({k.title() for k in response.headers})
    lines = [f"{n}: {v}\r\n" for n in names for v in response.headers.get_list(n)]
    return "".join(lines).encode()


async def run(cfg: Mapping[str, Any], cwd: str, out: BinaryIO, err: BinaryIO | None = None) -> None:
    """Send the request; write what Dagu writes; StepFailed when it cannot be sent or is not 2xx."""
    files = []
    opened = []
    try:
        for field, path in (cfg.get("files") or {}).items():
            full = str(path) if os.path.isabs(str(path)) else os.path.join(cwd, str(path))
            try:
                fh = open(full, "rb")  # noqa: SIM115 - closed below, after the request
            except OSError as exc:
                raise StepFailed(f"http executor: cannot read {full}: {exc.strerror or exc}") from None
            opened.append(fh)
            files.append((str(field), (os.path.basename(full), fh)))
        timeout = float(cfg.get("timeout") or 0) or None
        async with httpx.AsyncClient(verify=not cfg.get("skip_tls_verify"), timeout=timeout) as client:
            request = client.build_request(
                str(cfg["method"]).upper(),
                str(cfg["url"]),
                headers={str(k): str(v) for k, v in (cfg.get("headers") or {}).items()},
                params={str(k): str(v) for k, v in (cfg.get("query") or {}).items()},
                content=None if (cfg.get("form") or files) else str(cfg.get("body") or "").encode(),
                data={str(k): str(v) for k, v in (cfg.get("form") or {}).items()} or None,
                files=files or None,
            )
            if cfg.get("debug") and err is not None:  # the request as sent, on the step's stderr
                err.write(f"> {request.method} {request.url}\n".encode())
                err.write("".join(f"> {k}: {v}\n" for k, v in request.headers.items()).encode())
            try:
                response = await client.send(request)
            except httpx.TimeoutException:
                raise StepFailed(f"http executor: no answer within {cfg.get('timeout')}s", 124) from None
            except httpx.HTTPError as exc:
                raise StepFailed(f"http executor: {type(exc).__name__}: {exc}") from None
    finally:
        for fh in opened:
            fh.close()
    if cfg.get("debug") and err is not None:
        err.write(f"< {_reason(response.status_code)}\n".encode() + _headers_text(response).replace(b"\r\n", b"\n"))
    ok = 200 <= response.status_code < 300
    as_json = cfg.get("json") is True or cfg.get("format") == "json"
    target = cfg.get("output")
    if target and ok:
        path = str(target) if os.path.isabs(str(target)) else os.path.join(cwd, str(target))
        await trio.to_thread.run_sync(_write_file, path, response.content)
    if as_json:
        doc: dict[str, Any] = {}
        if not ok or not cfg.get("silent"):
            doc["status_code"] = response.status_code
            headers: dict[str, list[str]] = {}
            for k in response.headers:
                headers[k.title()] = response.headers.get_list(k)
            doc["headers"] = headers
        if target and ok:
            doc["output"] = path
        else:
            try:
                doc["body"] = json.loads(response.content) if response.content else None
            except ValueError:
                if ok:
                    raise StepFailed("http executor: the response body is not JSON (json: true)") from None
                doc["body"] = response.text
        out.write(json.dumps(doc, indent=1).encode())
    elif not (target and ok) or not cfg.get("silent"):
        if not ok or not cfg.get("silent"):
            out.write(f"{_reason(response.status_code)}\n".encode() + _headers_text(response))
        if not (target and ok):
            out.write(response.content)
    if not ok:
        raise StepFailed(f"http status code not 2xx: {response.status_code}")


def _write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
