"""Litestar app: thin handlers over the service layer, Dagu's /api/v1 shapes, SSE, metrics.

Security baseline: requests whose Host is not an allowed name are refused (DNS rebinding);
state-changing requests must come from the same origin (Origin / Sec-Fetch-Site) or carry the
configured bearer token (CSRF); DAG names are checked against one pattern; errors are JSON
objects `{code, message}` and never carry a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
from litestar import Litestar, MediaType, Request, Response, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.types import ASGIApp, Receive, Scope, Send

from dagd import __version__
from dagd.http import models as m
from dagd.http import shapes
from dagd.http.auth import Auth
from dagd.service import NOT_FOUND, Service, ServiceError

UI_DIR = Path(__file__).parent / "ui"  # vite builds web/ into here
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    413: "payload_too_large",
}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _name(value: str) -> str:
    if not NAME.match(value) or ".." in value:
        raise HTTPException(status_code=400, detail=f"invalid name {value!r}")
    return value


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


def error_body(status: int, code: str | None, message: str, **extra: Any) -> dict[str, Any]:
    """Dagu's Error ({code, message}) plus Litestar's documented error keys (status_code, detail)."""
    code = code or HTTP_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    return {"code": code, "message": message, "status_code": status, "detail": message, **extra}


def error(status: int, message: str, code: str | None = None, **extra: Any) -> Response[dict[str, Any]]:
    return Response(error_body(status, code, message, **extra), status_code=status)


def _error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, ServiceError):
        return error(404 if exc.code == NOT_FOUND else 409 if exc.code == -32009 else 400, exc.message)
    if isinstance(exc, HTTPException):
        return error(exc.status_code, str(exc.detail))
    return error(500, "internal error (see dagd's log)")


def create_app(svc: Service, hosts: set[str], auth: Auth | None = None) -> Litestar:
    @get("/api/v1/health", sync_to_thread=False)
    def health() -> m.Health:
        return {
            "status": "healthy",
            "version": __version__,
            "uptime": int(time.time() - svc.started_at),
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        }

    @get("/api/v1/dags")
    async def list_dags(
        page: int = 1,
        per_page: int = Parameter(query="perPage", default=50, ge=1, le=1000),
        name: str | None = None,
        tags: str | None = None,
        labels: str | None = None,
    ) -> m.DagList:
        overview = await svc.overview()
        queued = await svc.db(svc.store.queued)
        running: dict[str, int] = {}
        for a in svc.active.values():
            running[a.dag] = running.get(a.dag, 0) + 1
        waiting: dict[str, int] = {}
        for q in queued:
            waiting[q["dag"]] = waiting.get(q["dag"], 0) + 1
        files = [shapes.dag_file(o, running.get(o.name, 0), waiting.get(o.name, 0)) for o in overview]
        files = shapes.filter_dags(files, name, (tags or labels or "").split(",") if (tags or labels) else [])
        total = len(files)
        start = (max(page, 1) - 1) * per_page
        return {
            "dags": files[start : start + per_page],
            "errors": [f"{o.entry.file}: {o.entry.error}" for o in overview if o.entry.error],
            "pagination": shapes.page(total, max(page, 1), per_page),
        }

    @post("/api/v1/dags/{file_name:str}/start", status_code=200)
    async def start(file_name: str, request: Request[Any, Any, Any]) -> m.Started:
        body = await _json(request)
        rid = await svc.enqueue(_name(file_name), shapes.overrides(body.get("params")), run_id=_run_id(body))
        return {"dagRunId": rid}

    @post("/api/v1/dags/{file_name:str}/start-sync", status_code=200)
    async def start_sync(file_name: str, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await _json(request)
        timeout = body.get("timeout")
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 86400:
            raise HTTPException(status_code=400, detail="timeout (seconds, 1-86400) is required")
        name = _name(file_name)
        if body.get("singleton") and any(a.dag == name for a in svc.active.values()):
            return error(409, f"{name} is already running")
        rid = await svc.enqueue(name, shapes.overrides(body.get("params")), run_id=_run_id(body))
        doc = await svc.wait_finished(name, rid, float(timeout))
        if doc is None:
            return error(408, f"run {rid} still running after {timeout}s", dagRunId=rid)
        return Response({"dagRun": shapes.run_details(doc)}, status_code=200)

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}")
    async def run_details(name: str, run_id: str) -> m.RunDetailsResponse:
        doc = await svc.db(svc.store.run, _name(name), _name(run_id))
        if doc is None:
            raise ServiceError(NOT_FOUND, f"no run {run_id} of {name}")
        details = shapes.run_details(doc)
        details["subRuns"] = [shapes.run_summary(c) for c in await svc.db(svc.store.children, run_id)]
        return {"dagRunDetails": details}

    @get("/api/v1/dags/{file_name:str}/dag-runs/{run_id:str}")
    async def dag_run_of_file(file_name: str, run_id: str) -> m.DagRun:
        doc = await svc.db(svc.store.run, _name(file_name), _name(run_id))
        if doc is None:
            raise ServiceError(NOT_FOUND, f"no run {run_id} of {file_name}")
        details = shapes.run_details(doc)
        details["subRuns"] = [shapes.run_summary(c) for c in await svc.db(svc.store.children, run_id)]
        return {"dagRun": details}

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/sub-dag-runs")
    async def sub_dag_runs(name: str, run_id: str) -> m.SubRuns:
        if await svc.db(svc.store.run, _name(name), _name(run_id)) is None:
            raise ServiceError(NOT_FOUND, f"no run {run_id} of {name}")
        children = await svc.db(svc.store.children, run_id)
        return {"subRuns": [shapes.sub_run(c) for c in children]}

    @post("/api/v1/dag-runs/{name:str}/{run_id:str}/stop", status_code=200)
    async def stop(name: str, run_id: str) -> m.Empty:
        await svc.stop(_name(name), _name(run_id))
        return {}

    def entry_of(file_name: str) -> Any:
        entry = svc.catalog.find(_name(file_name))
        if entry is None:
            raise ServiceError(NOT_FOUND, f"no DAG named {file_name!r}")
        return entry

    @get("/api/v1/dags/{file_name:str}")
    async def dag_detail(file_name: str) -> m.DagDetail:
        entry = entry_of(file_name)
        last = await svc.db(svc.store.run, file_name, None)
        suspended = file_name in await svc.db(svc.store.suspended)
        dag = entry.dag
        out: m.DagDetail = {
            "localDags": [
                {"name": n, "dag": shapes.dag_details(local), "errors": []}
                for n, local in (dag.local_dags.items() if dag else [])
            ],
            "latestDAGRun": shapes.run_details(last) if last else shapes.never_ran(file_name),
            "suspended": suspended,
            "errors": [entry.error] if entry.error else [],
        }
        if dag is not None:
            out["dag"] = shapes.dag_details(dag)
        return out

    @post("/api/v1/dags", status_code=201)
    async def create(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await _json(request)
        name = _name(str(body.get("name") or ""))
        spec = body.get("spec") or "steps:\n  - run: echo hello from " + name + "\n"
        if not isinstance(spec, str):
            raise HTTPException(status_code=400, detail="spec must be YAML text")
        errors, _ = shapes.check_spec(spec, name)
        if errors:
            return error(400, "; ".join(errors))
        path = trio.Path(svc.catalog.folder) / f"{name}.yaml"
        if await path.exists() or svc.catalog.find(name) is not None:
            return error(409, f"DAG {name!r} already exists", "already_exists")
        await trio.to_thread.run_sync(shapes.write_atomically, str(path), spec)
        svc.reload()
        return Response({"name": name}, status_code=201)

    @delete("/api/v1/dags/{file_name:str}", status_code=204)
    async def remove(file_name: str) -> None:
        entry = entry_of(file_name)
        await trio.Path(entry.file).unlink()
        svc.reload()

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/outputs")
    async def outputs(name: str, run_id: str) -> m.Outputs:
        doc = await svc.db(svc.store.run, _name(name), _name(run_id))
        if doc is None:
            raise ServiceError(NOT_FOUND, f"no run {run_id} of {name}")
        entry = svc.catalog.find(name)
        names = {s.name: s.output for s in entry.dag.steps if s.output} if entry and entry.dag else {}
        return shapes.outputs(doc, names)

    @get("/api/v1/dag-runs")
    async def all_runs(
        limit: int = Parameter(default=100, ge=1, le=500),
        status: list[int] | None = None,
        name: str | None = None,
        cursor: str | None = None,
        dag_run_id: str | None = Parameter(query="dagRunId", default=None),
    ) -> m.RunsPage:
        before = shapes.decode_cursor(cursor) if cursor else None
        labels: list[str | None] = [*shapes.status_labels(status or [])] or [None]
        rows: list[dict[str, Any]] = []
        for label in labels:
            rows += await svc.db(
                lambda lb=label: svc.store.history(name or None, limit + 1, lb, dag_run_id or None, before)
            )
        rows.sort(key=lambda r: (r["started_at"] or 0, r["id"]), reverse=True)
        out: m.RunsPage = {"dagRuns": [shapes.run_summary(r) for r in rows[:limit]]}
        if len(rows) > limit:
            out["nextCursor"] = shapes.encode_cursor(rows[limit - 1])
        return out

    @get("/api/v1/queues")
    async def queues() -> m.Queues:
        queued = await svc.db(svc.store.queued)
        return shapes.queues(svc, queued)

    @post("/api/v1/dags/validate", status_code=200)
    async def validate(request: Request[Any, Any, Any]) -> m.Validation:
        body = await _json(request)
        spec = body.get("spec")
        if not isinstance(spec, str):
            raise HTTPException(status_code=400, detail="spec (the DAG's YAML text) is required")
        errors, dag = shapes.check_spec(spec, str(body.get("name") or "dag"), strict=True)
        out: m.Validation = {"valid": not errors, "errors": errors}
        if dag is not None:
            out["dag"] = shapes.dag_details(dag)
        return out

    @get("/api/v1/dags/{file_name:str}/spec")
    async def get_spec(file_name: str) -> m.Spec:
        entry = entry_of(file_name)
        text = await trio.Path(entry.file).read_text()
        out: m.Spec = {"spec": text, "errors": [entry.error] if entry.error else []}
        if entry.dag is not None:
            out["dag"] = shapes.dag_details(entry.dag)
        return out

    @put("/api/v1/dags/{file_name:str}/spec")
    async def put_spec(file_name: str, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        entry = entry_of(file_name)
        body = await _json(request)
        spec = body.get("spec")
        if not isinstance(spec, str):
            raise HTTPException(status_code=400, detail="spec (the DAG's YAML text) is required")
        errors, _ = shapes.check_spec(spec, file_name)
        if errors:  # the file on disk stays as it was
            return error(400, "; ".join(errors), errors=errors)
        await trio.to_thread.run_sync(shapes.write_atomically, entry.file, spec)
        svc.reload()
        return Response({"errors": []}, status_code=200)

    @post("/api/v1/dags/{file_name:str}/enqueue", status_code=200)
    async def enqueue(file_name: str, request: Request[Any, Any, Any]) -> m.Started:
        body = await _json(request)
        rid = await svc.enqueue(_name(file_name), shapes.overrides(body.get("params")), run_id=_run_id(body))
        return {"dagRunId": rid}

    @post("/api/v1/dags/{file_name:str}/suspend", status_code=200)
    async def suspend(file_name: str, request: Request[Any, Any, Any]) -> m.Empty:
        body = await _json(request)
        if not isinstance(body.get("suspend"), bool):
            raise HTTPException(status_code=400, detail="suspend (true or false) is required")
        await svc.suspend(_name(file_name), body["suspend"])
        return {}

    @post("/api/v1/dags/{file_name:str}/stop-all", status_code=200)
    async def stop_all(file_name: str) -> m.Errors:
        with contextlib.suppress(ServiceError):  # nothing running is not an error here
            await svc.stop(_name(file_name), None)
        return {"errors": []}

    @get("/api/v1/dags/{file_name:str}/dag-runs")
    async def dag_runs(file_name: str, limit: int = Parameter(default=30, ge=1, le=500)) -> m.DagRuns:
        rows = await svc.db(svc.store.history, _name(file_name), limit, None, None)
        docs = [await svc.db(svc.store.run, file_name, r["id"]) for r in rows]
        return {"dagRuns": [shapes.run_details(d) for d in docs if d is not None], "gridData": []}

    @post("/api/v1/dag-runs/{name:str}/{run_id:str}/retry", status_code=200)
    async def retry(name: str, run_id: str) -> m.Empty:
        await svc.retry(_name(name), _name(run_id))
        return {}

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/log")
    async def run_log(
        name: str,
        run_id: str,
        tail: int | None = Parameter(default=None, ge=1),
        head: int | None = Parameter(default=None, ge=1),
        offset: int | None = Parameter(default=None, ge=1),
        limit: int | None = Parameter(default=None, ge=1, le=10000),
    ) -> m.Log:
        doc = await svc.db(svc.store.run, _name(name), _name(run_id))
        if doc is None:
            raise ServiceError(NOT_FOUND, f"no run {run_id} of {name}")
        parts = []
        for s in doc["steps"]:
            parts.append(f"==> {s['step']} ({s['status']}) <==\n" + shapes.read_log(s["stdout_path"]))
        return shapes.log("\n".join(parts), tail, head, offset, limit)

    async def step_of(name: str, run_id: str, step_name: str) -> dict[str, Any]:
        doc = await svc.db(svc.store.run, _name(name), _name(run_id))
        steps = [s for s in (doc or {}).get("steps", []) if s["step"] == step_name]
        if not steps:
            raise ServiceError(NOT_FOUND, f"no step {step_name!r} in run {run_id} of {name}")
        return dict(steps[0])

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/steps/{step_name:str}/log")
    async def step_log(
        name: str,
        run_id: str,
        step_name: str,
        tail: int | None = Parameter(default=None, ge=1),
        head: int | None = Parameter(default=None, ge=1),
        offset: int | None = Parameter(default=None, ge=1),
        limit: int | None = Parameter(default=None, ge=1, le=10000),
        stream: str = "stdout",
    ) -> m.Log:
        step = await step_of(name, run_id, step_name)
        key = "stderr_path" if stream == "stderr" else "stdout_path"
        return shapes.log(shapes.read_log(step[key]), tail, head, offset, limit)

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/steps/{step_name:str}/log/stream")
    async def step_log_stream(name: str, run_id: str, step_name: str, stream: str = "stdout") -> ServerSentEvent:
        """dagd's addition: the step's log as SSE `chunk` events while it grows, `end` when the step is done."""
        step = await step_of(name, run_id, step_name)
        key = "stderr_path" if stream == "stderr" else "stdout_path"

        async def chunks() -> AsyncIterator[ServerSentEventMessage]:
            pos = 0
            path = step[key]
            while True:
                current = await step_of(name, run_id, step_name)
                path = current[key] or path
                data, pos = await trio.to_thread.run_sync(shapes.read_from, path, pos)
                if data:
                    yield ServerSentEventMessage(event="chunk", data=json.dumps({"text": data}))
                if current["status"] not in ("running", "not_started", "queued", "retrying") and not data:
                    yield ServerSentEventMessage(event="end", data=json.dumps({"status": current["status"]}))
                    return
                await trio.sleep(0.25)

        return ServerSentEvent(chunks())

    @get("/api/v1/events")
    async def events() -> ServerSentEvent:
        send, receive = trio.open_memory_channel[dict[str, Any]](1000)
        svc.subscribers.append(send)

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            try:
                yield ServerSentEventMessage(event="hello", data="{}")
                async for doc in receive:
                    yield ServerSentEventMessage(event=doc["type"], data=json.dumps(doc, default=str))
            finally:
                if send in svc.subscribers:
                    svc.subscribers.remove(send)

        return ServerSentEvent(stream())

    @get("/api/v1/metrics", media_type=MediaType.TEXT)
    async def metrics() -> str:
        return await shapes.metrics(svc)

    ui = UI_DIR.resolve()

    @get(["/", "/{path:path}"], include_in_schema=False)
    async def web_ui(path: str = "") -> Response[bytes]:
        """The built web UI; client routes (/dags/x) get index.html, /api/... misses stay 404 JSON."""
        if path.lstrip("/").startswith("api/"):
            raise ServiceError(NOT_FOUND, f"no API route {path}")
        return await trio.to_thread.run_sync(shapes.ui_file, ui, path.lstrip("/"))

    return Litestar(
        route_handlers=[
            web_ui,
            health,
            list_dags,
            dag_detail,
            create,
            remove,
            outputs,
            all_runs,
            queues,
            validate,
            get_spec,
            put_spec,
            start,
            start_sync,
            enqueue,
            suspend,
            stop_all,
            dag_runs,
            run_details,
            dag_run_of_file,
            sub_dag_runs,
            stop,
            retry,
            run_log,
            step_log,
            step_log_stream,
            events,
            metrics,
        ],
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


def _run_id(body: dict[str, Any]) -> str | None:
    rid = body.get("dagRunId")
    return _name(rid) if isinstance(rid, str) and rid else None


async def _json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPException(status_code=400, detail="body must be a JSON object")
    return data
