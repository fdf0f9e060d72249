"""/api/v1 routes about DAG files: list, details, create/delete, spec, validate, start, enqueue,
suspend, stop-all, a DAG's runs. Thin calls into the service layer."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from typing import Any

import trio
from litestar import Request, Response, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.params import Parameter

from dagd.errors import NOT_FOUND, ServiceError
from dagd.http import files, shapes
from dagd.http import models as m
from dagd.http.common import (
    checked_dag_name,
    checked_name,
    details,
    error,
    read_json,
    run_id_of,
    run_with_children,
)
from dagd.reads import PARSING
from dagd.service import Service


async def writable(change: Callable[..., object], *args: str) -> None:
    """Change the DAGs folder in a worker thread; a folder dagd may not write is a 403 that says
    so (the system unit allows it with ReadWritePaths=/etc/dagd/dags), never a 500."""
    try:
        await trio.to_thread.run_sync(change, *args)
    except OSError as exc:
        folder = os.path.dirname(args[0])
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise HTTPException(
                status_code=403,
                detail=f"the DAGs folder {folder} is read-only for dagd ({exc.strerror}): edit the file there "
                "directly, or let dagd write it (systemd/README.md: ReadWritePaths)",
            ) from None
        if exc.errno == errno.ENOSPC:
            raise HTTPException(status_code=507, detail=f"no space left on the device of {folder}") from None
        raise HTTPException(status_code=409, detail=f"cannot change {args[0]}: {exc.strerror or exc}") from None


def routes(svc: Service) -> list[Any]:
    def entry_of(file_name: str) -> Any:
        entry = svc.catalog.find(checked_name(file_name))
        if entry is None:
            raise ServiceError(NOT_FOUND, f"no DAG named {file_name!r}")
        return entry

    @get("/api/v1/dags")
    async def list_dags(
        page: int = 1,
        per_page: int = Parameter(query="perPage", default=50, ge=1, le=1000),
        name: str | None = None,
        tags: str | None = None,
        labels: str | None = None,
        sort: str | None = None,
        order: str | None = None,
    ) -> m.DagList:
        overview = await svc.overview()
        files = [shapes.dag_file(o) for o in overview]
        files = shapes.filter_dags(files, name, (tags or labels or "").split(",") if (tags or labels) else [])
        files = shapes.sort_dags(files, sort or "name", order or "asc")
        total = len(files)
        start = (max(page, 1) - 1) * per_page
        return {
            "dags": files[start : start + per_page],
            "errors": [f"{o.entry.file}: {o.entry.problem}" for o in overview if o.entry.problem],
            "pagination": shapes.page(total, max(page, 1), per_page),
        }

    @get("/api/v1/dags/labels")
    async def all_labels() -> m.Labels:
        """Every label used by a DAG (key or key=value), sorted."""
        return {"labels": shapes.labels(svc.catalog), "errors": []}

    @get("/api/v1/dags/tags")
    async def all_tags() -> m.Tags:
        """Dagu's older name for /dags/labels."""
        return {"tags": shapes.labels(svc.catalog), "errors": []}

    @get("/api/v1/dags/{file_name:str}")
    async def dag_detail(file_name: str) -> m.DagDetail:
        entry = entry_of(file_name)
        last = await svc.latest_run(entry.dag.name if entry.dag else file_name)
        suspended = file_name in await svc.suspended_names()
        dag = entry.dag
        out: m.DagDetail = {
            "localDags": [
                {"name": n, "dag": shapes.dag_details(local), "errors": []}
                for n, local in (dag.local_dags.items() if dag else [])
            ],
            "latestDAGRun": await details(svc, last) if last else shapes.never_ran(file_name),
            "suspended": suspended,
            "errors": [entry.problem] if entry.problem else [],
        }
        if dag is not None:
            out["dag"] = shapes.dag_details(dag)
        return out

    @post("/api/v1/dags", status_code=201)
    async def create(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await read_json(request)
        name = checked_dag_name(body.get("name") or "")
        spec = body.get("spec") or "steps:\n  - run: echo hello from " + name + "\n"
        if not isinstance(spec, str):
            raise HTTPException(status_code=400, detail="spec must be YAML text")
        errors, _ = await trio.to_thread.run_sync(shapes.check_spec, spec, name, svc.catalog.folder, limiter=PARSING)
        if errors:
            return error(400, "; ".join(errors))
        path = trio.Path(svc.catalog.folder) / f"{name}.yaml"
        if await path.exists() or svc.catalog.find(name) is not None:
            return error(409, f"DAG {name!r} already exists", "already_exists")
        await writable(files.write_atomically, str(path), spec)
        await svc.reload()
        return Response({"name": name}, status_code=201)

    @delete("/api/v1/dags/{file_name:str}", status_code=204)
    async def remove(file_name: str) -> None:
        entry = entry_of(file_name)
        await writable(os.unlink, entry.file)
        await svc.reload()

    @post("/api/v1/dags/validate", status_code=200)
    async def validate(request: Request[Any, Any, Any]) -> m.Validation:
        body = await read_json(request)
        spec = body.get("spec")
        if not isinstance(spec, str):
            raise HTTPException(status_code=400, detail="spec (the DAG's YAML text) is required")
        errors, located, dag = await trio.to_thread.run_sync(
            lambda: shapes.check_spec_located(spec, str(body.get("name") or "dag"), svc.catalog.folder, strict=True),
            limiter=PARSING,
        )
        out: m.Validation = {"valid": not errors, "errors": errors, "errorLines": located}
        if dag is not None:
            out["dag"] = shapes.dag_details(dag)
        return out

    @get("/api/v1/dags/{file_name:str}/spec")
    async def get_spec(file_name: str) -> m.Spec:
        entry = entry_of(file_name)
        try:
            text = await trio.Path(entry.file).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:  # deleted or unreadable since the folder was last read
            raise ServiceError(NOT_FOUND, f"cannot read the file of {file_name}: {exc.strerror or exc}") from None
        out: m.Spec = {"spec": text, "errors": [entry.problem] if entry.problem else [], "valueReferenceNotices": []}
        if entry.dag is not None:
            out["dag"] = shapes.dag_details(entry.dag)
            out["valueReferenceNotices"] = shapes.reference_notices(entry.dag)
        return out

    @put("/api/v1/dags/{file_name:str}/spec")
    async def put_spec(file_name: str, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        entry = entry_of(file_name)
        body = await read_json(request)
        spec = body.get("spec")
        if not isinstance(spec, str):
            raise HTTPException(status_code=400, detail="spec (the DAG's YAML text) is required")
        errors, _ = await trio.to_thread.run_sync(
            shapes.check_spec, spec, file_name, svc.catalog.folder, limiter=PARSING
        )
        if errors:  # the file on disk stays as it was
            return error(400, "; ".join(errors), errors=errors)
        await writable(files.write_atomically, entry.file, spec)
        await svc.reload()
        return Response({"errors": []}, status_code=200)

    # start and enqueue are one operation here: every run goes through the queue, which starts it
    # at once when max_active_runs and the global limit allow
    @post(["/api/v1/dags/{file_name:str}/start", "/api/v1/dags/{file_name:str}/enqueue"], status_code=200)
    async def start(file_name: str, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await read_json(request)
        name = checked_name(file_name)
        if body.get("singleton") and await busy(name):
            return error(409, f"{name} is already running or queued (singleton)", "already_exists")
        rid = await svc.enqueue(name, shapes.overrides(body.get("params")), run_id=run_id_of(body))
        return Response({"dagRunId": rid}, status_code=200)

    async def busy(name: str) -> bool:
        dag = entry_of(name).dag
        real = dag.name if dag is not None else name
        return any(a.dag == real for a in svc.active.values()) or bool(await svc.queue(real))

    @post("/api/v1/dags/{file_name:str}/start-sync", status_code=200)
    async def start_sync(file_name: str, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await read_json(request)
        timeout = body.get("timeout")
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 86400:
            raise HTTPException(status_code=400, detail="timeout (seconds, 1-86400) is required")
        name = checked_name(file_name)
        if body.get("singleton") and await busy(name):
            return error(409, f"{name} is already running or queued (singleton)", "already_exists")
        rid = await svc.enqueue(name, shapes.overrides(body.get("params")), run_id=run_id_of(body))
        doc = await svc.wait_finished(name, rid, float(timeout))
        if doc is None:
            return error(408, f"run {rid} still running after {timeout}s", dagRunId=rid)
        return Response({"dagRun": await details(svc, doc)}, status_code=200)

    @post("/api/v1/dags/{file_name:str}/suspend", status_code=200)
    async def suspend(file_name: str, request: Request[Any, Any, Any]) -> m.Empty:
        body = await read_json(request)
        if not isinstance(body.get("suspend"), bool):
            raise HTTPException(status_code=400, detail="suspend (true or false) is required")
        await svc.suspend(checked_name(file_name), body["suspend"])
        return {}

    @post("/api/v1/dags/{file_name:str}/stop-all", status_code=200)
    async def stop_all(file_name: str) -> m.Errors:
        entry_of(file_name)  # (no such DAG: 404)
        with contextlib.suppress(ServiceError):  # nothing running is not an error here
            await svc.stop(checked_name(file_name), None)
        return {"errors": []}

    @get("/api/v1/dags/{file_name:str}/dag-runs")
    async def dag_runs(file_name: str, limit: int = Parameter(default=30, ge=1, le=500)) -> m.DagRuns:
        docs = await svc.runs_of(checked_name(file_name), limit)
        return {"dagRuns": [await details(svc, d) for d in docs], "gridData": shapes.grid(docs)}

    @get("/api/v1/spec/keys", sync_to_thread=False)
    def spec_keys() -> dict[str, list[str]]:
        """dagd's own: the keys a DAG and a step may have, and the actions dagd runs — the spec
        editor's completion."""
        from dagd.spec import keys

        return {
            "root": sorted(keys.ROOT_KEYS | keys.CLASSIC_ROOT_KEYS),
            "step": sorted(keys.STEP_KEYS | keys.CLASSIC_STEP_KEYS),
            "actions": sorted(a for a in keys.BUILTIN_ACTIONS if a not in keys.REFUSED_ACTIONS and "." in a),
        }

    @get("/api/v1/dags/{file_name:str}/resources")
    async def resources(file_name: str, limit: int = Parameter(default=50, ge=1, le=500)) -> dict[str, Any]:
        """dagd's own: the DAG's last `limit` runs, oldest first, each step's duration, CPU seconds
        and peak memory (KiB; null where the host cannot measure it) — the UI's resource charts."""
        out = []
        for r in await svc.resources(checked_name(file_name), limit):
            out.append(
                {
                    "dagRunId": r["id"],
                    "statusLabel": r["status"],
                    "startedAt": shapes.iso_time(r["started_at"]),
                    "durationSec": (r["finished_at"] - r["started_at"]) if r["finished_at"] else None,
                    "steps": {
                        s["step"]: {
                            "statusLabel": s["status"],
                            "durationSec": s["duration"],
                            "cpuSec": (s["cpu_user"] or 0) + (s["cpu_sys"] or 0) if s["duration"] is not None else None,
                            "maxRssKb": s["max_rss_kb"] if s["memory_source"] else None,
                        }
                        for s in r["steps"]
                    },
                }
            )
        return {"runs": out}

    @get("/api/v1/dags/{file_name:str}/dag-runs/{run_id:str}")
    async def dag_run_of_file(file_name: str, run_id: str) -> m.DagRun:
        return {"dagRun": await run_with_children(svc, file_name, run_id)}

    return [
        list_dags,
        all_labels,
        all_tags,
        dag_detail,
        create,
        remove,
        validate,
        get_spec,
        put_spec,
        start,
        start_sync,
        suspend,
        stop_all,
        dag_runs,
        dag_run_of_file,
        resources,
        spec_keys,
    ]
