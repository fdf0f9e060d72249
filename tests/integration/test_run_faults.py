"""Runs are isolated: a fault injected at each named point (DAGD_FAULT) fails that run with the
reason recorded, while dagd keeps answering and a run of another DAG goes on to succeed."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.integration.test_daemon import gate_step, run_ended, start_daemon, wait_until

FAULTS = {
    # DAG name: (fault point, what the run's or step's error must say)
    "f_log": ("log_folder", "cannot make the log folder"),
    "f_work": ("work_folder", "cannot make the working directory"),
    "f_spawn": ("spawn", "Exec format error (fault injected at spawn)"),
    "f_out": ("output_file", "No space left on device (fault injected at output_file)"),
    "f_db": ("database_write", "disk I/O error (fault injected at database_write)"),
    "f_handler": ("handler", "a bug (fault injected at handler)"),
}


def test_a_fault_at_each_named_point_fails_only_its_run(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "good.yaml").write_text(
        f"steps:\n  - id: wait\n    run: {gate_step(gate)}\n  - id: b\n    depends: wait\n    run: echo fine\n"
    )
    for name in FAULTS:
        step = "f_db_step" if name == "f_db" else "work"
        (tmp_path / "dags" / f"{name}.yaml").write_text(
            f"handler_on:\n  exit:\n    command: echo handler\nsteps:\n  - id: {step}\n    run: echo hi\n"
        )
    spec = ",".join(f"{point}:{'f_db_step' if name == 'f_db' else name}" for name, (point, _) in FAULTS.items())
    d = start_daemon(tmp_path, {"DAGD_FAULT": spec}, args=("--no-http", "--max-concurrent-runs", "20"))
    try:
        good = d.ctl("enqueue", "good").stdout.strip()
        wait_until(lambda: '"status": "running"' in d.ctl("status", "good", good, "--json").stdout)
        for name, (point, reason) in FAULTS.items():
            rid = d.ctl("enqueue", name).stdout.strip()
            doc = wait_until(lambda name=name, rid=rid: run_ended(d, name, rid))
            assert isinstance(doc, dict)
            said = json.dumps(doc)
            assert reason in said, (name, said)
            assert doc["status"] in ("failed", "succeeded") and doc["status"] == (
                "succeeded" if point == "handler" else "failed"
            ), (name, doc["status"])
            assert d.ctl("daemon").code == 0, name  # dagd still answers
        assert '"status": "running"' in d.ctl("status", "good", good, "--json").stdout  # untouched
        gate.touch()
        wait_until(lambda: '"status": "succeeded"' in d.ctl("status", "good", good, "--json").stdout)
        log = (tmp_path / "dagd.log").read_text()
        assert d.proc.poll() is None
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
    assert "dagd stopped by an unexpected error" not in log
