"""What the HTTP route modules share: name checks, JSON bodies, Dagu-shaped errors."""

from __future__ import annotations

import json
from typing import Any

import trio
from litestar import Request, Response
from litestar.exceptions import HTTPException

from dagd import names
from dagd.access import json_depth_exceeds
from dagd.http import models as m
from dagd.http import shapes
from dagd.reads import PARSING
from dagd.service import Service

HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
}


def checked_name(value: object) -> str:
    """A DAG name, run id or step name as a path segment (dagd.names: full match, no separators)."""
    try:
        return names.run_id(value)
    except names.InvalidName as exc:
        raise HTTPException(status_code=400, detail=str(exc).replace("run id", "name")) from None


def checked_dag_name(value: object) -> str:
    """A name for a new DAG file: dagd.names' DAG rule."""
    try:
        return names.dag_name(value)
    except names.InvalidName as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def error_body(status: int, code: str | None, message: str, **extra: Any) -> dict[str, Any]:
    """Dagu's Error ({code, message}) plus Litestar's documented error keys (status_code, detail)."""
    code = code or HTTP_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    return {"code": code, "message": message, "status_code": status, "detail": message, **extra}


def error(status: int, message: str, code: str | None = None, **extra: Any) -> Response[dict[str, Any]]:
    return Response(error_body(status, code, message, **extra), status_code=status)


def run_id_of(body: dict[str, Any]) -> str | None:
    rid = body.get("dagRunId")
    return checked_name(rid) if isinstance(rid, str) and rid else None


# Large bodies (a DAG's YAML of megabytes) are taken one at a time: the others wait with their
# bytes unread, so TCP holds their senders back instead of the event loop moving every upload at once.
LARGE_BODY = 256 * 1024
_large_bodies = trio.Semaphore(1)


async def read_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return (await read_json_raw(request))[1]


async def read_json_raw(request: Request[Any, Any, Any]) -> tuple[bytes, dict[str, Any]]:
    """The body as sent (a webhook's signature covers those bytes) and as a JSON object."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared < LARGE_BODY:
        raw = await request.body()
        return raw, (_object(_decode(raw)) if raw else {})
    async with _large_bodies:
        with trio.move_on_after(60) as late:  # a sender this slow may not hold the others back
            raw = await request.body()
        if late.cancelled_caught:
            raise HTTPException(status_code=408, detail="the request body took more than 60 s to arrive")
        # checked and decoded in a worker thread: megabytes of JSON take the loop tens of ms
        return raw, _object(await trio.to_thread.run_sync(_decode, raw, limiter=PARSING))


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise HTTPException(status_code=400, detail="body must be a JSON object")
    return data


def _decode(raw: bytes) -> Any:
    if json_depth_exceeds(raw, 32):
        raise HTTPException(status_code=400, detail="body nests JSON deeper than 32 levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise HTTPException(status_code=400, detail=f"body is not JSON: {exc}") from None


def dag_of(svc: Service, name: str) -> Any:
    """The DAG as dagd knows it now (its last good version), or None."""
    entry = svc.catalog.find(name)
    return entry.dag if entry is not None else None


async def details(svc: Service, doc: dict[str, Any]) -> m.RunDetails:
    """DAGRunDetails of a run document: nodes with their steps and sub-runs, the run's children."""
    children = await svc.children(doc["id"])
    out = shapes.run_details(doc, dag_of(svc, doc["dag"]), children)
    out["subRuns"] = [shapes.run_summary(c) for c in children]
    return out


async def run_with_children(svc: Service, name: str, run_id: str) -> m.RunDetails:
    """A run's DAGRunDetails plus the sub-DAG runs it started; 404 when there is no such run.
    `latest` stands for the DAG's latest run, as in Dagu."""
    doc = await svc.run_doc(checked_name(name), checked_name(run_id))
    return await details(svc, doc)


async def concrete_run_id(svc: Service, name: str, run_id: str) -> str:
    """A run id, with Dagu's `latest` resolved to the DAG's latest run (404 when it has none)."""
    if run_id != "latest":
        return checked_name(run_id)
    return str((await svc.run_doc(checked_name(name)))["id"])
