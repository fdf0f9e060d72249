"""Runs outlive dagd (on_restart: reattach): kill -9 or a restart mid-run, and the next dagd
adopts the running step, learns how a step that ended meanwhile ended, and finishes the run as
if nothing had happened. Real processes, a real store, a real second daemon."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_daemon import Daemon, run_ended, start_daemon, wait_until

REATTACH = {"DAGD_ON_RESTART": "reattach"}


def write_dag(root: Path, name: str, body: str) -> None:
    (root / "dags").mkdir(parents=True, exist_ok=True)
    (root / "dags" / f"{name}.yaml").write_text(body)


def three_steps(root: Path, tail: str = "echo end") -> str:
    marks, gate = root / "marks", root / "gate"
    return f"""steps:
  - id: first
    run: echo first >> {marks}
  - id: long
    depends: first
    run: |
      echo start
      while [ ! -e {gate} ]; do sleep 0.02; done
      {tail}
  - id: last
    depends: long
    run: echo last >> {marks}
"""


def enqueue(d: Daemon, name: str) -> str:
    r = d.ctl("enqueue", name)
    assert r.code == 0, r.stderr
    return r.stdout.strip()


def step_of(d: Daemon, name: str, run_id: str, step: str) -> dict | None:  # type: ignore[type-arg]
    r = d.ctl("status", name, run_id, "--json")
    if r.code != 0:
        return None
    return next((s for s in json.loads(r.stdout)["steps"] if s["step"] == step), None)


def running(d: Daemon, name: str, run_id: str, step: str) -> bool:
    s = step_of(d, name, run_id, step)
    return s is not None and s["status"] == "running"


def gone(pid: int) -> bool:
    """No such process any more, or only its zombie (PID 1 here reaps orphans lazily)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def kill9(d: Daemon) -> None:
    d.proc.kill()
    d.proc.wait(timeout=10)
    d.notify.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            d.proc.wait(timeout=30)
        d.notify.close()


def wrapper_pid(d: Daemon, name: str, run_id: str, step: str) -> int:
    s = step_of(d, name, run_id, step)
    assert s is not None and s["pgid"]
    return int(s["pgid"])


def killed_mid_step(
    root: Path, daemons: list[Daemon], tail: str = "echo end", mode: str = "reattach"
) -> tuple[str, int]:
    """The three-step DAG queued, dagd SIGKILLed while `long` runs: (run id, long's wrapper pid)."""
    write_dag(root, "three", three_steps(root, tail))
    d = start_daemon(root, {"DAGD_ON_RESTART": mode})
    daemons.append(d)
    run_id = enqueue(d, "three")
    wait_until(lambda: running(d, "three", run_id, "long"))
    pid = wrapper_pid(d, "three", run_id, "long")
    kill9(d)
    return run_id, pid


def restarted_until_ended(root: Path, daemons: list[Daemon], run_id: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """A new dagd (reattach) on the same state; the run's document once it has ended, and its steps by name."""
    d = start_daemon(root, REATTACH)
    daemons.append(d)
    doc = wait_until(lambda: run_ended(d, "three", run_id))
    assert isinstance(doc, dict)
    return doc, {s["step"]: s for s in doc["steps"]}


def test_kill_9_mid_step_then_the_next_dagd_finishes_the_run(tmp_path: Path, daemons: list[Daemon]) -> None:
    run_id, pid = killed_mid_step(tmp_path, daemons)
    os.kill(pid, 0)  # the step lives on without its dagd
    d2 = start_daemon(tmp_path, REATTACH)
    daemons.append(d2)
    assert running(d2, "three", run_id, "long")
    (tmp_path / "gate").touch()
    doc = wait_until(lambda: run_ended(d2, "three", run_id))
    assert isinstance(doc, dict)
    assert doc["status"] == "succeeded", doc
    steps = {s["step"]: s for s in doc["steps"]}
    assert [steps[n]["status"] for n in ("first", "long", "last")] == ["succeeded"] * 3
    assert steps["long"]["attempt"] == 1 and steps["long"]["exit_code"] == 0
    assert (tmp_path / "marks").read_text() == "first\nlast\n"  # each once: nothing ran twice
    assert Path(steps["long"]["stdout_path"]).read_text() == "start\nend\n"  # the full log
    assert doc["runner_pid"] == d2.proc.pid
    assert "re-attached after a restart" in (tmp_path / "dagd.log").read_text()


def test_a_step_that_ends_while_dagd_is_down_is_recorded_with_its_exit_code(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    run_id, pid = killed_mid_step(tmp_path, daemons, "echo failing >&2; exit 3")
    (tmp_path / "gate").touch()
    wait_until(lambda: gone(pid))
    doc, steps = restarted_until_ended(tmp_path, daemons, run_id)
    assert doc["status"] == "failed"
    assert steps["long"]["status"] == "failed" and steps["long"]["exit_code"] == 3, steps["long"]
    assert "exit status 3" in steps["long"]["error"]
    assert steps["last"]["status"] == "aborted"
    assert (tmp_path / "marks").read_text() == "first\n"


def test_a_step_whose_process_is_gone_without_a_status_is_lost_never_succeeded(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    run_id, pid = killed_mid_step(tmp_path, daemons)
    os.killpg(pid, signal.SIGKILL)  # the wrapper too: no exit status is written
    doc, steps = restarted_until_ended(tmp_path, daemons, run_id)
    assert doc["status"] == "failed"
    assert steps["long"]["status"] == "failed" and "lost during restart" in steps["long"]["error"]
    assert steps["last"]["status"] == "aborted"


def test_a_restart_keeps_runs_a_stop_aborts_them(tmp_path: Path, daemons: list[Daemon]) -> None:
    write_dag(tmp_path, "three", three_steps(tmp_path))
    d = start_daemon(tmp_path, REATTACH)
    daemons.append(d)
    run_id = enqueue(d, "three")
    wait_until(lambda: running(d, "three", run_id, "long"))
    r = d.ctl("prepare-stop", "--keep-runs")
    assert r.code == 0 and "1 running run(s) will be left running" in r.stdout, (r.stdout, r.stderr)
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=30) == 0
    assert running(d, "three", run_id, "long")  # recorded as it was: nothing aborted
    d2 = start_daemon(tmp_path, REATTACH)
    daemons.append(d2)
    (tmp_path / "gate").touch()
    doc = wait_until(lambda: run_ended(d2, "three", run_id))
    assert isinstance(doc, dict) and doc["status"] == "succeeded", doc
    # a stop (nothing said, stop_runs_on_stop's default) aborts what runs, as before
    (tmp_path / "gate").unlink()
    second = enqueue(d2, "three")
    wait_until(lambda: running(d2, "three", second, "long"))
    pid = wrapper_pid(d2, "three", second, "long")
    d2.proc.send_signal(signal.SIGTERM)
    assert d2.proc.wait(timeout=30) == 0
    doc = wait_until(lambda: run_ended(d2, "three", second))
    assert isinstance(doc, dict) and doc["status"] == "aborted"
    wait_until(lambda: gone(pid))


def test_a_retry_due_while_dagd_is_down_runs_once_dagd_is_back(tmp_path: Path, daemons: list[Daemon]) -> None:
    count, gate = tmp_path / "count", tmp_path / "gate"
    write_dag(
        tmp_path,
        "flaky",
        f"""steps:
  - id: flaky
    run: |
      echo x >> {count}
      [ "$(wc -l < {count})" -ge 2 ] || exit 1
      while [ ! -e {gate} ]; do sleep 0.02; done
    retry_policy: {{limit: 3, interval_sec: 1}}
""",
    )
    d = start_daemon(tmp_path, REATTACH)
    daemons.append(d)
    run_id = enqueue(d, "flaky")
    wait_until(lambda: (s := step_of(d, "flaky", run_id, "flaky")) is not None and s["status"] == "retrying")
    kill9(d)
    d2 = start_daemon(tmp_path, REATTACH)
    daemons.append(d2)
    wait_until(lambda: count.exists() and count.read_text().count("x") == 2)
    gate.touch()
    doc = wait_until(lambda: run_ended(d2, "flaky", run_id))
    assert isinstance(doc, dict) and doc["status"] == "succeeded", doc
    assert doc["steps"][0]["attempt"] == 2 and count.read_text() == "x\nx\n"


def test_without_reattach_a_dead_dagds_run_is_failed_and_its_steps_killed(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    run_id, pid = killed_mid_step(tmp_path, daemons, mode="fail")
    d2 = start_daemon(tmp_path, {"DAGD_ON_RESTART": "fail"})
    daemons.append(d2)
    doc = wait_until(lambda: run_ended(d2, "three", run_id))
    assert isinstance(doc, dict) and doc["status"] == "failed" and "daemon restart" in doc["error"]
    wait_until(lambda: gone(pid), timeout=10)  # the step does not outlive its failed run


def test_a_soak_of_runs_through_restarts_loses_duplicates_and_orphans_nothing(tmp_path: Path) -> None:
    """tests/soak.py, short: 90 runs of three DAGs while dagd is restarted every 3 s (a clean
    restart and a kill -9 by turns). `make bench` runs it with 1000 runs, every 30 s."""
    from tests import soak

    result = soak.run(soak.LocalHost(tmp_path), 90, 3.0, max_concurrent=24, timeout=300)
    assert result.restarts + result.kills >= 2, result
    assert result.lost == 0, result.statuses
    assert result.duplicated == [] and result.missing == [], (result.duplicated, result.missing)
    assert result.orphaned == [], result.orphaned
    assert result.reattached >= 1, result


def test_with_stop_runs_on_stop_false_a_stop_leaves_runs_for_the_next_start(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    write_dag(tmp_path, "three", three_steps(tmp_path))
    config = tmp_path / "config.yaml"
    config.write_text("on_restart: reattach\nstop_runs_on_stop: false\n")
    args = ("--no-http", "--config", str(config))
    d = start_daemon(tmp_path, {}, args)
    daemons.append(d)
    run_id = enqueue(d, "three")
    wait_until(lambda: running(d, "three", run_id, "long"))
    pid = wrapper_pid(d, "three", run_id, "long")
    d.proc.send_signal(signal.SIGTERM)  # nothing said beforehand: a stop
    assert d.proc.wait(timeout=30) == 0
    assert not gone(pid) and running(d, "three", run_id, "long")
    d2 = start_daemon(tmp_path, {}, args)
    daemons.append(d2)
    (tmp_path / "gate").touch()
    doc = wait_until(lambda: run_ended(d2, "three", run_id))
    assert isinstance(doc, dict) and doc["status"] == "succeeded", doc
    assert (tmp_path / "marks").read_text() == "first\nlast\n"


def test_a_kept_run_ended_elsewhere_meanwhile_has_its_processes_ended(tmp_path: Path, daemons: list[Daemon]) -> None:
    """A run kept for the next dagd that was ended while this one was down (another node of a
    shared store took it over after its lease ran out): the new dagd does not re-attach it, and
    ends what of it still runs here — no step outlives its run."""
    import sqlite3

    run_id, pid = killed_mid_step(tmp_path, daemons)
    db = sqlite3.connect(tmp_path / "state" / "dagd.db")
    with db:  # as a take-over records it
        db.execute("UPDATE dag_runs SET status='failed', status_code=2, error='taken over' WHERE id = ?", (run_id,))
    db.close()
    d2 = start_daemon(tmp_path, REATTACH)
    daemons.append(d2)
    wait_until(lambda: gone(pid), timeout=10)
    doc = run_ended(d2, "three", run_id)
    assert doc is not None and doc["status"] == "failed" and doc["error"] == "taken over"
    assert "re-attached" not in (tmp_path / "dagd.log").read_text()
    assert not (tmp_path / "state" / "kept" / run_id).exists()
