"""The Litestar app: the Guard in front (Host allow-list, authentication, CSRF), the /api/v1
routes of dags.py and runs.py, the built web UI behind them, JSON errors that never carry a
traceback. Served inside dagd's trio loop by hypercorn (daemon.serve_http)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.types import ASGIApp, Receive, Scope, Send

from dagd import __version__
from dagd.http import dags, files, runs
from dagd.http.auth import Auth
from dagd.http.common import error, error_body
from dagd.service import NOT_FOUND, Service, ServiceError

UI_DIR = Path(__file__).parent / "ui"  # vite builds web/ into here
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Guard(ASGIMiddleware):
    """Host allow-list (DNS rebinding), authentication when configured, and CSRF protection:
    a state change needs a bearer token (never sent by a browser on its own) or a same-origin
    request (Origin / Sec-Fetch-Site), because browsers replay basic credentials cross-site."""

    def __init__(self, hosts: set[str], auth: Auth) -> None:
        self.hosts = hosts
        self.auth = auth

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        await self._handle(scope, receive, send, next_app)

    async def _handle(self, scope: Any, receive: Receive, send: Any, next_app: ASGIApp) -> None:
        if scope["type"] != "http":
            await next_app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if hostname not in self.hosts:
            await _refuse(send, 421, "forbidden", f"Host {host!r} is not served here")
            return
        kind = self.auth.check(headers.get("authorization", "")) if self.auth.enabled else None
        if self.auth.enabled and kind is None and scope["path"] != "/api/v1/health":
            await _refuse(
                send,
                401,
                "unauthorized",
                "authentication required (HTTP basic or a bearer token)",
                [(b"www-authenticate", b'Basic realm="dagd", charset="UTF-8"')],
            )
            return
        if scope["method"] not in SAFE_METHODS and kind != "bearer":
            origin = headers.get("origin")
            site = headers.get("sec-fetch-site")
            same = (origin is None or origin.split("://", 1)[-1] == host) and site in (None, "same-origin", "none")
            if not same:
                await _refuse(send, 403, "forbidden", "cross-site request refused (CSRF protection)")
                return
        await next_app(scope, receive, send)


async def _refuse(
    send: Any, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(error_body(status, code, message)).encode()
    headers = [(b"content-type", b"application/json"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, ServiceError):
        return error(404 if exc.code == NOT_FOUND else 409 if exc.code == -32009 else 400, exc.message)
    if isinstance(exc, HTTPException):
        return error(exc.status_code, str(exc.detail))
    return error(500, "internal error (see dagd's log)")


def create_app(svc: Service, hosts: set[str], auth: Auth | None = None) -> Litestar:
    ui = UI_DIR.resolve()

    @get(["/", "/{path:path}"], include_in_schema=False)
    async def web_ui(path: str = "") -> Response[bytes]:
        """The built web UI; client routes (/dags/x) get index.html, /api/... misses stay 404 JSON."""
        if path.lstrip("/").startswith("api/"):
            raise ServiceError(NOT_FOUND, f"no API route {path}")
        return await trio.to_thread.run_sync(files.ui_file, ui, path.lstrip("/"))

    return Litestar(
        route_handlers=[*dags.routes(svc), *runs.routes(svc), web_ui],
        middleware=[Guard(hosts, auth or Auth())],
        exception_handlers={Exception: _error_handler},
        openapi_config=OpenAPIConfig(
            title="dagd API",
            version=__version__,
            description="Dagu-compatible /api/v1 served by dagd",
            path="/api/v1/openapi.json",
            render_plugins=[JsonRenderPlugin(path="/")],
        ),
        debug=False,
        logging_config=None,  # dagd's own logging (journald priorities) stays in charge
    )
