"""The Litestar app: the Guard in front (Host allow-list, authentication, CSRF), the /api/v1
routes of dags.py and runs.py, the built web UI behind them, JSON errors that never carry a
traceback. Served inside dagd's trio loop by hypercorn (daemon.serve_http)."""

from __future__ import annotations

import html
import json
import logging
import re
import urllib.parse
from pathlib import Path
from typing import Any

import trio
from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.types import ASGIApp, Receive, Scope, Send

from dagd import __version__, access, peers
from dagd.access import Principal, Rule
from dagd.errors import FORBIDDEN, NOT_FOUND, STORAGE_FULL, UNAUTHORIZED, ServiceError
from dagd.http import dags, files, runs, stream, webhooks
from dagd.http.auth import Auth, FailureLimit
from dagd.http.common import error, error_body
from dagd.service import Service
from dagd.sessions import COOKIE, SESSION_TTL, Sessions

log = logging.getLogger("dagd.http")

UI_DIR = Path(__file__).parent / "ui"  # vite builds web/ into here
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>dagd: log in</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;line-height:1.5}
code{background:#eee;padding:.1em .3em;border-radius:3px}</style></head><body>
<h1>dagd: who are you?</h1><p>{message}.</p>
<p>On the host, as a member of group <code>dagd</code>, run <code>dagctl ui</code> and open the link it prints
(it works once, for two minutes).</p></body></html>"""


class Guard(ASGIMiddleware):
    """Every request passes here first. The rule is the control socket's (dagd.access.Rule):

    - Host must be one we serve (DNS rebinding);
    - who is asking: a credential (basic user, bearer token), a login session cookie (from
      `dagctl ui`), or, on a loopback connection without either, the uid the kernel says owns
      the client's socket (dagd.peers) — let in only if the rule allows that uid;
    - nobody else gets further than GET /api/v1/health;
    - a state change needs a bearer token or a same-origin request (Origin / Sec-Fetch-Site):
      browsers replay cookies, basic credentials and their own uid cross-site (CSRF);
    - every state change is audited with who made it.
    """

    def __init__(self, hosts: set[str], auth: Auth, rule: Rule, sessions: Sessions) -> None:
        self.hosts = hosts
        self.auth = auth
        self.rule = rule
        self.sessions = sessions
        self.failures = FailureLimit()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        await self._handle(scope, receive, send, next_app)

    async def _handle(self, scope: Any, receive: Receive, send: Any, next_app: ASGIApp) -> None:
        if scope["type"] != "http" or scope.get(stream.INTERNAL) is not None:
            # (an in-process read of the live-update stream: its principal passed here already;
            # no server ever puts this key in a request's scope)
            await next_app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if hostname not in self.hosts:
            await _refuse(send, 421, "forbidden", f"Host {host!r} is not served here")
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path.endswith("/dequeue"):  # Dagu's UI changes state with this GET:
            method = "POST"  # it gets a change's checks (same origin) and is audited
        if path == "/login" and method == "GET":
            await self._login(scope, send)
            return
        client = tuple(scope.get("client") or ("", 0))
        server = tuple(scope.get("server") or ("", 0))
        if method == "POST" and WEBHOOK_PATH.fullmatch(path):
            await self._webhook(scope, receive, send, next_app, str(client[0]), path)
            return
        who: Principal | None = None
        uid: int | None = None
        authorization = headers.get("authorization")
        if authorization:
            wait = self.failures.blocked(client[0])
            if wait:
                await _refuse(
                    send,
                    429,
                    "rate_limited",
                    "too many failed logins: try again later",
                    [(b"retry-after", str(int(wait) + 1).encode())],
                )
                return
            who = await self.auth.verify(authorization)
            if who is None:
                self.failures.failed(client[0])
                log.warning("HTTP %s %s from %s: wrong credentials", method, path, client[0])
                await self._unauthorized(send, "wrong credentials", headers)
                return
        else:
            session = _cookie(headers.get("cookie", ""), COOKIE)
            who = self.sessions.lookup(session) if session else None
            if who is None and peers.is_loopback(str(client[0])) and peers.is_loopback(str(server[0])):
                uid = peers.client_uid((str(client[0]), int(client[1])), (str(server[0]), int(server[1])))
                if uid is not None and self.rule.allows(uid):
                    who = access.local(uid)
        if who is None:
            if path == "/api/v1/health":
                await next_app(scope, receive, send)
                return
            if method not in SAFE_METHODS:  # an attempt to change something: worth a warning
                asker = f"uid {uid}" if uid is not None else "an unknown client"
                log.warning(
                    "HTTP %s %s from %s refused: %s is not allowed and sent no credentials",
                    method,
                    path,
                    client[0],
                    asker,
                )
            await self._unauthorized(send, "authentication required", headers)
            return
        scope.setdefault("state", {})["who"] = who  # (a webhook's created_by)
        if method not in SAFE_METHODS and who.kind != "token":
            origin = headers.get("origin")
            site = headers.get("sec-fetch-site")
            same = (origin is None or origin.split("://", 1)[-1] == host) and site in (None, "same-origin", "none")
            if not same:
                access.audit(who, f"{method} {path} -> 403 (cross-site, refused)", f"HTTP from {client[0]}")
                await _refuse(send, 403, "forbidden", "cross-site request refused (CSRF protection)")
                return
        if method in SAFE_METHODS or path == "/api/v1/events/stream/topics":  # (a view changes, not dagd)
            await next_app(scope, receive, send)
            return
        status = [0]
        try:
            await _forward(next_app, scope, receive, send, status)
        finally:
            dag, run_id = _targets(path)
            access.audit(
                who, f"{method} {path} -> {status[0] or 'no answer'}", f"HTTP from {client[0]}", dag=dag, run_id=run_id
            )

    async def _webhook(
        self, scope: Any, receive: Receive, send: Any, next_app: ASGIApp, client: str, path: str
    ) -> None:
        """POST /api/v1/webhooks/{fileName}: no login; the route checks the webhook's own token or
        signature (dagd.webhooks). Wrong ones count as failed logins of the address, and every
        call is audited."""
        wait = self.failures.blocked(client)
        if wait:
            await _refuse(
                send, 429, "rate_limited", "too many failed attempts: try again later",
                [(b"retry-after", str(int(wait) + 1).encode())],
            )  # fmt: skip
            return
        status = [0]
        try:
            await _forward(next_app, scope, receive, send, status)
        finally:
            if status[0] == 401:
                self.failures.failed(client)
            dag = urllib.parse.unquote(path.rsplit("/", 1)[1])
            who = Principal("webhook", dag)
            access.audit(who, f"POST {path} -> {status[0] or 'no answer'}", f"HTTP from {client}", dag=dag)

    async def _unauthorized(self, send: Any, why: str, headers: dict[str, str]) -> None:
        extra = [(b"www-authenticate", b'Basic realm="dagd", charset="UTF-8"')] if self.auth.users else []
        how = "run `dagctl ui` on the host for a login link" + (
            ", or use HTTP basic or a bearer token" if self.auth.enabled else ""
        )
        message = f"{why}: {self.rule.describe()} may use dagd; {how}"
        if "text/html" in headers.get("accept", ""):  # a browser: a page that says what to do
            page = LOGIN_PAGE.replace("{message}", html.escape(message)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"), *extra],
                }
            )
            await send({"type": "http.response.body", "body": page})
            return
        await _refuse(send, 401, "unauthorized", message, extra)

    async def _login(self, scope: Any, send: Any) -> None:
        """GET /login?token=…: trade a one-time link from `dagctl ui` for a session cookie."""
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("token") or [""])[0]
        redeemed = self.sessions.redeem(token) if token else None
        if redeemed is None:
            await _refuse(
                send, 401, "unauthorized", "this login link is unknown, used or expired: run `dagctl ui` again"
            )
            return
        session, who = redeemed
        access.audit(who, "login", f"HTTP from {(scope.get('client') or ('?',))[0]}")
        cookie = f"{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={int(SESSION_TTL)}"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()), (b"cache-control", b"no-store")],
            }
        )
        await send({"type": "http.response.body", "body": b""})


WEBHOOK_PATH = re.compile(r"/api/v1/webhooks/[^/]+")


async def _forward(next_app: ASGIApp, scope: Any, receive: Receive, send: Any, status: list[int]) -> None:
    """The request on to the app, its response status noted in status[0] (for the audit line)."""

    async def watch(message: Any) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
        await send(message)

    await next_app(scope, receive, watch)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _targets(path: str) -> tuple[str | None, str | None]:
    """(DAG, run id) named by an /api/v1 path, for the audit line."""
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[:3] == ["api", "v1", "dags"]:
        return parts[3], (parts[5] if len(parts) >= 6 and parts[4] == "dag-runs" else None)
    if len(parts) >= 5 and parts[:3] == ["api", "v1", "dag-runs"]:
        return parts[3], parts[4]
    return None, None


async def _refuse(
    send: Any, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(error_body(status, code, message)).encode()
    headers = [(b"content-type", b"application/json"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, ServiceError):
        status = {NOT_FOUND: 404, -32009: 409, STORAGE_FULL: 507, UNAUTHORIZED: 401, FORBIDDEN: 403}.get(exc.code, 400)
        return error(status, exc.message)
    if isinstance(exc, HTTPException):
        return error(exc.status_code, str(exc.detail))
    log.error("HTTP %s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc)
    return error(500, "internal error (see dagd's log)")


def create_app(svc: Service, hosts: set[str], auth: Auth | None = None, sessions: Sessions | None = None) -> Litestar:
    ui = UI_DIR.resolve()

    @get(["/", "/{path:path}"], include_in_schema=False)
    async def web_ui(path: str = "") -> Response[bytes]:
        """The built web UI; client routes (/dags/x) get index.html, /api/... misses stay 404 JSON."""
        if path.lstrip("/").startswith("api/"):
            raise ServiceError(NOT_FOUND, f"no API route {path}")
        return await trio.to_thread.run_sync(files.ui_file, ui, path.lstrip("/"))

    made: list[Litestar] = []
    app = Litestar(
        route_handlers=[
            *dags.routes(svc),
            *runs.routes(svc),
            *webhooks.routes(svc),
            *stream.routes(svc, lambda: made[0]),
            web_ui,
        ],
        middleware=[Guard(hosts, auth or Auth(), svc.rule, sessions or Sessions())],
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
    made.append(app)
    # the OpenAPI document is built on its first request otherwise: ≈ 75-110 ms of CPU in one
    # step of the event loop (the loop watch caught it); built here, before READY=1, it is
    # served from the plugin's cache
    from litestar._openapi.plugin import OpenAPIPlugin  # (Litestar exports no public name for it)

    app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    return app
