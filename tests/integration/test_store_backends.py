"""The run store behaves the same on SQLite and on PostgreSQL (Debian's server, tests/postgres.py):
events recorded, runs read back with their steps, history paged, scheduled slots claimed once,
the FIFO queue, suspension, webhooks, retention, deletion, counts and durations — and a
PostgreSQL store that several dagd nodes open at once is migrated once. A daemon configured
with `store: postgresql://…` keeps its history there across restarts."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagd.engine.events import RunFinished, RunStarted, StepChanged
from dagd.engine.status import RunStatus, StepStatus
from dagd.store.db import PG_MIGRATIONS, Store
from tests import postgres
from tests.conftest import run_dagctl
from tests.integration.test_daemon import run_ended, start_daemon, wait_until


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(str(tmp_path / "dagd.db"))
    else:
        server = request.getfixturevalue("pg")
        s = Store(server.fresh(f"t_{uuid.uuid4().hex[:10]}"))
    try:
        yield s
    finally:
        s.close()


def _run(s: Store, rid: str, dag: str, started: float, status: RunStatus, *, steps: int = 1) -> None:
    s.record(
        RunStarted(rid, dag, f"/dags/{dag}.yaml", {"named": {"A": "1"}}, "manual", started, f"/l/{rid}", f"/w/{rid}")
    )
    for i in range(steps):
        s.record(
            StepChanged(
                rid,
                f"s{i}",
                StepStatus.SUCCEEDED,
                1,
                0,
                started,
                started + 1.5,
                None,
                "/o",
                "/e",
                outputs={"K": "v"},
                published={"p": "1"},
                output_value="out",
            )
        )
    s.record(RunFinished(rid, dag, status, started + 2.25))


def test_runs_history_and_counts(store: Store) -> None:
    _run(store, "r1", "etl", 1000.5, RunStatus.SUCCEEDED, steps=2)
    _run(store, "r2", "etl", 2000.25, RunStatus.FAILED)
    _run(store, "r3", "other", 1500.0, RunStatus.SUCCEEDED)
    doc = store.run("etl")
    assert (
        doc is not None and doc["id"] == "r2" and doc["status"] == "failed" and doc["params"] == {"named": {"A": "1"}}
    )
    first = store.run("etl", "r1")
    assert first is not None and [s["step"] for s in first["steps"]] == ["s0", "s1"]
    step = first["steps"][0]
    assert step["outputs"] == {"K": "v"} and step["published"] == {"p": "1"} and step["duration"] == 1.5
    assert first["finished_at"] == 1002.75  # a timestamp keeps its fractions (PostgreSQL: DOUBLE PRECISION)
    page = store.history(None, limit=2)
    assert [r["id"] for r in page] == ["r2", "r3"]
    rest = store.history(None, limit=2, before=(page[-1]["started_at"], page[-1]["id"]))
    assert [r["id"] for r in rest] == ["r1"]
    assert [r["id"] for r in store.history("etl", status="failed")] == ["r2"]
    assert store.last_runs()["etl"]["id"] == "r2"
    assert sorted(store.run_counts()) == [("etl", "failed", 1), ("etl", "succeeded", 1), ("other", "succeeded", 1)]
    durations = {d: (b, total, n) for d, b, total, n in store.run_durations((1.0, 5.0))}
    assert durations["etl"] == ([0, 2], 4.5, 2)
    assert store.last_success_since("etl", 900) and not store.last_success_since("etl", 1001)
    assert store.delete_run("etl", "r2") == ["/l/r2", "/w/r2"]
    assert store.last_runs()["etl"]["id"] == "r1"  # the one before it is the latest again
    assert store.size() > 0  # (the System page's figure: the SQLite file and WAL, or the database)
    assert store.prune("etl", 0, keep_runs=1) == []  # one left: nothing past the newest one


def test_slots_queue_state_and_webhooks(store: Store) -> None:
    assert store.claim_slot("nightly", "nightly-s1", "/n.yaml", 100.0, "schedule") is True
    assert store.claim_slot("nightly", "nightly-s1", "/n.yaml", 100.0, "schedule") is False  # a replay
    assert store.claim_slot("nightly", "nightly-s0", "/n.yaml", 50.0, "schedule") is True
    # a claim is the fire queued, in the same transaction: nothing claimed is left unqueued
    assert [q["run_id"] for q in store.queued("nightly")] == ["nightly-s1", "nightly-s0"]
    assert store.queued("nightly")[0]["trigger"] == "schedule"
    store.node = "node-b"
    assert store.claim_slot("nightly", "nightly-s3", "/n.yaml", 160.0, "schedule", "2026-01-01T00:03:00Z") is True
    store.node = "node-a"
    assert store.claim_slot("nightly", "nightly-s3", "/n.yaml", 160.0, "schedule") is False  # node-b's
    store.node = None
    s3 = store.run_by_id("nightly-s3")
    assert s3 is not None and s3["status"] == "queued" and s3["schedule_time"] == "2026-01-01T00:03:00Z"
    for rid in ("nightly-s0", "nightly-s1", "nightly-s3"):
        assert store.dequeue(rid)
    assert store.watermarks() == {"nightly": 160.0}  # never moves back
    store.set_suspended("nightly", True)
    assert store.suspended() == {"nightly"}
    for rid in ("q1", "q2", "q3"):
        store.enqueue(rid, "etl", "/etl.yaml", [f"RID={rid}"], "manual", None, env={"E": rid})
    store.enqueue("q1", "etl", "/etl.yaml", ["again"], "manual", None)  # a re-queue replaces it
    queue = store.queued("etl")
    assert [q["run_id"] for q in queue] == ["q2", "q3", "q1"] and queue[0]["env"] == {"E": "q2"}
    assert queue[-1]["params"] == ["again"]
    with pytest.raises(sqlite3.IntegrityError):
        store.enqueue("q2", "etl", "/etl.yaml", [], "manual", None, new_only=True)
    assert store.dequeue("q3", cancelled=True) is True and store.dequeue("q3") is False
    aborted = store.run_by_id("q3")
    assert aborted is not None and aborted["status"] == "aborted"
    assert store.add_webhook("etl", "w1", "digest", "pre", "alice") is True
    assert store.add_webhook("etl", "w2", "digest", "pre", "alice") is False
    assert store.update_webhook("etl", enabled=0, hmac_mode="strict") is True
    hook = store.webhook("etl")
    assert hook is not None and hook["enabled"] == 0 and hook["hmac_mode"] == "strict"
    assert store.delete_webhook("etl") is True and store.webhooks() == []
    assert "nightly-s1" in store.stale_runs() or store.run_by_id("nightly-s1") is not None


def test_a_store_newer_than_dagd_is_refused(store: Store, tmp_path: Path) -> None:
    with store.transaction() as db:
        db.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(sqlite3.DatabaseError, match="newer than this dagd knows"):
        Store(store.path)


def test_nodes_starting_together_migrate_a_postgres_store_once(pg: postgres.Server) -> None:
    dsn = pg.fresh(f"t_{uuid.uuid4().hex[:10]}")
    opened: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(Store(dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(opened) == 4
    name = dsn.split("///")[1].split("?")[0]
    assert pg.psql("SELECT version FROM schema_version", database=name).strip() == str(len(PG_MIGRATIONS))
    for s in opened:
        s.close()


def _another_dagd(tmp_path: Path, other: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A second dagd on the same DAGs, its own state folder and socket, run to its exit."""
    return subprocess.run(
        [sys.executable, "-m", "dagd.daemon", "--user", "--no-http"],
        env={
            **os.environ,
            "DAGD_STATE_DIR": str(other / "state"),
            "DAGD_SOCKET": str(other / "s.sock"),
            "DAGD_DAGS_DIR": str(tmp_path / "dags"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_daemon_keeps_its_history_in_postgres(tmp_path: Path, pg: postgres.Server) -> None:
    dsn = pg.fresh(f"t_{uuid.uuid4().hex[:10]}")
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.yaml").write_text("steps:\n  - id: greet\n    run: echo hello from postgres\n")
    d = start_daemon(tmp_path, {"DAGD_STORE": dsn})
    try:
        rid = d.ctl("enqueue", "hello").stdout.strip()
        doc = wait_until(lambda: run_ended(d, "hello", rid))
        assert isinstance(doc, dict) and doc["status"] == "succeeded", doc
    finally:
        d.close()
    name = dsn.split("///")[1].split("?")[0]
    assert pg.psql(f"SELECT status FROM dag_runs WHERE id = '{rid}'", database=name).strip() == "succeeded"
    assert not (tmp_path / "state" / "dagd.db").exists()  # nothing went to SQLite
    d = start_daemon(tmp_path, {"DAGD_STORE": dsn})  # a restart: the same history
    try:
        status = json.loads(d.ctl("status", "hello", rid, "--json").stdout)
        assert status["steps"][0]["step"] == "greet" and status["status"] == "succeeded"
        # a second dagd with the same node id on the same database refuses to start
        other = tmp_path / "other"
        other.mkdir()
        second = _another_dagd(tmp_path, other, {"DAGD_STORE": dsn})
        assert second.returncode == 3 and "another dagd runs as node" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        # psycopg without its libpq (the .deb only recommends libpq5): one line, exit 3
        # (PSYCOPG_IMPL=binary is not installed: psycopg's import fails as it does without libpq)
        nolib = _another_dagd(tmp_path, other, {"DAGD_STORE": dsn, "DAGD_NODE_ID": "third", "PSYCOPG_IMPL": "binary"})
        assert nolib.returncode == 3 and "install libpq5" in nolib.stderr, nolib.stderr
        assert "Traceback" not in nolib.stderr
    finally:
        d.close()
    r = run_dagctl(["history", "hello", "--json"], tmp_path, {**d.env, "DAGD_STORE": dsn})  # no daemon: DAGD_STORE
    assert r.code == 0 and json.loads(r.stdout)[0]["id"] == rid, r.stderr


def test_a_daemon_outlives_a_restart_of_its_postgres(tmp_path: Path, pg: postgres.Server) -> None:
    dsn = pg.fresh(f"t_{uuid.uuid4().hex[:10]}")
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.yaml").write_text("steps:\n  - id: greet\n    run: echo hello\n")
    d = start_daemon(tmp_path, {"DAGD_STORE": dsn})
    try:
        pg.restart()  # every connection of dagd is cut

        # the first use of the cut connection may fail; dagd opens a new one and goes on
        def started() -> str | None:
            r = d.ctl("enqueue", "hello")
            return r.stdout.strip() if r.code == 0 else None

        rid = str(wait_until(started, timeout=30))
        doc = wait_until(lambda: run_ended(d, "hello", rid))
        assert isinstance(doc, dict) and doc["status"] == "succeeded", doc
        assert d.proc.poll() is None  # dagd never went down
    finally:
        d.close()


def test_a_node_back_from_a_freeze_records_nothing_of_the_runs_taken_over(pg: postgres.Server) -> None:
    dsn = pg.fresh(f"t_{uuid.uuid4().hex[:10]}")
    db = dsn.split("///")[1].split("?")[0]
    a, b = Store(dsn), Store(dsn)
    a.node, b.node = "node-a", "node-b"
    try:
        for rid in ("r1", "r2"):
            a.enqueue(rid, "etl", "/etl.yaml", [], "manual", None)
        # node-a takes both; it starts r2, and freezes before it starts r1
        assert a.take("r1", "etl", 10) and a.take("r2", "etl", 10)
        a.record(RunStarted("r2", "etl", "/etl.yaml", {}, "manual", 1000.0, "/l/r2", "/w/r2"))
        pg.psql("UPDATE dag_runs SET lease_until = 0", database=db)  # its leases ran out meanwhile
        assert sorted(r["id"] for r in b.expired_runs()) == ["r1", "r2"]
        assert b.take_over("r1", "node-a stopped renewing", requeue=True) == "r1_requeued"
        assert b.take_over("r2", "node-a stopped renewing", requeue=True) == "r2_requeued"
        assert b.take_over("r2", "node-a stopped renewing", requeue=True) is None  # once
        # node-a thaws: it would start r1 and finish r2 — none of it is recorded
        with pytest.raises(sqlite3.IntegrityError, match="node node-b took it over"):
            a.record(RunStarted("r1", "etl", "/etl.yaml", {}, "manual", 1001.0, "/l/r1", "/w/r1"))
        a.record(StepChanged("r2", "s", StepStatus.SUCCEEDED, 1, 0, 1000.0, 1002.0, None, "/o", "/e"))
        a.record(RunFinished("r2", "etl", RunStatus.SUCCEEDED, 1002.0))
        for rid in ("r1", "r2"):
            doc = b.run(dag="etl", run_id=rid)
            assert doc is not None and doc["status"] == "failed" and doc["node"] == "node-b", doc
            assert doc["steps"] == []
        assert sorted(q["run_id"] for q in b.queued()) == ["r1_requeued", "r2_requeued"]
        # node-a restarting (its own runs reconciled) while node-b took them over: nothing again
        assert a.reconcile("r2", "daemon restart", "failed", requeue=True) is None
        assert b.requeue("r2") == "r2_requeued"  # already queued again once: not twice
        assert len(b.queued()) == 2
    finally:
        a.close()
        b.close()


def test_a_postgres_store_reads_while_a_transaction_is_open_on_a_bounded_pool(pg: postgres.Server) -> None:
    from dagd.store.db import POOL_SIZE

    dsn = pg.fresh(f"t_{uuid.uuid4().hex[:10]}")
    db = dsn.split("///")[1].split("?")[0]
    s = Store(dsn)
    inside, release = threading.Event(), threading.Event()
    setting: list[str] = []

    def hold() -> None:
        with s.transaction() as conn:
            setting.append(conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0])
            conn.execute("INSERT INTO dag_state (dag, watermark) VALUES ('etl', 1)")
            inside.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(30)
        got: list[object] = []
        readers = [threading.Thread(target=lambda: got.append(s.queued())) for _ in range(POOL_SIZE * 3)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(30)
        assert got == [[]] * (POOL_SIZE * 3)  # answered while the transaction is still open
        assert s.watermarks() == {}  # (which nobody else sees before it commits)
        sessions = int(pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'", database=db))
        assert sessions <= POOL_SIZE + 1  # the pool's connections, and psql's own
    finally:
        release.set()
        holder.join(30)
    assert s.watermarks() == {"etl": 1.0}
    assert setting == ["10s"]  # a frozen node's transaction is ended by the server, and its locks with it
    s.close()
