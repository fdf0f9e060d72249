"""Recovery signals only what dagd started: a stale process-group row (another boot, or a pgid
number now held by an unrelated process) is recorded and never signalled."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from dagd import procfs
from tests.integration.test_daemon import start_daemon, wait_until


def _left_running(tmp_path: Path) -> tuple[str, int]:
    """A run left `running` by a dagd killed with -9; its step group is killed too, as a reboot
    would. (run id, the pgid recorded for its step)."""
    mark = tmp_path / "started"
    (tmp_path / "dags").mkdir(exist_ok=True)
    (tmp_path / "dags" / "long.yaml").write_text(f"steps:\n  - id: wait\n    run: touch {mark}; sleep 300\n")
    d = start_daemon(tmp_path)
    run_id = d.ctl("enqueue", "long").stdout.strip()
    deadline = time.monotonic() + 20
    while not mark.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    db = sqlite3.connect(tmp_path / "state" / "dagd.db")

    def recorded() -> tuple[int, str] | None:  # (the step may touch the mark before its start is committed)
        row = db.execute(
            "SELECT pgid, pgid_identity FROM dag_step_results WHERE run_id = ? AND pgid IS NOT NULL", (run_id,)
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    found = wait_until(recorded)
    db.close()
    assert isinstance(found, tuple)
    pgid, identity = found
    assert identity == procfs.identity(pgid)  # recorded at spawn: this boot, the leader's start time
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.notify.close()
    procfs.kill_group(pgid)
    return run_id, pgid


@pytest.mark.parametrize("stale", ["another boot", "reused number"])
def test_a_stale_group_row_is_never_signalled(tmp_path: Path, stale: str) -> None:
    run_id, _ = _left_running(tmp_path)
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)  # an unrelated group
    try:
        if stale == "another boot":
            identity = f"00000000-0000-0000-0000-000000000000/{procfs.start_time(bystander.pid)}"
        else:
            identity = f"{procfs.boot_id()}/{(procfs.start_time(bystander.pid) or 0) - 1}"
        db = sqlite3.connect(tmp_path / "state" / "dagd.db")
        with db:
            db.execute(
                "UPDATE dag_step_results SET pgid = ?, pgid_identity = ? WHERE run_id = ?",
                (bystander.pid, identity, run_id),
            )
        db.close()
        d = start_daemon(tmp_path)
        try:
            assert bystander.poll() is None and procfs.group_alive(bystander.pid)
            status = d.ctl("status", "long", run_id, "--json")
            assert '"status": "failed"' in status.stdout
            log = (tmp_path / "dagd.log").read_text()
            assert f"process group {bystander.pid} not signalled" in log
        finally:
            d.proc.send_signal(signal.SIGTERM)
            d.proc.wait(timeout=30)
    finally:
        bystander.kill()
        bystander.wait()


def test_the_groups_a_killed_dagd_left_are_still_killed(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "long.yaml").write_text("steps:\n  - id: wait\n    run: sleep 300 & sleep 300\n")
    d = start_daemon(tmp_path)
    run_id = d.ctl("enqueue", "long").stdout.strip()
    db = sqlite3.connect(tmp_path / "state" / "dagd.db")
    deadline = time.monotonic() + 20
    while not (row := db.execute("SELECT pgid FROM dag_step_results WHERE run_id = ?", (run_id,)).fetchone()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    db.close()
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.notify.close()
    assert procfs.group_alive(row[0])
    d = start_daemon(tmp_path)
    try:
        assert not procfs.group_alive(row[0])
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
