"""Secrets never leave dagd unmasked: while a step prints one and after, every API response, RPC
reply, event, the database file and dagd's own log are searched for the raw value."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_daemon import Daemon, start_daemon
from tests.integration.test_http_api import start_with_http

SECRET = "hunter2-Zq8v"
DAG = """
secrets:
  - name: DB_PASSWORD
    provider: env
    key: TEST_DB_PASSWORD
steps:
  - id: leak
    run: |
      echo "connecting with pw=$DB_PASSWORD"
      echo "stderr has $DB_PASSWORD too" >&2
      touch "{mark}"
      while [ ! -e "{go}" ]; do sleep 0.05; done
      echo "done $DB_PASSWORD"
  - id: out
    depends: leak
    run: echo "$DB_PASSWORD"
    output: LEAKED
  - id: fail
    depends: out
    run: echo "failing with $DB_PASSWORD" >&2; exit 3
"""


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, path
        time.sleep(0.02)


def _everything(d: Daemon, base: str, run_id: str) -> list[str]:
    """Every read path of one run: HTTP routes, RPC methods (as text)."""
    texts = []
    for path in (
        f"/api/v1/dag-runs/vault/{run_id}",
        f"/api/v1/dag-runs/vault/{run_id}/log",
        f"/api/v1/dag-runs/vault/{run_id}/outputs",
        "/api/v1/dag-runs",
        "/api/v1/dags/vault",
        f"/api/v1/dags/vault/dag-runs/{run_id}",
        "/api/v1/dags/vault/dag-runs",
        "/api/v1/metrics",
    ):
        texts.append(httpx.get(base + path, timeout=10).text)
    for step in ("leak", "out", "fail"):
        for stream in ("stdout", "stderr"):
            texts.append(
                httpx.get(f"{base}/api/v1/dag-runs/vault/{run_id}/steps/{step}/log?stream={stream}", timeout=10).text
            )
    for method, params in (
        ("run.status", {"name": "vault", "run_id": run_id}),
        ("run.logs", {"name": "vault", "run_id": run_id}),
        ("run.logs", {"name": "vault", "run_id": run_id, "stream": "stderr"}),
        ("run.logs", {"name": "vault", "run_id": run_id, "step": "leak", "offset": 0}),
        ("run.history", {"name": "vault"}),
        ("dag.list", {}),
    ):
        req = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        texts.append(json.dumps(d.rpc(json.dumps(req).encode() + b"\n")))
    for argv in (
        ("logs", "vault", run_id),
        ("logs", "vault", run_id, "--stderr"),
        ("status", "vault", run_id, "--json"),
    ):
        r = d.ctl(*argv)
        texts += [r.stdout, r.stderr]
    return texts


def _subscribe(d: Daemon, into: list[bytes], ready: threading.Event) -> threading.Thread:
    def read() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(str(d.sock))
            s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "events.subscribe"}\n')
            ready.set()
            while b"RunFinished" not in b"".join(into):
                chunk = s.recv(65536)
                if not chunk:
                    return
                into.append(chunk)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_no_read_path_shows_a_secret_while_the_step_runs_or_after(tmp_path: Path) -> None:
    mark, go = tmp_path / "mark", tmp_path / "go"
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "vault.yaml").write_text(DAG.format(mark=mark, go=go))
    d, base = start_with_http(tmp_path, {"TEST_DB_PASSWORD": SECRET})
    try:
        events: list[bytes] = []
        ready = threading.Event()
        reader = _subscribe(d, events, ready)
        ready.wait(10)
        run_id = httpx.post(base + "/api/v1/dags/vault/start", json={}).json()["dagRunId"]
        _wait_for(mark)  # the step has printed the secret and is still running
        live = _everything(d, base, run_id)
        assert any("connecting with pw=*****" in t for t in live)  # the live log is there, masked
        with httpx.stream("GET", f"{base}/api/v1/dag-runs/vault/{run_id}/steps/leak/log/stream", timeout=10) as r:
            first = next(r.iter_text())
        live.append(first)
        go.touch()
        reader.join(30)
        after = _everything(d, base, run_id)
        status = json.loads(d.ctl("status", "vault", run_id, "--json").stdout)
        assert status["status"] == "failed"
        assert any("done *****" in t for t in after)
        hits = [t[:200] for t in [*live, *after, b"".join(events).decode()] if SECRET in t]
        assert hits == []
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("dagd.db*"))
    assert b"*****" in stored and SECRET.encode() not in stored
    assert SECRET not in (tmp_path / "dagd.log").read_text()
    for log in (tmp_path / "state" / "logs").rglob("*"):
        if log.is_file():
            assert SECRET.encode() not in log.read_bytes(), log


@pytest.mark.parametrize("killed", ["while_the_step_runs", "before_the_step_start_is_recorded"])
def test_logs_left_by_a_killed_dagd_are_masked_at_restart(tmp_path: Path, killed: str) -> None:
    mark, go = tmp_path / "mark", tmp_path / "go"
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "vault.yaml").write_text(DAG.format(mark=mark, go=go))
    env: dict[str, str | None] = {"TEST_DB_PASSWORD": SECRET}
    if killed == "while_the_step_runs":
        d = start_daemon(tmp_path, env)
        d.ctl("enqueue", "vault")
        _wait_for(mark)
        d.proc.send_signal(signal.SIGKILL)
    else:  # the step's log is nowhere in the history: found in the run's log folder
        d = start_daemon(tmp_path, {**env, "DAGD_FAULT": "kill:step_unrecorded"})
        d.ctl("enqueue", "vault")
        _wait_for(mark)
    d.proc.wait(timeout=10)
    d.notify.close()
    logs = [p for p in (tmp_path / "state" / "logs").rglob("*") if p.suffix in (".out", ".err")]
    assert any(SECRET.encode() in p.read_bytes() for p in logs)  # the step wrote it raw
    go.touch()
    d = start_daemon(tmp_path, env)
    try:
        for p in logs:
            assert SECRET.encode() not in p.read_bytes(), p
        assert any(b"connecting with pw=*****" in p.read_bytes() for p in logs)
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
