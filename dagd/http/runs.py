"""/api/v1 routes about runs: listings, details, stop/retry, logs (paged and streamed),
outputs, queues, the event stream, health and metrics."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import trio
from litestar import MediaType, Request, Response, delete, get, post, route
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from dagd import __version__
from dagd.engine.environment import RUN_SPEC
from dagd.errors import NOT_FOUND, ServiceError
from dagd.http import files, shapes
from dagd.http import metrics as prometheus
from dagd.http import models as m
from dagd.http.common import checked_name, concrete_run_id, dag_of, read_json, run_id_of, run_with_children
from dagd.service import Service


def routes(svc: Service) -> list[Any]:
    @get("/api/v1/health", sync_to_thread=False, responses={503: ResponseSpec(data_container=m.Health)})
    def health() -> Response[m.Health]:
        """healthy (200), or unhealthy (503) with the reason: a probe sees a degraded dagd."""
        body: m.Health = {
            "status": "unhealthy" if svc.degraded else "healthy",
            "version": __version__,
            "uptime": int(time.time() - svc.started_at),
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        }
        if svc.degraded:
            body["reason"] = svc.degraded
        return Response(body, status_code=503 if svc.degraded else 200)

    @get("/api/v1/system")
    async def system() -> dict[str, Any]:
        """dagd's own (not Dagu's): this daemon, its store, its scheduler's next fires, the DAG
        files that do not load, its limits — what the UI's System page shows."""
        return await svc.system()

    @get("/api/v1/workers")
    async def workers() -> dict[str, Any]:
        """Dagu's workers list: the dagd nodes of this store (one, on SQLite) — labels, capacity,
        what each runs, its last heartbeat and its health from the heartbeat's age."""
        out = []
        for n in await svc.nodes():
            age = float(n["age"] or 0)
            out.append(
                {
                    "id": n["id"],
                    "labels": n["labels"],
                    "totalPollers": n["capacity"],
                    "busyPollers": len(n["running"]),
                    "runningTasks": [
                        {
                            "dagRunId": r["id"],
                            "dagName": r["dag"],
                            "startedAt": dt.datetime.fromtimestamp(r["started_at"] or 0, dt.UTC).isoformat(),
                        }
                        for r in n["running"]
                    ],
                    "lastHeartbeatAt": dt.datetime.fromtimestamp(n["heartbeat"], dt.UTC).isoformat(),
                    "healthStatus": "healthy" if age < 15 else "warning" if age < 60 else "unhealthy",
                }
            )
        return {"workers": out, "errors": []}

    @get("/api/v1/dag-runs")
    async def all_runs(
        limit: int = Parameter(default=100, ge=1, le=500),
        status: list[int] | None = None,
        name: str | None = None,
        cursor: str | None = None,
        dag_run_id: str | None = Parameter(query="dagRunId", default=None),
        from_date: int | None = Parameter(query="fromDate", default=None, ge=0, le=2**40),
        to_date: int | None = Parameter(query="toDate", default=None, ge=0, le=2**40),
        labels: str | None = None,
        tags: str | None = None,
    ) -> m.RunsPage:
        """Every DAG's runs, newest first, cursor-paged; `fromDate`/`toDate` (Unix seconds, both
        included): runs started within; `labels` (or Dagu's older `tags`; not both): runs of DAGs
        with all these labels (comma-separated, `key` or `key=value`)."""
        if labels and tags:
            raise HTTPException(status_code=400, detail="labels and tags are the same filter: give one")
        wanted = labels or tags
        dags = shapes.dags_labelled(svc.catalog, wanted) if wanted else None
        return await runs_page(limit, status, name, cursor, dag_run_id, window=(from_date, to_date), dags=dags)

    @get("/api/v1/dag-runs/{name:str}")
    async def runs_of_dag(
        name: str,
        limit: int = Parameter(default=100, ge=1, le=500),
        status: list[int] | None = None,
        cursor: str | None = None,
        dag_run_id: str | None = Parameter(query="dagRunId", default=None),
        from_date: int | None = Parameter(query="fromDate", default=None, ge=0, le=2**40),
        to_date: int | None = Parameter(query="toDate", default=None, ge=0, le=2**40),
    ) -> m.RunsPage:
        """The runs of one DAG (Dagu's DAGRunsPageResponse), newest first, cursor-paged."""
        window = (from_date, to_date)
        return await runs_page(limit, status, checked_name(name), cursor, dag_run_id, exact=True, window=window)

    async def runs_page(
        limit: int,
        status: list[int] | None,
        name: str | None,
        cursor: str | None,
        dag_run_id: str | None,
        *,
        exact: bool = False,
        window: tuple[int | None, int | None] = (None, None),
        dags: list[str] | None = None,
    ) -> m.RunsPage:
        before = shapes.decode_cursor(cursor) if cursor else None
        labels: list[str | None] = [*shapes.status_labels(status or [])] or [None]
        rows: list[dict[str, Any]] = []
        since, until = (float(w) if w is not None else None for w in window)
        for label in labels:
            rows += await svc.runs_page(
                name or None, limit + 1, label, dag_run_id or None, before, (since, until), dags
            )
        if exact:
            rows = [r for r in rows if r["dag"] == name]
        rows.sort(key=lambda r: (r["started_at"] or 0, r["id"]), reverse=True)
        out: m.RunsPage = {"dagRuns": [shapes.run_summary(r) for r in rows[:limit]]}
        if len(rows) > limit:
            out["nextCursor"] = shapes.encode_cursor(rows[limit - 1])
        return out

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}")
    async def run_details(name: str, run_id: str) -> m.RunDetailsResponse:
        return {"dagRunDetails": await run_with_children(svc, name, run_id)}

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/sub-dag-runs")
    async def sub_dag_runs(name: str, run_id: str) -> m.SubRuns:
        doc = await svc.run_doc(checked_name(name), checked_name(run_id))  # 404 when there is no such run
        children = await svc.children(doc["id"])
        return {"subRuns": [shapes.sub_run(c) for c in children]}

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/sub-dag-runs/{sub_id:str}")
    async def sub_dag_run(name: str, run_id: str, sub_id: str) -> m.RunDetailsResponse:
        """A sub-DAG run of this run, as its own DAGRunDetails."""
        parent = await svc.run_doc(checked_name(name), checked_name(run_id))
        child = next((c for c in await svc.children(parent["id"]) if c["id"] == checked_name(sub_id)), None)
        if child is None:
            raise ServiceError(NOT_FOUND, f"run {parent['id']} of {name} has no sub-DAG run {sub_id}")
        return {"dagRunDetails": await run_with_children(svc, child["dag"], child["id"])}

    @post("/api/v1/dag-runs/{name:str}/{run_id:str}/stop", status_code=200)
    async def stop(name: str, run_id: str) -> m.Empty:
        await svc.stop(checked_name(name), await concrete_run_id(svc, name, run_id))
        return {}

    @post(["/api/v1/dag-runs", "/api/v1/dag-runs/enqueue"], status_code=200)
    async def run_from_spec(request: Request[Any, Any, Any]) -> dict[str, Any]:
        """A run of a DAG sent as YAML (Dagu's executeDAGRunFromSpec / enqueueDAGRunFromSpec)."""
        body = await read_json(request)
        spec, name = body.get("spec"), body.get("name")
        if not isinstance(spec, str) or not spec.strip():
            raise HTTPException(status_code=400, detail="spec (the DAG's YAML text) is required")
        if name is not None and not isinstance(name, str):
            raise HTTPException(status_code=400, detail="name must be a string")
        if body.get("labels") and body.get("tags"):
            raise HTTPException(status_code=400, detail="labels and tags cannot both be set")
        if body.get("profile"):
            raise HTTPException(status_code=400, detail="dagd has no runtime profiles")
        rid = await svc.run_inline(
            spec,
            name or None,
            shapes.overrides(body.get("params")),
            run_id=run_id_of(body),
            singleton=body.get("singleton") is True,
        )
        return {"dagRunId": rid}

    @post("/api/v1/dag-runs/{name:str}/{run_id:str}/retry", status_code=200)
    async def retry(name: str, run_id: str) -> m.Empty:
        await svc.retry(checked_name(name), await concrete_run_id(svc, name, run_id))
        return {}

    # Dagu's UI dequeues with GET; the guard treats that path as a change (CSRF check, audit)
    @route("/api/v1/dag-runs/{name:str}/{run_id:str}/dequeue", http_method=["GET", "POST"], status_code=200)
    async def dequeue(name: str, run_id: str) -> m.Empty:
        await svc.dequeue(checked_name(name), await concrete_run_id(svc, name, run_id))
        return {}

    @delete("/api/v1/dag-runs/{name:str}/{run_id:str}", status_code=204)
    async def delete_run(name: str, run_id: str) -> None:
        """Forget a finished run: its record, logs and work folder (409 while it runs or waits)."""
        await svc.delete_run(checked_name(name), checked_name(run_id))

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/spec")
    async def run_spec(name: str, run_id: str) -> m.RunSpec:
        """The DAG file as this run read it (kept in its log folder); else the file as it is now."""
        doc = await svc.run_doc(checked_name(name), checked_name(run_id))
        for path in (os.path.join(doc.get("log_dir") or "", RUN_SPEC), doc["file"]):
            with contextlib.suppress(OSError, ValueError):
                return {"spec": await trio.Path(path).read_text(encoding="utf-8", errors="replace")}
        raise ServiceError(NOT_FOUND, f"the spec of run {doc['id']} is no longer readable")

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/outputs")
    async def outputs(name: str, run_id: str) -> m.Outputs:
        doc = await svc.run_doc(checked_name(name), checked_name(run_id))
        dag = dag_of(svc, name)
        names = {s.name: s.output for s in dag.steps if s.output} if dag else {}
        return shapes.outputs(doc, names)

    @get("/api/v1/queues")
    async def queues() -> m.Queues:
        queued = await svc.queue()
        return shapes.queues(svc, queued)

    @get("/api/v1/queues/{name:str}")
    async def queue(name: str) -> m.Queue:
        """One queue (dagd has one per DAG), with its running runs."""
        queued = await svc.queue()
        found = [q for q in shapes.queues(svc, queued)["queues"] if q["name"] == name]
        if not found:
            entry = svc.catalog.find(checked_name(name))
            if entry is None:
                raise ServiceError(NOT_FOUND, f"no queue {name!r}")
            return shapes.empty_queue(name, entry.dag.max_active_runs if entry.dag else 1)
        return found[0]

    @get("/api/v1/queues/{name:str}/items")
    async def queue_items(
        name: str, limit: int = Parameter(default=100, ge=1, le=1000), cursor: str | None = None
    ) -> m.QueueItems:
        """The queued runs of a queue, oldest first, cursor-paged."""
        queued = [q for q in await svc.queue() if q["dag"] == checked_name(name)]
        start = 0
        if cursor:
            ids = [q["run_id"] for q in queued]
            start = ids.index(cursor) + 1 if cursor in ids else len(ids)
        page = queued[start : start + limit]
        out: m.QueueItems = {"items": [shapes.queued_summary(q) for q in page]}
        if start + limit < len(queued):
            out["nextCursor"] = page[-1]["run_id"]
        return out

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/log")
    async def run_log(
        name: str,
        run_id: str,
        tail: int | None = Parameter(default=None, ge=1),
        head: int | None = Parameter(default=None, ge=1),
        offset: int | None = Parameter(default=None, ge=1),
        limit: int | None = Parameter(default=None, ge=1, le=10000),
    ) -> m.Log:
        doc = await svc.run_doc(checked_name(name), checked_name(run_id))
        parts: list[str] = []
        for s in doc["steps"]:
            parts.append(f"==> {s['step']} ({s['status']}) <==\n" + await svc.log_text(doc["id"], s["stdout_path"]))
        return await trio.to_thread.run_sync(files.log, "\n".join(parts), tail, head, offset, limit)

    async def step_of(name: str, run_id: str, step_name: str) -> dict[str, Any]:
        doc = await svc.run_doc(checked_name(name), checked_name(run_id))
        steps = [s for s in doc["steps"] if s["step"] == step_name]
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
        text = await svc.log_text(run_id, step[key])
        return await trio.to_thread.run_sync(files.log, text, tail, head, offset, limit)

    @get("/api/v1/dag-runs/{name:str}/{run_id:str}/steps/{step_name:str}/log/stream")
    async def step_log_stream(name: str, run_id: str, step_name: str, stream: str = "stdout") -> ServerSentEvent:
        """dagd's addition: the step's log as SSE `chunk` events while it grows, `end` when the step is done."""
        step = await step_of(name, run_id, step_name)
        key = "stderr_path" if stream == "stderr" else "stdout_path"

        async def chunks() -> AsyncIterator[ServerSentEventMessage]:
            pos = 0
            path = step[key]
            for poll in itertools.count(1):
                # the step's own row each time; the whole run (which also reconciles a run whose
                # runner died) every 5 s
                row = None if poll % 20 == 0 else await svc.step_row(name, run_id, step_name)
                current = row or await step_of(name, run_id, step_name)
                path = current[key] or path
                data, pos = await svc.log_chunk(run_id, path, pos)
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
                # the service dropped this reader for falling behind: say so; EventSource
                # reconnects and the UI reloads what it shows
                yield ServerSentEventMessage(event="overflow", data='{"reason": "the reader fell behind"}')
            finally:
                if send in svc.subscribers:
                    svc.subscribers.remove(send)

        return ServerSentEvent(stream())

    @get("/api/v1/metrics", media_type=MediaType.TEXT)
    async def metrics() -> str:
        return await prometheus.metrics(svc)

    return [
        health,
        workers,
        system,
        run_from_spec,
        all_runs,
        runs_of_dag,
        run_details,
        sub_dag_runs,
        sub_dag_run,
        stop,
        retry,
        dequeue,
        delete_run,
        run_spec,
        outputs,
        queues,
        queue,
        queue_items,
        run_log,
        step_log,
        step_log_stream,
        events,
        metrics,
    ]
