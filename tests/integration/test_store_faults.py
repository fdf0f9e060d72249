"""The store outlives its database: another process holding dagd.db locked, a corrupt file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.test_daemon import gate_step, run_ended, wait_until
from tests.integration.test_http_api import start_with_http


def test_a_database_locked_by_another_process_loses_nothing(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "work.yaml").write_text(
        f"max_active_runs: 5\nsteps:\n  - id: wait\n    run: {gate_step(gate)}\n  - id: after\n    depends: wait\n    run: echo done\n"
    )
    d, base = start_with_http(tmp_path)
    try:
        runs = [d.ctl("enqueue", "work").stdout.strip() for _ in range(5)]
        for rid in runs:
            wait_until(lambda rid=rid: '"status": "running"' in d.ctl("status", "work", rid, "--json").stdout)
        holder = sqlite3.connect(tmp_path / "state" / "dagd.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # what `sqlite3 dagd.db 'BEGIN IMMEDIATE'` does: no writer gets in
        try:
            gate.touch()  # every run now has events to record, and cannot
            health = wait_until(lambda: (r := httpx.get(base + "/api/v1/health", timeout=10)).status_code == 503 and r)
            assert "locked" in health.json()["reason"] and health.json()["status"] == "unhealthy"  # type: ignore[union-attr]
            assert d.ctl("daemon").code == 0 and d.proc.poll() is None  # still answering
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        for rid in runs:
            wait_until(lambda rid=rid: '"status": "succeeded"' in d.ctl("status", "work", rid, "--json").stdout)
            doc = json.loads(d.ctl("status", "work", rid, "--json").stdout)
            assert [s["status"] for s in doc["steps"]] == ["succeeded", "succeeded"]
        wait_until(lambda: httpx.get(base + "/api/v1/health").status_code == 200)
        assert d.proc.poll() is None
        log = (tmp_path / "dagd.log").read_text()
        assert "the history database is locked by another process" in log and "writable again" in log
        assert "Traceback" not in log
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=30)


@pytest.mark.parametrize("broken", ["junk", "truncated", "directory"])
def test_a_corrupt_database_is_one_clear_line_at_start(tmp_path: Path, broken: str) -> None:
    (tmp_path / "state").mkdir()
    db = tmp_path / "state" / "dagd.db"
    if broken == "junk":
        db.write_bytes(b"this is not a database\n" * 100)
    elif broken == "truncated":
        good = sqlite3.connect(db)
        good.execute("CREATE TABLE t (x)")
        good.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 200)
        good.commit()
        good.close()
        db.write_bytes(db.read_bytes()[: 4096 + 100])
    else:
        db.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DAGD_STATE_DIR": str(tmp_path / "state"),
        "DAGD_DAGS_DIR": str(tmp_path),
        "DAGD_SOCKET": str(tmp_path / "s.sock"),
    }
    r = subprocess.run(
        [sys.executable, "-m", "dagd.daemon", "--user", "--no-http"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 3, r.stderr
    assert "dagd.db" in r.stderr and "mv " in r.stderr and "Traceback" not in r.stderr
    c = subprocess.run([sys.executable, "-m", "dagctl", "history"], env=env, capture_output=True, text=True, timeout=30)
    assert c.returncode == 1 and "cannot read the run history" in c.stderr and "Traceback" not in c.stderr


def test_a_full_disk_fails_runs_with_the_reason_and_never_dagd(tmp_path: Path) -> None:
    import signal

    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(state)], check=True)
    try:
        (tmp_path / "dags").mkdir()
        (tmp_path / "dags" / "filler.yaml").write_text("steps:\n  - id: fill\n    run: head -c 40000000 /dev/zero\n")
        (tmp_path / "dags" / "small.yaml").write_text("steps:\n  - id: hi\n    run: echo ok\n")
        d, base = start_with_http(tmp_path)
        try:
            rid = d.ctl("enqueue", "filler").stdout.strip()
            doc = wait_until(lambda: run_ended(d, "filler", rid))
            assert isinstance(doc, dict) and doc["status"] == "failed"
            assert "disk full" in json.dumps(doc), doc
            # with the disk still full: dagd answers, and what it cannot run fails with a reason
            assert d.ctl("daemon").code == 0
            small = d.ctl("enqueue", "small").stdout.strip()
            if small:
                wait_until(
                    lambda: run_ended(d, "small", small) or httpx.get(base + "/api/v1/health").status_code == 503
                )
            assert d.proc.poll() is None
            # dagd also starts on a full disk
            d.proc.send_signal(signal.SIGTERM)
            assert d.proc.wait(timeout=30) == 0
            d.notify.close()
            d, base = start_with_http(tmp_path)
            assert d.ctl("daemon").code == 0
            # space again: the next run succeeds, and whatever waited is recorded
            for log in (state / "logs" / "filler").rglob("*.out"):
                log.unlink()
            after = d.ctl("enqueue", "small").stdout.strip()
            doc = wait_until(lambda: run_ended(d, "small", after))
            assert isinstance(doc, dict) and doc["status"] == "succeeded"
            wait_until(lambda: httpx.get(base + "/api/v1/health").status_code == 200)
        finally:
            d.proc.send_signal(signal.SIGTERM)
            d.proc.wait(timeout=30)
        assert "Traceback" not in (tmp_path / "dagd.log").read_text()
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)
