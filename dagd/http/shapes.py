"""Dagu's /api/v1 JSON shapes, built from our store documents and models."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from dagd.engine.status import RunStatus, StepStatus
from dagd.http import models as m
from dagd.spec.model import Dag


def iso_time(ts: float | None) -> str:
    """An epoch time as ISO 8601 (UTC); "" for none."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat() if ts else ""


def page(total: int, current: int = 1, per_page: int = 50) -> m.Pagination:
    pages = max(1, -(-total // per_page))
    return {
        "totalRecords": total,
        "currentPage": current,
        "totalPages": pages,
        "nextPage": min(current + 1, pages),
        "prevPage": max(current - 1, 1),
    }


def filter_dags(files: list[m.DagFile], name: str | None, tags: list[str]) -> list[m.DagFile]:
    """Dagu's list filters: `name` is a case-insensitive substring, every tag must be present."""
    wanted = [t.strip().lower() for t in tags if t.strip()]
    out = []
    for f in files:
        if name and name.lower() not in f["fileName"].lower():
            continue
        have = {t.lower() for t in f["dag"].get("tags", [])} | {
            t.split("=", 1)[0].lower() for t in f["dag"].get("tags", [])
        }
        if any(t not in have for t in wanted):
            continue
        out.append(f)
    return out


def sort_dags(files: list[m.DagFile], sort: str, order: str) -> list[m.DagFile]:
    """Dagu's list order: by name (default), or by the latest run's start, or the next fire."""
    from litestar.exceptions import HTTPException

    keys = {
        "name": lambda f: f["fileName"].lower(),
        "lastRun": lambda f: f["latestDAGRun"].get("startedAt") or "",
        "nextRun": lambda f: f.get("nextRun") or "~",
    }
    if sort not in keys or order not in ("asc", "desc"):
        raise HTTPException(
            status_code=400,
            detail=f"sort must be one of {', '.join(keys)} and order asc or desc, got {sort!r} {order!r}",
        )
    return sorted(files, key=keys[sort], reverse=order == "desc")


def labels(catalog: Any) -> list[str]:
    found: set[str] = set()
    for entry in catalog.entries.values():
        dag = entry.dag
        if dag is not None:
            found |= {f"{k}={v}" if v else k for k, v in dag.labels.items()}
    return sorted(found)


def dags_labelled(catalog: Any, wanted: str) -> list[str]:
    """The names of the DAGs that have every label of `wanted` ("team=data,nightly": a key with
    that value, or a key with any value)."""
    want = [w.strip() for w in wanted.split(",") if w.strip()]
    out = []
    for name, entry in catalog.dags().items():
        dag = entry.dag
        if dag is None:
            continue
        have = dag.labels
        if all((k in have and (not sep or have[k] == v)) for k, sep, v in (w.partition("=") for w in want)):
            out.append(name)
    return sorted(out)


def overrides(params: Any) -> list[str]:
    """The API's `params`: a string (`K=V K2="v 2"`, or JSON text) or a JSON object, as run overrides."""
    import json

    from dagd.spec.params import split_param_string

    if isinstance(params, dict):  # {"K": "v"}: what Dagu's clients send too
        return [json.dumps(params)]
    if not isinstance(params, str) or not params.strip():
        return []
    if params.strip().startswith("{"):
        return [params]
    return [f"{k}={v}" if k else v for k, v in split_param_string(params)]


def status_labels(codes: list[int]) -> list[str]:
    by_code = {s.code: s.value for s in RunStatus}
    return [by_code[c] for c in codes if c in by_code]


def encode_cursor(row: dict[str, Any]) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps([row["started_at"] or 0, row["id"]]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    import base64
    import binascii
    import json

    from litestar.exceptions import HTTPException

    try:
        started, rid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(started), str(rid)
    except (ValueError, TypeError, binascii.Error):
        raise HTTPException(status_code=400, detail="invalid cursor") from None


def run_summary(doc: dict[str, Any]) -> m.RunSummary:
    import json

    status = RunStatus(doc["status"])
    out: m.RunSummary = {
        "dagRunId": doc["id"],
        "name": doc["dag"],
        "status": status.code,
        "statusLabel": status.value,
        "startedAt": iso_time(doc.get("started_at")),
        "finishedAt": iso_time(doc.get("finished_at")),
        "artifactsAvailable": False,
        "autoRetryCount": 0,
        "triggerType": doc.get("trigger") or "manual",
    }
    if doc.get("queued_at"):
        out["queuedAt"] = iso_time(doc["queued_at"])
    if doc.get("schedule_time"):
        out["scheduleTime"] = str(doc["schedule_time"])
    if doc.get("error"):
        out["error"] = str(doc["error"])  # dagd: why it failed, without opening the run
    params = doc.get("params")
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = None
    if isinstance(params, dict):  # the values the run used, as Dagu reports them: a JSON object
        named = params.get("named") or {}
        positional = params.get("positional") or []
        if named or positional:
            out["params"] = json.dumps({**{str(i + 1): v for i, v in enumerate(positional)}, **named})
    return out


def no_run(name: str) -> m.RunSummary:
    """The run summary of a DAG that never ran (the schema wants a non-empty id)."""
    return {
        "dagRunId": "none",
        "name": name,
        "status": 0,
        "statusLabel": "not_started",
        "startedAt": "",
        "finishedAt": "",
        "artifactsAvailable": False,
        "autoRetryCount": 0,
    }


def sub_run(doc: dict[str, Any]) -> m.SubRun:
    """SubDAGRunDetail: a child run in Dagu's sub-dag-runs listing."""
    s = run_summary(doc)
    return {
        "dagRunId": s["dagRunId"],
        "dagName": s["name"],
        "status": s["status"],
        "statusLabel": s["statusLabel"],
        "startedAt": s["startedAt"],
        "finishedAt": s["finishedAt"],
        "params": "",
    }


def never_ran(name: str) -> m.RunDetails:
    return cast(m.RunDetails, {**no_run(name), "rootDAGRunName": name, "rootDAGRunId": "none", "log": "", "nodes": []})


def queues(svc: Any, queued: list[dict[str, Any]]) -> m.Queues:
    """One DAG-based queue per DAG with running or queued runs."""
    names = sorted({a.dag for a in svc.active.values()} | {q["dag"] for q in queued})
    out: list[m.Queue] = []
    for name in names:
        running = [rid for rid, a in svc.active.items() if a.dag == name]
        waiting = [q for q in queued if q["dag"] == name]
        entry = svc.catalog.find(name)
        limit = entry.dag.max_active_runs if entry and entry.dag else 1
        out.append(
            {
                "name": name,
                "type": "dag-based",
                "maxConcurrency": max(1, limit),
                "runningCount": len(running),
                "queuedCount": len(waiting),
                "running": [no_run(name) | {"dagRunId": rid, "status": 1, "statusLabel": "running"} for rid in running],
            }
        )
    capacity = svc.max_concurrent_runs
    return {
        "queues": out,
        "summary": {
            "totalQueues": len(out),
            "totalRunning": len(svc.active),
            "totalQueued": len(queued),
            "totalCapacity": capacity,
            "utilizationPercentage": round(100.0 * len(svc.active) / capacity, 1) if capacity else 0.0,
        },
    }


def empty_queue(name: str, limit: int) -> m.Queue:
    return {
        "name": name,
        "type": "dag-based",
        "maxConcurrency": max(1, limit),
        "runningCount": 0,
        "queuedCount": 0,
        "running": [],
    }


def queued_summary(item: dict[str, Any]) -> m.RunSummary:
    """A queued run (a run_queue row) as DAGRunSummary."""
    out = no_run(str(item["dag"]))
    out["dagRunId"] = str(item["run_id"])
    out["status"], out["statusLabel"] = RunStatus.QUEUED.code, RunStatus.QUEUED.value
    out["queuedAt"] = iso_time(item.get("queued_at"))
    out["triggerType"] = str(item.get("trigger") or "manual")
    if item.get("schedule_time"):
        out["scheduleTime"] = str(item["schedule_time"])
    return out


def dag_file(o: Any) -> m.DagFile:
    """DAGFile from a service DagOverview (+ dagd's runningCount / queuedCount)."""
    dag: Dag | None = o.entry.dag
    latest = run_summary(o.last) if o.last else no_run(o.name)
    spec: dict[str, Any] = {"name": o.name}
    if dag is not None:
        spec.update(
            {
                "group": dag.group,
                "description": dag.description,
                "schedule": [{"expression": e.expression or e.at or ""} for e in dag.schedule.start],
                "params": [p.name or (p.default or "") for p in dag.params],
                "tags": [f"{k}={v}" if v else k for k, v in dag.labels.items()],
                "maxActiveRuns": dag.max_active_runs,
            }
        )
    out: m.DagFile = {
        "fileName": o.name,
        "dag": cast(m.DagSummary, spec),
        "latestDAGRun": latest,
        "suspended": o.suspended,
        "errors": [o.entry.problem] if o.entry.problem else [],
        "runningCount": o.running,
        "queuedCount": o.queued,
    }
    if o.next_start:
        out["nextRun"] = o.next_start
    return out


def node_step(step: Any) -> m.StepRef:
    """A node's step as Dagu's UI reads it: the edges of the run graph and what it runs."""
    out: m.StepRef = {
        "name": step.name,
        "depends": list(step.depends),
        "commands": [{"command": c} for c in step.commands],
    }
    if step.id:
        out["id"] = step.id
    if step.description:
        out["description"] = step.description
    if step.script:
        out["script"] = step.script
    if step.sub_dag is not None:
        out["call"] = step.sub_dag.dag
    return out


def run_details(
    doc: dict[str, Any], dag: Dag | None = None, children: list[dict[str, Any]] | None = None
) -> m.RunDetails:
    """DAGRunDetails. With the run's DAG each node carries its step (edges, commands, call);
    with the run's children, a calling step's node lists the sub-runs of the DAG it calls."""
    steps = {s.name: s for s in (*dag.steps, *dag.handlers.values())} if dag is not None else {}
    nodes = []
    handlers = {}
    for s in doc["steps"]:
        status = StepStatus(s["status"])
        defined = steps.get(s["step"])
        node = {
            "step": node_step(defined) if defined is not None else {"name": s["step"]},
            "stdout": s["stdout_path"] or "",
            "stderr": s["stderr_path"] or "",
            "startedAt": iso_time(s["started_at"]),
            "finishedAt": iso_time(s["finished_at"]),
            "status": status.code,
            "statusLabel": status.value,
            "retryCount": max(0, (s["attempt"] or 1) - 1),
            "doneCount": s["attempt"] or 0,
            # dagd's own additions: resource use of the step's cgroup (or wait4's rusage)
            "exitCode": s["exit_code"],
            "cpuUserSec": s["cpu_user"],
            "cpuSysSec": s["cpu_sys"],
            "maxRssKb": s["max_rss_kb"],
            "memorySource": s.get("memory_source"),
        }
        if s["error"]:
            node["error"] = s["error"]
        if defined is not None and defined.sub_dag is not None and children:
            node["subRuns"] = [
                {"dagRunId": c["id"], "dagName": c["dag"]} for c in children if c["dag"] == defined.sub_dag.dag
            ]
        if s["handler"]:
            handlers[s["step"]] = node
        else:
            nodes.append(node)
    out: dict[str, Any] = dict(run_summary(doc))
    lineage = doc.get("lineage") or []
    root = lineage[-1] if lineage else (doc["dag"], doc["id"])
    out["rootDAGRunName"], out["rootDAGRunId"] = root
    if lineage:
        out["parentDAGRunName"], out["parentDAGRunId"] = lineage[0]
    out["log"] = doc.get("log_dir") or ""
    out["nodes"] = nodes
    for key, name in (
        ("onSuccess", "onSuccess"),
        ("onFailure", "onFailure"),
        ("onAbort", "onAbort"),
        ("onExit", "onExit"),
    ):
        if name in handlers:
            out[key] = handlers[name]
    if doc.get("error"):
        out["error"] = doc["error"]
    return cast(m.RunDetails, out)


def dag_details(dag: Dag) -> m.DagDetails:
    """DAGDetails: what the UI and Dagu clients read about one DAG."""
    return {
        "name": dag.name,
        "group": dag.group,
        "description": dag.description,
        "type": dag.type.value,
        "schedule": [{"expression": e.expression or e.at or ""} for e in dag.schedule.start],
        "params": [p.name or (p.default or "") for p in dag.params],
        "defaultParams": " ".join(
            f"{p.name}={p.default}" if p.name else (p.default or "") for p in dag.params if p.default is not None
        ),
        # dagd's addition: each declared param as the Run Now form needs it
        "paramDefs": param_defs(dag),
        "maxActiveRuns": dag.max_active_runs,
        "maxActiveSteps": dag.max_active_steps,
        "histRetentionDays": dag.hist_retention_days,
        "delay": int(dag.delay_sec),
        "tags": [f"{k}={v}" if v else k for k, v in dag.labels.items()],
        "steps": [_step_summary(s) for s in dag.steps],
    }


def _step_summary(s: Any) -> m.StepSummary:
    out: m.StepSummary = {
        "name": s.name,
        "description": s.description,
        "depends": list(s.depends),
        "commands": [{"command": c} for c in s.commands],
    }
    if s.id:
        out["id"] = s.id
    return out


def param_defs(dag: Dag) -> list[m.ParamDef]:
    """dagd's addition: each declared param as the Run Now form needs it (positional ones as $1, $2 …)."""
    out: list[m.ParamDef] = []
    position = 0
    for p in dag.params:
        if p.name is None:
            position += 1
        out.append(
            {
                "name": p.name or f"${position}",
                "positional": p.name is None,
                "default": p.default or "",
                "type": p.type,
                "required": p.required,
                "description": p.description,
            }
        )
        if p.enum:  # absent when there is none: Dagu's UI rejects every value against an empty enum
            out[-1]["enum"] = [str(e) for e in p.enum]
    return out


def grid(docs: list[dict[str, Any]]) -> list[m.GridItem]:
    """Dagu's History grid: per step (in the order of the latest run), its status in each run,
    oldest run first."""
    names: list[str] = []
    for doc in docs:
        for s in doc["steps"]:
            if not s["handler"] and s["step"] not in names:
                names.append(s["step"])
    ordered = list(reversed(docs))
    out: list[m.GridItem] = []
    for name in names:
        history = []
        for doc in ordered:
            found = next((s for s in doc["steps"] if s["step"] == name), None)
            history.append(StepStatus(found["status"]).code if found else StepStatus.NOT_STARTED.code)
        out.append({"name": name, "history": history})
    return out


def reference_notices(dag: Dag) -> list[dict[str, str]]:
    """Dagu's valueReferenceNotices: `${…}` left unresolved when the spec was read."""
    from dagd.spec.errors import Severity
    from dagd.spec.references import unresolved

    return [
        {
            "message": d.message,
            "fieldPath": d.key,
            "class": "runtime_only" if d.severity is Severity.NOTICE else "defect",
        }
        for d in unresolved(dag)
    ]


def check_spec(text: str, name: str, folder: str, *, strict: bool = False) -> tuple[list[str], Dag | None]:
    """Validate YAML text as the DAG file `name` of `folder` (nothing is written);
    (errors as text, the DAG when valid)."""
    errors, _, dag = check_spec_located(text, name, folder, strict=strict)
    return errors, dag


def check_spec_located(
    text: str, name: str, folder: str, *, strict: bool = False
) -> tuple[list[str], list[m.ErrorLine], Dag | None]:
    """check_spec, and each error's line and column in `text` (0 when unknown)."""
    import os

    from dagd.spec import SpecError, load_text

    try:
        loaded = load_text(text, os.path.join(folder, f"{name}.yaml"), strict=strict)
    except SpecError as exc:
        errors = [d.render().split(": ", 1)[1] if ": " in d.render() else d.render() for d in exc.diagnostics]
        located: list[m.ErrorLine] = [
            {"line": d.line, "column": d.col, "message": e} for d, e in zip(exc.diagnostics, errors, strict=True)
        ]
        return errors, located, None
    return [], [], loaded.dag


def _camel(name: str) -> str:
    """RESULT_VALUE -> resultValue, as Dagu names collected outputs."""
    parts = name.lower().split("_")
    return parts[0] + "".join(p.capitalize() for p in parts[1:])


def outputs(doc: dict[str, Any], output_names: dict[str, str]) -> m.Outputs:
    """DAGRunOutputs: `output:` variables (camelCased) and published outputs of the run's steps."""
    import json

    values: dict[str, Any] = {}
    for s in doc["steps"]:
        if s["status"] not in ("succeeded", "partially_succeeded"):
            continue
        values.update(s.get("outputs") or {})
        values.update(s.get("published") or {})
        var = output_names.get(s["step"])
        if var and s.get("output_value") is not None:
            values[_camel(var)] = s["output_value"]
    return {
        "metadata": {
            "dagName": doc["dag"],
            "dagRunId": doc["id"],
            "attemptId": doc["id"],
            "status": doc["status"],
            "completedAt": iso_time(doc.get("finished_at")) or dt.datetime.now(dt.UTC).isoformat(),
            "params": json.dumps(doc.get("params") or {}),
        },
        "outputs": values,
    }
