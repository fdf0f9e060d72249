"""The crash matrix: dagd killed with SIGKILL at each named point of a run's life
(DAGD_FAULT=kill:POINT), then started again. Every run must end in exactly one terminal state,
no slot or run may start twice, no step process may outlive the recovery, and no byte a step
wrote may be lost."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.integration.test_daemon import Daemon, alive_with, start_daemon, wait_until

TERMINAL = {"succeeded", "failed", "aborted", "partially_succeeded", "rejected"}
# where dagd dies → what the first run is recorded as once a new dagd has recovered
OUTCOME = {
    "claimed": "succeeded",  # the slot's run was queued with its claim: it starts under the new dagd, once
    "queued": "succeeded",  # the queue is persistent: the run starts under the new dagd
    "taken": "failed",  # out of the queue, not started: daemon restart (reattach: queued again, then run)
    "started": "failed",  # daemon restart
    "spawned": "failed",  # a step's process started, its pid not yet in its record: its cgroup is emptied
    "step_unrecorded": "failed",  # spawned, not yet recorded: its run's cgroup is emptied
    "step_spawned": "failed",  # the orphaned step group is killed (identity checked)
    "step_finished": "failed",
    "handler_running": "failed",  # the handler's group is killed too
    "finished": "succeeded",  # recorded before the kill
}
POINTS = list(OUTCOME)
# with on_restart: reattach (dagd's default under systemd) the new dagd goes on with the run: the
# step it finds running is adopted, the rest follows — every run succeeds, nothing runs twice
REATTACHED = dict.fromkeys(POINTS, "succeeded")


def _dag(point: str) -> str:
    # step one writes exactly 4000 bytes, then lingers long enough to be cut off mid-run
    return (
        f"handler_on:\n  exit:\n    command: sleep 0.5 # crashmatrix-{point}\n"
        "catchup_window: 1h\n"
        "schedule: '0 0 1 1 *'\n"
        "steps:\n"
        f"  - id: one\n    run: head -c 4000 /dev/zero | tr '\\\\0' x; sleep 0.5 # crashmatrix-{point}\n"
        f"  - id: two\n    depends: one\n    run: echo two # crashmatrix-{point}\n"
    )


def _killed_at(d: Daemon) -> None:
    assert d.proc.wait(timeout=30) == -signal.SIGKILL
    d.notify.close()


@pytest.mark.parametrize("mode", ["fail", "reattach"])
@pytest.mark.parametrize("point", POINTS)
def test_kill_9_at_each_point_leaves_one_terminal_state_no_orphans_no_lost_bytes(
    tmp_path: Path, point: str, mode: str
) -> None:
    outcome = (OUTCOME if mode == "fail" else REATTACHED)[point]
    on = {"DAGD_ON_RESTART": mode}
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "life.yaml").write_text(_dag(point))
    if point == "claimed":
        # a missed fire within the catch-up window: dagd claims it as soon as it starts
        d = start_daemon(tmp_path, on)
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
        d.notify.close()
        db = sqlite3.connect(tmp_path / "state" / "dagd.db")
        with db:
            db.execute(
                "INSERT INTO dag_state (dag, watermark) VALUES ('life', ?)"
                " ON CONFLICT (dag) DO UPDATE SET watermark = excluded.watermark",
                (time.time() - 400 * 86400,),
            )
        db.close()
        (tmp_path / "dags" / "life.yaml").write_text(_dag(point).replace("'0 0 1 1 *'", "'* * * * *'"))
        d = start_daemon(tmp_path, {"DAGD_FAULT": "kill:claimed", **on}, ready=False)
    else:
        d = start_daemon(tmp_path, {"DAGD_FAULT": f"kill:{point}", **on})
        d.ctl("enqueue", "life")
    _killed_at(d)
    d = start_daemon(tmp_path, on)  # the same state, no fault
    try:

        def settled() -> list[dict] | None:  # type: ignore[type-arg]
            rows = json.loads(d.ctl("history", "life", "--json").stdout or "[]")
            return (
                rows
                if rows and all(r["status"] in TERMINAL for r in rows) and not alive_with(f"crashmatrix-{point}")
                else None
            )

        rows = wait_until(settled, timeout=30)
        assert isinstance(rows, list)
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids))  # no run recorded twice
        first = min(rows, key=lambda r: r["id"])  # the claimed slot is the oldest one
        assert first["status"] == outcome, (point, first)
        if outcome == "failed":
            assert "daemon restart" in (first["error"] or ""), first
        if point == "claimed":  # the slot fired once: its run, and no second run for it
            assert len({r["id"] for r in rows if r["id"].startswith("sched_")}) == len(
                [r for r in rows if r["id"].startswith("sched_")]
            )
        for r in rows:
            doc = json.loads(d.ctl("status", "life", r["id"], "--json").stdout)
            assert doc["status"] in TERMINAL
            for s in doc["steps"]:
                assert s["status"] not in ("running", "retrying")
                if s["step"] == "one" and s["stdout_path"] and os.path.exists(s["stdout_path"]):
                    size = os.path.getsize(s["stdout_path"])
                    assert size in (0, 4000), (point, size)  # the step's own bytes, all of them, once
                    assert size == 4000 or mode == "fail", (point, size)
        assert alive_with(f"crashmatrix-{point}") == []
        assert d.proc.poll() is None
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
