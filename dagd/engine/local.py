"""`dagctl run` without a daemon: the engine in this process, the store beside it, live progress."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import trio

from dagd.engine.environment import RunOptions, RunSetupError
from dagd.engine.events import Event, RunFinished
from dagd.engine.process import end_run_group
from dagd.engine.run import Run
from dagd.engine.status import RunStatus, StepStatus
from dagd.engine.step import StepResult
from dagd.engine.terminal import LiveView, Progress, terminal_view
from dagd.spec.model import Dag
from dagd.store.db import Store


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S_") + uuid.uuid4().hex[:8]


def run_local(
    dag: Dag,
    *,
    state_dir: str,
    params: list[str],
    param_string: str | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    schedule_time: str | None = None,
    default_shell: str | None = None,
    as_json: bool = False,
    render: Callable[[Event], None] | None = None,
    resume: dict[str, StepResult] | None = None,
    parent_run: str | None = None,
) -> int:
    """Run `dag` to its end in this process; the CLI exit code (0 only for success)."""
    os.makedirs(state_dir, exist_ok=True)
    store = Store(os.path.join(state_dir, "dagd.db"))
    show = render or terminal_view(sys.stderr, dag.name)
    opts = RunOptions(
        run_id or new_run_id(),
        state_dir,
        params,
        trigger,
        schedule_time,
        default_shell,
        parent_run=parent_run,
        param_string=param_string,
    )

    async def emit(event: Event) -> None:
        await trio.to_thread.run_sync(store.record, event)
        show(event)

    async def main() -> RunStatus:
        run = Run(dag, opts, emit, resume=resume)
        await run.prepare()
        if isinstance(show, (Progress, LiveView)):
            show.mask = run.mask
        async with trio.open_nursery() as nursery:
            done = trio.Event()
            result: list[RunStatus] = []

            async def go() -> None:
                result.append(await run.execute())
                done.set()

            async def watch_signals(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    task_status.started()
                    async for _ in signals:
                        run.abort()
                        run_scope.cancel()

            async def tick() -> None:
                while isinstance(show, LiveView):
                    await trio.sleep(0.5)
                    show.draw()

            run_scope = trio.CancelScope()
            await nursery.start(watch_signals)
            nursery.start_soon(tick)
            try:
                with run_scope:
                    await go()
            finally:
                nursery.cancel_scope.cancel()
        if not result:  # aborted from outside: record it
            run.status = RunStatus.ABORTED
            await run.after_abort()
            await emit(RunFinished(opts.run_id, dag.name, RunStatus.ABORTED, time.time(), "aborted by signal"))
            return RunStatus.ABORTED
        if run.cgroup is not None:  # however the run ended, nothing it started stays
            await end_run_group(run.cgroup, 5.0)
        return result[0]

    try:
        status = trio.run(main)
    except RunSetupError as exc:
        print(f"{dag.file}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # params rejected before anything ran
        print(f"{dag.file}: params: {exc}", file=sys.stderr)
        return 1
    finally:
        doc = store.run(dag.name, opts.run_id)
        for path in store.prune(dag.name, dag.hist_retention_days, dag.hist_retention_runs):
            if path.startswith(state_dir):  # never delete outside dagd's own state
                shutil.rmtree(path, ignore_errors=True)
        store.close()
    if as_json and doc is not None:
        print(json.dumps(doc, indent=2, default=str))
    if status is RunStatus.SUCCEEDED:
        return 0
    if (
        status is RunStatus.ABORTED
        and doc is not None
        and not doc.get("error")
        and all(s["status"] != "failed" for s in doc["steps"])
    ):
        return 0 if not any(s["status"] == "aborted" for s in doc["steps"]) else 1
    return 1


def resume_from(doc: dict[str, object]) -> tuple[list[str], dict[str, StepResult]]:
    """(params, kept step results) to retry a recorded run: failed and aborted steps run again."""
    kept: dict[str, StepResult] = {}
    for s in _steps(doc):
        if s["handler"] or s["status"] not in ("succeeded", "skipped", "partially_succeeded"):
            continue
        kept[s["step"]] = _result(s)
    return _overrides(doc), kept


def reattach_from(doc: dict[str, object]) -> tuple[list[str], dict[str, StepResult], dict[str, StepResult], set[str]]:
    """What a run a previous dagd left running had done: (params, finished steps, steps and
    handlers in flight — running or waiting to retry —, handlers already done)."""
    done: dict[str, StepResult] = {}
    inflight: dict[str, StepResult] = {}
    handlers_done: set[str] = set()
    for s in _steps(doc):
        status = s["status"]
        if status in ("running", "retrying"):
            inflight[s["step"]] = _result(s)
        elif s["handler"]:
            if status != "not_started":
                handlers_done.add(s["step"])
        elif status not in ("not_started", "waiting", "queued"):
            done[s["step"]] = _result(s)
    return _overrides(doc), done, inflight, handlers_done


def _overrides(doc: dict[str, object]) -> list[str]:
    params = doc.get("params") or {}
    assert isinstance(params, dict)
    overrides = [f"{k}={v}" for k, v in (params.get("named") or {}).items()]
    overrides += [str(v) for v in params.get("positional") or []]
    return overrides


def _steps(doc: dict[str, object]) -> list[dict[str, Any]]:
    steps = doc.get("steps") or []
    assert isinstance(steps, list)
    return steps


def _result(s: dict[str, Any]) -> StepResult:
    return StepResult(
        status=StepStatus(s["status"]),
        exit_code=s["exit_code"],
        error=s["error"],
        attempts=s["attempt"],
        started_at=s["started_at"],
        finished_at=s["finished_at"],
        stdout_path=s["stdout_path"] or "",
        stderr_path=s["stderr_path"] or "",
        cpu_user=s["cpu_user"] or 0.0,
        cpu_sys=s["cpu_sys"] or 0.0,
        max_rss_kb=s["max_rss_kb"] or 0,
        memory_source=s.get("memory_source"),
        outputs=dict(s["outputs"]),
        published=dict(s["published"]),
        output_value=s["output_value"],
        pgid=s.get("pgid"),
        pgid_identity=s.get("pgid_identity"),
    )
