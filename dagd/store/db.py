"""The history database: dag_runs and dag_step_results, migrated by a version table.

SQLite by default (a file in the state folder), or PostgreSQL when the store is a
`postgresql://` URL (config.yaml `store:`): the same tables and the same SQL, with the few
differences of dialect kept here (`_Postgres`). Whatever the backend, the store raises sqlite3's
exception types (IntegrityError, OperationalError, DatabaseError), so its callers handle one set.

One connection, one writer: callers serialise through `Store.lock` (the engine does its writes
from a worker thread with a capacity limiter of 1). Every state change is committed before
the engine announces it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dagd import faults, names
from dagd.cgroups import kill_recorded
from dagd.procfs import kill_group_we_started

log = logging.getLogger("dagd.store")

if TYPE_CHECKING:  # the event classes are loaded by the writers only: `dagctl status` stays light
    from dagd.engine.events import Event

MIGRATIONS = [
    """
    CREATE TABLE dag_runs (
        id TEXT PRIMARY KEY,
        dag TEXT NOT NULL,
        file TEXT NOT NULL,
        status TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        params TEXT NOT NULL,
        started_at REAL,
        finished_at REAL,
        error TEXT,
        parent_run TEXT,
        log_dir TEXT,
        work_dir TEXT,
        runner_pid INTEGER
    );
    CREATE INDEX dag_runs_by_dag ON dag_runs (dag, started_at DESC);
    CREATE TABLE dag_step_results (
        run_id TEXT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
        step TEXT NOT NULL,
        handler INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        started_at REAL,
        finished_at REAL,
        duration REAL,
        cpu_user REAL,
        cpu_sys REAL,
        max_rss_kb INTEGER,
        stdout_path TEXT,
        stderr_path TEXT,
        outputs TEXT,
        published TEXT,
        output_value TEXT,
        error TEXT,
        pgid INTEGER,
        PRIMARY KEY (run_id, step)
    );
    CREATE TABLE dag_last_run (dag TEXT PRIMARY KEY, run_id TEXT NOT NULL);
    CREATE TABLE dag_state (
        dag TEXT PRIMARY KEY,
        watermark REAL,
        suspended INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE run_queue (
        run_id TEXT PRIMARY KEY,
        dag TEXT NOT NULL,
        file TEXT NOT NULL,
        params TEXT NOT NULL,
        trigger TEXT NOT NULL,
        schedule_time TEXT,
        queued_at REAL NOT NULL
    );
    """,
    """
    CREATE INDEX dag_runs_by_parent ON dag_runs (parent_run) WHERE parent_run IS NOT NULL;
    """,
    """
    CREATE INDEX run_queue_by_dag ON run_queue (dag, queued_at);
    """,
    """
    ALTER TABLE dag_step_results ADD COLUMN pgid_identity TEXT;
    """,
    """
    ALTER TABLE dag_runs ADD COLUMN cgroup TEXT;
    ALTER TABLE dag_step_results ADD COLUMN memory_source TEXT;
    """,
    """
    ALTER TABLE dag_runs ADD COLUMN queued_at REAL;
    ALTER TABLE dag_runs ADD COLUMN schedule_time TEXT;
    """,
    """
    ALTER TABLE run_queue ADD COLUMN env TEXT;
    CREATE TABLE webhooks (
        dag TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        token_digest TEXT NOT NULL,
        token_prefix TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        auth_mode TEXT NOT NULL DEFAULT 'token_only',
        hmac_secret TEXT,
        hmac_mode TEXT,
        hmac_updated_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        created_by TEXT,
        last_used_at REAL
    );
    """,
    """
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        labels TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        started_at REAL NOT NULL,
        heartbeat REAL NOT NULL
    );
    ALTER TABLE dag_runs ADD COLUMN node TEXT;
    ALTER TABLE dag_runs ADD COLUMN lease_until REAL;
    ALTER TABLE dag_runs ADD COLUMN stop_requested INTEGER;
    """,
    """
    CREATE TABLE run_logs (
        run_id TEXT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        data BLOB NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (run_id, path)
    );
    """,
    """
    CREATE INDEX dag_runs_by_start ON dag_runs (started_at DESC, id DESC);
    """,
]
# PostgreSQL: the schema as it stands after MIGRATIONS, as one first version (timestamps are
# DOUBLE PRECISION: PostgreSQL's REAL has 24 bits); later versions are appended to both lists.
PG_MIGRATIONS = [
    """
    CREATE TABLE dag_runs (
        id TEXT PRIMARY KEY,
        dag TEXT NOT NULL,
        file TEXT NOT NULL,
        status TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        params TEXT NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        error TEXT,
        parent_run TEXT,
        log_dir TEXT,
        work_dir TEXT,
        runner_pid INTEGER,
        cgroup TEXT,
        queued_at DOUBLE PRECISION,
        schedule_time TEXT
    );
    CREATE INDEX dag_runs_by_dag ON dag_runs (dag, started_at DESC);
    CREATE INDEX dag_runs_by_parent ON dag_runs (parent_run) WHERE parent_run IS NOT NULL;
    CREATE TABLE dag_step_results (
        run_id TEXT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
        step TEXT NOT NULL,
        handler INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        duration DOUBLE PRECISION,
        cpu_user DOUBLE PRECISION,
        cpu_sys DOUBLE PRECISION,
        max_rss_kb BIGINT,
        stdout_path TEXT,
        stderr_path TEXT,
        outputs TEXT,
        published TEXT,
        output_value TEXT,
        error TEXT,
        pgid INTEGER,
        pgid_identity TEXT,
        memory_source TEXT,
        PRIMARY KEY (run_id, step)
    );
    CREATE TABLE dag_last_run (dag TEXT PRIMARY KEY, run_id TEXT NOT NULL);
    CREATE TABLE dag_state (
        dag TEXT PRIMARY KEY,
        watermark DOUBLE PRECISION,
        suspended INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE run_queue (
        run_id TEXT PRIMARY KEY,
        dag TEXT NOT NULL,
        file TEXT NOT NULL,
        params TEXT NOT NULL,
        trigger TEXT NOT NULL,
        schedule_time TEXT,
        queued_at DOUBLE PRECISION NOT NULL,
        env TEXT,
        seq BIGSERIAL
    );
    CREATE INDEX run_queue_by_dag ON run_queue (dag, queued_at);
    CREATE TABLE webhooks (
        dag TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        token_digest TEXT NOT NULL,
        token_prefix TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        auth_mode TEXT NOT NULL DEFAULT 'token_only',
        hmac_secret TEXT,
        hmac_mode TEXT,
        hmac_updated_at DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        created_by TEXT,
        last_used_at DOUBLE PRECISION
    );
    """,
    """
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        labels TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        heartbeat DOUBLE PRECISION NOT NULL
    );
    ALTER TABLE dag_runs ADD COLUMN node TEXT;
    ALTER TABLE dag_runs ADD COLUMN lease_until DOUBLE PRECISION;
    ALTER TABLE dag_runs ADD COLUMN stop_requested INTEGER;
    CREATE INDEX dag_runs_running ON dag_runs (node) WHERE status = 'running';
    """,
    """
    CREATE TABLE run_logs (
        run_id TEXT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        data BYTEA NOT NULL,
        size BIGINT NOT NULL,
        PRIMARY KEY (run_id, path)
    );
    """,
    """
    CREATE INDEX dag_runs_by_start ON dag_runs (started_at DESC NULLS LAST, id DESC);
    """,
]
LEASE_SEC = 20.0  # a running run's lease: renewed every HEARTBEAT_SEC by its node (dagd.daemon)
POOL_SIZE = 4  # PostgreSQL connections per dagd (reads and writes in parallel worker threads)
IDLE_IN_TRANSACTION_MS = 10_000  # dagd's transactions last milliseconds; a frozen node's, forever
PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str) -> bool:
    return location.startswith(PG_SCHEMES)


class StoreUnreachable(sqlite3.OperationalError):
    """The PostgreSQL server cannot be reached (down, restarting, a cut network): a wait, not a
    failure — callers retry (dagd.service._store_call) and report dagd degraded meanwhile."""


class _Row(tuple):  # type: ignore[type-arg]
    """A PostgreSQL row as sqlite3.Row reads: by position or by column name, and dict(row)."""

    names: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        return self.names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)


class _Postgres:
    """A psycopg 3 connection that reads like the sqlite3 one the store was written for: `?`
    placeholders, rows by name or position, sqlite3's exception types."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.url = url
        self.conn = self._connect()

    def _connect(self) -> Any:
        try:
            conn = self.psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            # a node frozen (SIGSTOP, a hung VM) inside a transaction must not hold its locks for
            # long: the server ends such a session, and the other nodes go on
            conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
            return conn
        except self.psycopg.Error as exc:
            raise StoreUnreachable(f"cannot connect to PostgreSQL: {str(exc).strip()}") from None

    def _usable(self) -> Any:
        """The connection, opened again when the server closed it (a restart, a network cut): the
        statement that found it broken failed; the ones after it run on a new connection."""
        if self.conn.closed or self.conn.broken:
            self.conn = self._connect()
        return self.conn

    @staticmethod
    def _rows(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
        names = tuple(c.name for c in cursor.description or ())

        def make(values: Sequence[Any]) -> _Row:
            row = _Row(values)
            row.names = names
            return row

        return make

    def _run(self, fn: Callable[[], Any]) -> Any:
        errors = self.psycopg.errors
        try:
            return fn()
        except errors.IntegrityError as exc:
            raise sqlite3.IntegrityError(str(exc).strip()) from None
        except self.psycopg.OperationalError as exc:
            if self.conn.closed or self.conn.broken:  # the connection went: the next call reconnects
                raise StoreUnreachable(str(exc).strip()) from None
            raise sqlite3.OperationalError(str(exc).strip()) from None
        except self.psycopg.Error as exc:
            raise sqlite3.DatabaseError(str(exc).strip()) from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self._usable().cursor(row_factory=self._rows)
        self._run(lambda: cur.execute(sql.replace("?", "%s").encode(), params or None))
        return cur

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> Any:
        cur = self._usable().cursor(row_factory=self._rows)
        self._run(lambda: cur.executemany(sql.replace("?", "%s").encode(), seq))
        return cur

    @property
    def in_transaction(self) -> bool:
        return bool(self.conn.info.transaction_status != self.psycopg.pq.TransactionStatus.IDLE)

    def close(self) -> None:
        self.conn.close()


class _Pool:
    """A bounded pool of PostgreSQL connections: each is used by one thread at a time (psycopg 3
    has no trio support: the store's calls run in worker threads), at most `size` at once —
    more callers wait for one to come back. A connection found broken is dropped and the next
    caller opens a new one."""

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.size = size
        self.slots = threading.BoundedSemaphore(size)
        self.mutex = threading.Lock()
        self.idle: list[_Postgres] = [_Postgres(url)]  # the first at once: an unreachable store is said at start

    @contextmanager
    def connection(self) -> Iterator[_Postgres]:
        self.slots.acquire()
        conn: _Postgres | None = None
        try:
            with self.mutex:
                conn = self.idle.pop() if self.idle else None
            if conn is None:
                conn = _Postgres(self.url)
            yield conn
        finally:
            if conn is not None:
                if conn.conn.closed or conn.conn.broken or conn.in_transaction:
                    conn.conn.close()
                else:
                    with self.mutex:
                        self.idle.append(conn)
            self.slots.release()

    def close(self) -> None:
        with self.mutex:
            for conn in self.idle:
                conn.close()
            self.idle.clear()


WEBHOOK_FIELDS = {
    "token_digest",
    "token_prefix",
    "enabled",
    "auth_mode",
    "hmac_secret",
    "hmac_mode",
    "hmac_updated_at",
}


class Store:
    def __init__(self, path: str) -> None:
        """`path`: a SQLite file, or a postgresql:// URL."""
        self.path = path
        self.lock = threading.Lock()
        self.postgres = is_postgres(path)
        self.db: Any
        self.pool: _Pool | None = None
        self.pinned: _Postgres | None = None  # the connection holding this node's advisory lock
        self.node: str | None = None  # this dagd's node id once it registers (heartbeat)
        if self.postgres:
            self.pool = _Pool(path, POOL_SIZE)
            self._begin, self._greatest, self._all, self._fifo = "BEGIN", "GREATEST", "ALL", "q.seq"
            self._now = "extract(epoch from clock_timestamp())"
        else:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.execute("PRAGMA journal_size_limit=67108864")
            self._begin, self._greatest, self._all, self._fifo = "BEGIN IMMEDIATE", "MAX", "-1", "q.rowid"
            self._now = "((julianday('now') - 2440587.5) * 86400.0)"
        self._migrate()

    @property
    def where(self) -> str:
        """The store for messages: the file, or the PostgreSQL server without its password."""
        return self.describe(self.path)

    @staticmethod
    def describe(location: str) -> str:
        if not is_postgres(location):
            return location
        hidden = re.sub(r"://([^:@/]*):[^@/]*@", r"://\1:***@", location)
        return re.sub(r"(password=)[^&\s]*", r"\1***", hidden)

    def check(self) -> None:
        """An integrity check at start: SQLite's quick_check; a round trip for PostgreSQL."""
        with self._conn() as db:
            db.execute("SELECT 1" if self.postgres else "PRAGMA quick_check").fetchall()

    def claim_node(self, node: str) -> bool:
        """For a daemon: be the only dagd of this node id on the store (PostgreSQL: a session
        advisory lock keyed by the id, held while the connection lives); False when another dagd
        holds it. Nodes with different ids share a store. SQLite: one state folder per dagd."""
        if not self.postgres:
            return True
        if self.pinned is None:
            self.pinned = _Postgres(self.path)
        row = self.pinned.execute("SELECT pg_try_advisory_lock(72578, hashtext(?))", (node,)).fetchone()
        return bool(row[0])

    def _conn(self) -> Any:
        """A connection for one call: SQLite's one, under the store's lock; or one of the pool's."""
        if self.pool is not None:
            return self.pool.connection()
        return self._sqlite()

    @contextmanager
    def _sqlite(self) -> Iterator[Any]:
        with self.lock:
            yield self.db

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._conn() as db:
            db.execute(self._begin)
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error:  # busy or full at commit: leave no transaction open behind
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self.transaction() as db:
            if self.postgres:  # several nodes may start at once: one migrates, the others wait
                db.execute("SELECT pg_advisory_xact_lock(72577)")
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            scripts = PG_MIGRATIONS if self.postgres else MIGRATIONS
            if version > len(scripts):
                raise sqlite3.DatabaseError(
                    f"the store's schema is version {version}, newer than this dagd knows ({len(scripts)}): upgrade dagd"
                )
            for i, script in enumerate(scripts[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if row is None and i == 1:
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (i,))
                else:
                    db.execute("UPDATE schema_version SET version = ?", (i,))

    def record(self, event: Event) -> None:
        """Persist one engine event (commits before returning)."""
        self.record_many([event])

    def record_many(self, events: list[Event]) -> None:
        """Persist events in order, in one transaction (the daemon's group commit)."""
        with self.transaction() as db:
            for event in events:
                self._write(db, event)

    def _write(self, db: sqlite3.Connection, event: Event) -> None:
        from dagd.engine.events import RunFinished, RunStarted, StepChanged

        faults.hit("database_write", getattr(event, "dag", None), getattr(event, "step", None))
        if self.postgres and self.node is not None and not isinstance(event, RunStarted):  # (shared stores only)
            # the run's row locked until this commits: a take-over waits for it, or comes first
            owner = db.execute("SELECT node FROM dag_runs WHERE id = ? FOR UPDATE", (event.run_id,)).fetchone()
            if owner is not None and not self._mine(owner[0]):
                log.warning(
                    "run %s: a late result of this node is not recorded (node %s took the run over)",
                    event.run_id,
                    owner[0],
                )
                return
        if isinstance(event, RunStarted):
            names.run_id(event.run_id)  # the last line of defence: ids become log folder names
            cur = db.execute(
                "INSERT INTO dag_runs (id, dag, file, status, status_code, trigger, params, started_at, parent_run, log_dir,"
                " work_dir, runner_pid, cgroup, node, lease_until)"
                f" VALUES (?, ?, ?, 'running', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, {self._now} + {LEASE_SEC})"
                " ON CONFLICT (id) DO UPDATE SET status='running', status_code=1, started_at=excluded.started_at,"
                " finished_at=NULL, error=NULL, runner_pid=excluded.runner_pid, trigger=excluded.trigger,"
                " params=excluded.params, log_dir=excluded.log_dir, work_dir=excluded.work_dir,"
                " parent_run=excluded.parent_run, cgroup=excluded.cgroup, node=excluded.node,"
                " lease_until=excluded.lease_until"
                # a run another node took over while this one was away (frozen after taking it
                # from the queue) is theirs: not started here
                " WHERE excluded.node IS NULL OR dag_runs.node IS NULL OR dag_runs.node = excluded.node",
                (
                    event.run_id,
                    event.dag,
                    event.file,
                    event.trigger,
                    json.dumps(event.params),
                    event.started_at,
                    event.parent_run,
                    event.log_dir,
                    event.work_dir,
                    os.getpid(),
                    event.cgroup,
                    self.node,
                ),
            )
            if cur.rowcount != 1:
                owner = db.execute("SELECT node FROM dag_runs WHERE id = ?", (event.run_id,)).fetchone()
                raise sqlite3.IntegrityError(
                    f"run {event.run_id} is not started here: node {owner[0] if owner else '?'} took it over"
                )
            db.execute(
                "INSERT INTO dag_last_run (dag, run_id) VALUES (?, ?) ON CONFLICT (dag) DO UPDATE SET run_id = excluded.run_id",
                (event.dag, event.run_id),
            )
        elif isinstance(event, StepChanged):
            duration = event.finished_at - event.started_at if event.finished_at and event.started_at else None
            db.execute(
                "INSERT INTO dag_step_results (run_id, step, handler, status, status_code, attempt, exit_code, started_at, finished_at, duration,"
                " cpu_user, cpu_sys, max_rss_kb, stdout_path, stderr_path, outputs, error, pgid, published, output_value, pgid_identity,"
                " memory_source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, step) DO UPDATE SET status=excluded.status, status_code=excluded.status_code, attempt=excluded.attempt,"
                " exit_code=excluded.exit_code, started_at=excluded.started_at, finished_at=excluded.finished_at, duration=excluded.duration,"
                " cpu_user=excluded.cpu_user, cpu_sys=excluded.cpu_sys, max_rss_kb=excluded.max_rss_kb, stdout_path=excluded.stdout_path,"
                " stderr_path=excluded.stderr_path, outputs=excluded.outputs, error=excluded.error, pgid=excluded.pgid,"
                " published=excluded.published, output_value=excluded.output_value, pgid_identity=excluded.pgid_identity,"
                " memory_source=excluded.memory_source",
                (
                    event.run_id,
                    event.step,
                    int(event.handler),
                    event.status.value,
                    event.status.code,
                    event.attempt,
                    event.exit_code,
                    event.started_at,
                    event.finished_at,
                    duration,
                    event.cpu_user,
                    event.cpu_sys,
                    event.max_rss_kb,
                    event.stdout_path,
                    event.stderr_path,
                    json.dumps(event.outputs),
                    event.error,
                    event.pgid,
                    json.dumps(event.published),
                    event.output_value,
                    event.pgid_identity,
                    event.memory_source,
                ),
            )
        elif isinstance(event, RunFinished):
            db.execute(
                "UPDATE dag_runs SET status=?, status_code=?, finished_at=?, error=? WHERE id=?",
                (event.status.value, event.status.code, event.finished_at, event.error, event.run_id),
            )

    def reconcile(
        self, run_id: str, reason: str | None = None, status: str = "aborted", *, requeue: bool = False
    ) -> str | None:
        """A run left `running` by a process that no longer exists is recorded as ended — and with
        `requeue`, queued again as `<id>_requeued` in the same transaction. None when there was
        nothing to end (not left running, or ended meanwhile by another node); else the re-queued
        run's id, or ""."""
        with self._conn() as db:
            row = db.execute("SELECT status, runner_pid, cgroup, node FROM dag_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row["status"] not in ("running", "queued") or runner_alive(row["runner_pid"]):
            return None
        if not self._mine(row["node"]):
            return None  # another node's run: its lease decides (expired_runs), not a pid of this host
        code = {"aborted": 3, "failed": 2}[status]
        why = reason or f"the process running it (pid {row['runner_pid']}) died before the run finished"
        now = time.time()
        with self._conn() as db:
            groups = db.execute(
                "SELECT step, pgid, pgid_identity FROM dag_step_results"
                " WHERE run_id = ? AND status IN ('running', 'retrying') AND pgid IS NOT NULL",
                (run_id,),
            ).fetchall()
        left = kill_recorded(row["cgroup"])  # the run's cgroup: everything it started, escapees included
        if left:
            log.warning("run %s: %s", run_id, left)
        for g in groups:  # no orphans: the dead runner's step groups go with it, and only they
            spared = kill_group_we_started(g["pgid"], g["pgid_identity"])
            if spared:
                log.warning("run %s step %s: %s", run_id, g["step"], spared)
        with self.transaction() as db:
            db.execute(
                "UPDATE dag_step_results SET status='aborted', status_code=3, finished_at=?, error=COALESCE(error, 'its runner died')"
                " WHERE run_id = ? AND status IN ('running', 'retrying')",
                (now, run_id),
            )
            ended = db.execute(
                "UPDATE dag_runs SET status=?, status_code=?, finished_at=?, error=? WHERE id = ? AND status IN ('running', 'queued')",
                (status, code, now, why, run_id),
            )
            if ended.rowcount != 1:
                return None
            return (self._requeue_in(db, run_id) or "") if requeue else ""

    def prune(self, dag: str, keep_days: float, keep_runs: int | None) -> list[str]:
        """Drop runs past the DAG's retention (days, or the newest N); their log/work dirs."""
        with self._conn() as db:
            if keep_runs:
                rows = db.execute(
                    "SELECT id, log_dir, work_dir FROM dag_runs WHERE dag = ? AND status NOT IN ('running', 'queued')"
                    f" ORDER BY started_at DESC NULLS LAST LIMIT {self._all} OFFSET ?",
                    (dag, keep_runs),
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT id, log_dir, work_dir FROM dag_runs WHERE dag = ? AND status NOT IN ('running', 'queued') AND started_at < ?",
                    (dag, time.time() - keep_days * 86400),
                ).fetchall()
        if not rows:
            return []
        with self.transaction() as db:
            db.executemany("DELETE FROM dag_step_results WHERE run_id = ?", [(r["id"],) for r in rows])
            db.executemany("DELETE FROM dag_runs WHERE id = ?", [(r["id"],) for r in rows])
            db.execute("DELETE FROM dag_last_run WHERE dag = ? AND run_id NOT IN (SELECT id FROM dag_runs)", (dag,))
        return [d for r in rows for d in (r["log_dir"], r["work_dir"]) if d]

    def delete_run(self, dag: str, run_id: str) -> list[str] | None:
        """Forget one finished run (its steps too); its log/work dirs, or None when there is no
        such run. A running or queued run is refused (ValueError)."""
        with self.transaction() as db:
            r = db.execute(
                "SELECT status, log_dir, work_dir FROM dag_runs WHERE id = ? AND dag = ?", (run_id, dag)
            ).fetchone()
            if r is None:
                return None
            if r["status"] in ("running", "queued"):
                raise ValueError(f"run {run_id} is {r['status']}: stop or dequeue it first")
            db.execute("DELETE FROM dag_step_results WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM dag_runs WHERE id = ?", (run_id,))
            db.execute("DELETE FROM dag_last_run WHERE dag = ? AND run_id = ?", (dag, run_id))
            db.execute(
                "INSERT INTO dag_last_run (dag, run_id) SELECT dag, id FROM dag_runs WHERE dag = ?"
                " ORDER BY started_at DESC NULLS LAST LIMIT 1 ON CONFLICT DO NOTHING",
                (dag,),
            )
        return [d for d in (r["log_dir"], r["work_dir"]) if d]

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """The latest run row of every DAG, in one query (listings of many DAGs)."""
        with self._conn() as db:
            rows = db.execute(
                "SELECT r.id, r.dag, r.status, r.trigger, r.started_at, r.finished_at, r.error"
                " FROM dag_last_run l JOIN dag_runs r ON r.id = l.run_id"
            ).fetchall()
        return {r["dag"]: dict(r) for r in rows}

    def run_by_id(self, run_id: str) -> dict[str, Any] | None:
        with self._conn() as db:
            row = db.execute("SELECT * FROM dag_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        doc = dict(row)
        doc["params"] = json.loads(doc["params"] or "{}")
        return doc

    def run(self, dag: str, run_id: str | None = None) -> dict[str, Any] | None:
        with self._conn() as db:
            if run_id is None:
                row = db.execute("SELECT run_id FROM dag_last_run WHERE dag = ?", (dag,)).fetchone()
                if row is None:
                    return None
                run_id = row[0]
            r = db.execute("SELECT * FROM dag_runs WHERE id = ? AND dag = ?", (run_id, dag)).fetchone()
            if r is None:
                return None
        orphaned = r["status"] == "running" or (r["status"] == "queued" and r["runner_pid"] is not None)
        orphaned = orphaned and self._mine(r["node"])  # another node's run is its own (and its lease's)
        # a queued run with no runner waits in run_queue; a run kept for the next dagd (its
        # runner left it to be re-attached: on_restart: reattach) is that dagd's to end
        if orphaned and not runner_alive(r["runner_pid"]) and not kept_for_reattach(r["log_dir"]):
            self.reconcile(run_id)
            return self.run(dag, run_id)
        with self._conn() as db:
            steps = db.execute(
                "SELECT * FROM dag_step_results WHERE run_id = ? ORDER BY handler, started_at IS NULL, started_at",
                (run_id,),
            ).fetchall()
        doc = dict(r)
        doc["params"] = json.loads(doc["params"])
        doc["lineage"] = self._lineage(doc["parent_run"])
        doc["steps"] = [
            dict(s) | {"outputs": json.loads(s["outputs"] or "{}"), "published": json.loads(s["published"] or "{}")}
            for s in steps
        ]
        return doc

    def _lineage(self, parent_run: str | None) -> list[tuple[str, str]]:
        """(dag, run id) of a sub-DAG run's parent, its parent … up to the root (bounded)."""
        out: list[tuple[str, str]] = []
        with self._conn() as db:
            while parent_run and len(out) < 32:
                row = db.execute("SELECT dag, parent_run FROM dag_runs WHERE id = ?", (parent_run,)).fetchone()
                if row is None:
                    break
                out.append((row[0], parent_run))
                parent_run = row[1]
        return out

    def history(
        self,
        dag: str | None,
        limit: int = 20,
        status: str | None = None,
        run_id: str | None = None,
        before: tuple[float, str] | None = None,
        since: float | None = None,
        until: float | None = None,
        dags: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; `before` = (started_at, id) of the last row of the previous page;
        `since`/`until`: runs started within (epoch seconds, both included); `dags`: only these
        DAGs' runs (none for an empty list)."""
        if dags is not None and not dags:
            return []
        q = (
            "SELECT id, dag, status, trigger, started_at, finished_at, error, queued_at, schedule_time"
            " FROM dag_runs WHERE 1 = 1"
        )
        args: list[Any] = []
        if dags:
            q += f" AND dag IN ({', '.join('?' * len(dags))})"
            args.extend(dags)
        if since is not None:
            q += " AND started_at >= ?"
            args.append(since)
        if until is not None:
            q += " AND started_at <= ?"
            args.append(until)
        if before is not None:
            q += " AND (started_at < ? OR (started_at = ? AND id < ?))"
            args.extend([before[0], before[0], before[1]])
        if dag:
            q += " AND dag = ?"
            args.append(dag)
        if run_id:
            q += " AND id = ?"
            args.append(run_id)
        if status:
            q += " AND status = ?"
            args.append(status)
        q += " ORDER BY started_at DESC NULLS LAST, id DESC LIMIT ?"  # (NULL: SQLite's own order, said for PostgreSQL)
        args.append(limit)
        with self._conn() as db:
            return [dict(r) for r in db.execute(q, args).fetchall()]

    def step(self, dag: str, run_id: str, step: str) -> dict[str, Any] | None:
        """One step's row of a run (no reconciliation: for polling a step that is known to exist)."""
        with self._conn() as db:
            row = db.execute(
                "SELECT s.* FROM dag_step_results s JOIN dag_runs r ON r.id = s.run_id"
                " WHERE r.dag = ? AND s.run_id = ? AND s.step = ?",
                (dag, run_id, step),
            ).fetchone()
        return dict(row) if row else None

    def resources(self, dag: str, limit: int) -> list[dict[str, Any]]:
        """The last `limit` started runs of a DAG, oldest first, each with its steps' duration,
        CPU seconds and peak memory (handlers left out): the web UI's resource charts."""
        with self._conn() as db:
            runs = db.execute(
                "SELECT id, status, started_at, finished_at FROM dag_runs WHERE dag = ? AND started_at IS NOT NULL"
                " ORDER BY started_at DESC, id DESC LIMIT ?",
                (dag, limit),
            ).fetchall()
            ids = [r["id"] for r in runs]
            steps = (
                db.execute(
                    "SELECT run_id, step, status, duration, cpu_user, cpu_sys, max_rss_kb, memory_source"
                    f" FROM dag_step_results WHERE handler = 0 AND run_id IN ({', '.join('?' * len(ids))})",
                    ids,
                ).fetchall()
                if ids
                else []
            )
        by_run: dict[str, list[dict[str, Any]]] = {}
        for s in steps:
            by_run.setdefault(s["run_id"], []).append(dict(s))
        return [dict(r) | {"steps": by_run.get(r["id"], [])} for r in reversed(runs)]

    def children(self, parent_run: str) -> list[dict[str, Any]]:
        """Sub-DAG runs started by a run, oldest first."""
        with self._conn() as db:
            rows = db.execute(
                "SELECT id, dag, status, started_at, finished_at FROM dag_runs WHERE parent_run = ? ORDER BY started_at NULLS FIRST",
                (parent_run,),
            ).fetchall()
        return [dict(r) for r in rows]

    # ---- daemon state: watermarks, suspension, the persistent FIFO queue ---------------------

    def watermarks(self) -> dict[str, float]:
        """Every DAG's watermark in one query (the scheduler reads them all on every wake)."""
        with self._conn() as db:
            rows = db.execute("SELECT dag, watermark FROM dag_state WHERE watermark IS NOT NULL").fetchall()
        return {r[0]: r[1] for r in rows}

    def watermark(self, dag: str) -> float | None:
        with self._conn() as db:
            row = db.execute("SELECT watermark FROM dag_state WHERE dag = ?", (dag,)).fetchone()
        return row[0] if row else None

    def claim_slot(
        self, dag: str, run_id: str, file: str, fire_at: float, trigger: str, schedule_time: str | None = None
    ) -> bool:
        """Fire a scheduled slot once: its run (id derived from the slot) recorded and queued, and
        the DAG's watermark moved, in one transaction — a node that dies at any point has either
        queued the fire for any node to run, or left it for the next claim. False when that slot
        was already claimed (a replay, or another node's claim; also this node's own claim whose
        answer was lost with the connection: its run is queued all the same)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO dag_runs (id, dag, file, status, status_code, trigger, params, started_at, queued_at,"
                " schedule_time) VALUES (?, ?, ?, 'queued', 5, ?, ?, NULL, ?, ?) ON CONFLICT (id) DO NOTHING",
                (run_id, dag, file, trigger, _params_doc([]), time.time(), schedule_time),
            )
            db.execute(
                "INSERT INTO dag_state (dag, watermark) VALUES (?, ?)"
                f" ON CONFLICT (dag) DO UPDATE SET watermark = {self._greatest}(COALESCE(dag_state.watermark, 0), excluded.watermark)",
                (dag, fire_at),
            )
            if cur.rowcount != 1:
                return False
            self._queue_in(db, run_id, dag, file, [], trigger, schedule_time, None)
            return True

    def set_watermark(self, dag: str, at: float) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO dag_state (dag, watermark) VALUES (?, ?) ON CONFLICT (dag) DO UPDATE SET watermark = excluded.watermark",
                (dag, at),
            )

    def suspended(self) -> set[str]:
        with self._conn() as db:
            return {r[0] for r in db.execute("SELECT dag FROM dag_state WHERE suspended = 1")}

    def set_suspended(self, dag: str, value: bool) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO dag_state (dag, suspended) VALUES (?, ?) ON CONFLICT (dag) DO UPDATE SET suspended = excluded.suspended",
                (dag, int(value)),
            )

    def enqueue(
        self,
        run_id: str,
        dag: str,
        file: str,
        params: list[str],
        trigger: str,
        schedule_time: str | None,
        *,
        parent_run: str | None = None,
        env: dict[str, str] | None = None,
        new_only: bool = False,
    ) -> None:
        """Queue a run. `env`: variables the run gets beside its params (a webhook's payload);
        `new_only`: a run id already in the history is a sqlite3.IntegrityError, not a re-queue."""
        names.run_id(run_id)
        upsert = (
            ""
            if new_only
            else " ON CONFLICT (id) DO UPDATE SET status = 'queued', status_code = 5, queued_at = excluded.queued_at"
        )
        with self.transaction() as db:
            db.execute(
                "INSERT INTO dag_runs (id, dag, file, status, status_code, trigger, params, parent_run, queued_at,"
                " schedule_time) VALUES (?, ?, ?, 'queued', 5, ?, ?, ?, ?, ?)" + upsert,
                (run_id, dag, file, trigger, _params_doc(params), parent_run, time.time(), schedule_time),
            )
            self._queue_in(db, run_id, dag, file, params, trigger, schedule_time, env)

    def _queue_in(
        self,
        db: Any,
        run_id: str,
        dag: str,
        file: str,
        params: list[str],
        trigger: str,
        schedule_time: str | None,
        env: dict[str, str] | None,
    ) -> None:
        """The queue's row of a run, within the caller's transaction; idle nodes of a PostgreSQL
        store are woken (NOTIFY is delivered when the transaction commits)."""
        if self.postgres:
            db.execute("NOTIFY dagd_wake")
        db.execute(
            "INSERT INTO run_queue (run_id, dag, file, params, trigger, schedule_time, queued_at, env)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET dag = excluded.dag,"
            " file = excluded.file, params = excluded.params, trigger = excluded.trigger,"
            " schedule_time = excluded.schedule_time, queued_at = excluded.queued_at, env = excluded.env",
            (
                run_id,
                dag,
                file,
                json.dumps(params),
                trigger,
                schedule_time,
                time.time(),
                json.dumps(env) if env else None,
            ),
        )

    def queued(self, dag: str | None = None) -> list[dict[str, Any]]:
        """The queue, oldest first; only `dag`'s runs when given."""
        with self._conn() as db:
            select = "SELECT q.*, r.parent_run FROM run_queue q LEFT JOIN dag_runs r ON r.id = q.run_id"
            if dag is None:
                rows = db.execute(f"{select} ORDER BY q.queued_at, {self._fifo}").fetchall()
            else:
                rows = db.execute(f"{select} WHERE q.dag = ? ORDER BY q.queued_at, {self._fifo}", (dag,)).fetchall()
        return [
            {k: v for k, v in dict(r).items() if k != "seq"}
            | {"params": json.loads(r["params"]), "env": json.loads(r["env"] or "{}")}
            for r in rows
        ]

    # ---- webhooks (one per DAG; the token is kept as its SHA-256 only) --------------------------

    def webhook(self, dag: str) -> dict[str, Any] | None:
        with self._conn() as db:
            row = db.execute("SELECT * FROM webhooks WHERE dag = ?", (dag,)).fetchone()
        return dict(row) if row is not None else None

    def webhooks(self) -> list[dict[str, Any]]:
        with self._conn() as db:
            return [dict(r) for r in db.execute("SELECT * FROM webhooks ORDER BY dag").fetchall()]

    def add_webhook(self, dag: str, webhook_id: str, token_digest: str, token_prefix: str, by: str) -> bool:
        """False when the DAG has one already."""
        now = time.time()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO webhooks (dag, id, token_digest, token_prefix, created_at, updated_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dag) DO NOTHING",
                (dag, webhook_id, token_digest, token_prefix, now, now, by),
            )
            return bool(cur.rowcount == 1)

    def update_webhook(self, dag: str, **fields: Any) -> bool:
        """Set the named fields (WEBHOOK_FIELDS); False when the DAG has no webhook."""
        assert fields and set(fields) <= WEBHOOK_FIELDS, fields
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as db:
            cur = db.execute(
                f"UPDATE webhooks SET {sets}, updated_at = ? WHERE dag = ?",
                (*fields.values(), time.time(), dag),
            )
            return bool(cur.rowcount == 1)

    def webhook_used(self, dag: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE webhooks SET last_used_at = ? WHERE dag = ?", (time.time(), dag))

    def delete_webhook(self, dag: str) -> bool:
        with self.transaction() as db:
            return bool(db.execute("DELETE FROM webhooks WHERE dag = ?", (dag,)).rowcount == 1)

    def dequeue(self, run_id: str, *, cancelled: bool = False) -> bool:
        """Take a run out of the queue without running it; False when it is not there."""
        with self.transaction() as db:
            cur = db.execute("DELETE FROM run_queue WHERE run_id = ?", (run_id,))
            if cancelled and cur.rowcount:
                db.execute(
                    "UPDATE dag_runs SET status = 'aborted', status_code = 3, finished_at = ?, error = 'dequeued' WHERE id = ?",
                    (time.time(), run_id),
                )
            return bool(cur.rowcount == 1)

    def take(self, run_id: str, dag: str, limit: int) -> bool:
        """This node takes a queued run to start it: False when another node took it first, or
        when the DAG already has `limit` runs going on any node (its max_active_runs). Claims of
        one DAG are serialised across nodes (PostgreSQL: an advisory transaction lock per DAG)."""
        with self.transaction() as db:
            if self.postgres:
                # the queue row first, skipping one another node is taking right now (it is theirs
                # or back in a moment): nodes walk past each other's claims instead of queueing
                # behind them; then the DAG's count under its lock
                mine = db.execute("SELECT 1 FROM run_queue WHERE run_id = ? FOR UPDATE SKIP LOCKED", (run_id,))
                if mine.fetchone() is None:
                    return False
                db.execute("SELECT pg_advisory_xact_lock(72579, hashtext(?))", (dag,))
            going = db.execute(
                "SELECT count(*) FROM dag_runs WHERE dag = ? AND (status = 'running' OR (status = 'queued'"
                " AND node IS NOT NULL AND id NOT IN (SELECT run_id FROM run_queue)))",
                (dag,),
            ).fetchone()[0]
            if going >= limit:
                return False
            cur = db.execute("DELETE FROM run_queue WHERE run_id = ?", (run_id,))
            if cur.rowcount != 1:
                return False
            db.execute(  # leased from now: a node lost before the run starts loses it too
                f"UPDATE dag_runs SET node = ?, lease_until = {self._now} + {LEASE_SEC} WHERE id = ?",
                (self.node, run_id),
            )
            return True

    def stale_runs(self) -> list[str]:
        """Runs a previous process of this node left running, or queued-but-not-in-the-queue
        (another node's running runs are its own: their leases decide)."""
        with self._conn() as db:
            rows = db.execute(
                "SELECT id FROM dag_runs WHERE (node IS NULL OR node = ?) AND (status = 'running'"
                " OR (status = 'queued' AND id NOT IN (SELECT run_id FROM run_queue)))",
                (self.node or "",),
            ).fetchall()
        return [r[0] for r in rows]

    def _mine(self, node: str | None) -> bool:
        return node is None or self.node is None or node == self.node

    def expired_runs(self) -> list[dict[str, Any]]:
        """Runs of other nodes whose lease ran out (on the database's clock): their node stopped
        renewing — killed, cut off, frozen."""
        with self._conn() as db:
            rows = db.execute(
                f"SELECT id, dag, node FROM dag_runs WHERE status IN ('running', 'queued') AND node IS NOT NULL"
                f" AND node <> ? AND lease_until IS NOT NULL AND lease_until < {self._now}"
                " AND id NOT IN (SELECT run_id FROM run_queue)",
                (self.node or "",),
            ).fetchall()
        return [dict(r) for r in rows]

    def take_over(self, run_id: str, reason: str, status: str = "failed", *, requeue: bool = False) -> str | None:
        """End a run whose node lost its lease: recorded `status` with the reason, its running steps
        aborted — once, whichever node gets there first (None for the others). With `requeue`
        (on_restart: requeue) it is queued again as `<id>_requeued` in the same transaction, so
        a taker that dies right after cannot leave it ended and never queued. Returns the run id
        queued, or "" when ended only."""
        code = {"aborted": 3, "failed": 2}[status]
        with self.transaction() as db:
            cur = db.execute(
                f"UPDATE dag_runs SET status = ?, status_code = ?, finished_at = {self._now}, error = ?, node = ?"
                f" WHERE id = ? AND status IN ('running', 'queued') AND lease_until < {self._now}",
                (status, code, reason, self.node, run_id),
            )
            if cur.rowcount != 1:
                return None
            db.execute(
                f"UPDATE dag_step_results SET status = 'aborted', status_code = 3, finished_at = {self._now},"
                " error = COALESCE(error, ?) WHERE run_id = ? AND status IN ('running', 'retrying')",
                (reason, run_id),
            )
            if not requeue:
                return ""
            return self._requeue_in(db, run_id)

    def request_stop(self, run_id: str) -> str | None:
        """Ask the node running `run_id` to stop it (it looks at every heartbeat); that node's id,
        or None when the run is not running."""
        with self.transaction() as db:
            row = db.execute("SELECT node FROM dag_runs WHERE id = ? AND status = 'running'", (run_id,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE dag_runs SET stop_requested = 1 WHERE id = ?", (run_id,))
            if self.postgres:
                db.execute("NOTIFY dagd_wake")
            return str(row[0] or "")

    def listen(self, stop: threading.Event, wake: Callable[[], None]) -> None:
        """PostgreSQL: call `wake` whenever another node queues a run or asks for a stop (LISTEN
        dagd_wake, on a connection of its own), until `stop` is set. Blocking: a worker thread's
        work. A lost connection is opened again; meanwhile the heartbeat's polling covers it."""
        import psycopg

        while not stop.is_set():
            try:
                with psycopg.connect(self.path, autocommit=True, connect_timeout=10) as conn:
                    conn.execute("LISTEN dagd_wake")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            wake()
            except psycopg.Error as exc:
                log.warning("the store's notifications are lost for now (%s); polling meanwhile", str(exc).strip())
                stop.wait(2.0)

    def running_on_others(self, dag: str) -> bool:
        with self._conn() as db:
            row = db.execute(
                "SELECT 1 FROM dag_runs WHERE dag = ? AND status = 'running' AND node IS NOT NULL AND node <> ? LIMIT 1",
                (dag, self.node or ""),
            ).fetchone()
        return row is not None

    def put_logs(self, run_id: str, logs: list[tuple[str, bytes, int]]) -> None:
        """A finished run's step logs (path, zlib-compressed tail, full size), for the other nodes
        of the store to read (PostgreSQL; on SQLite the files are the only copy)."""
        with self.transaction() as db:
            for path, data, size in logs:
                db.execute(
                    "INSERT INTO run_logs (run_id, path, data, size) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (run_id, path) DO UPDATE SET data = excluded.data, size = excluded.size",
                    (run_id, path, data, size),
                )

    def stored_log(self, run_id: str, path: str) -> tuple[bytes, int] | None:
        """A log another node stored: (compressed tail, full size), or None."""
        with self._conn() as db:
            row = db.execute("SELECT data, size FROM run_logs WHERE run_id = ? AND path = ?", (run_id, path)).fetchone()
        return None if row is None else (bytes(row[0]), int(row[1]))

    def size(self) -> int:
        """The store's size on disk in bytes: the SQLite file and its WAL, or the PostgreSQL
        database (pg_database_size)."""
        if self.postgres:
            with self._conn() as db:
                return int(db.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def has_queued(self) -> bool:
        with self._conn() as db:
            return db.execute("SELECT 1 FROM run_queue LIMIT 1").fetchone() is not None

    def stop_requests(self) -> list[str]:
        """This node's running runs another node was asked to stop."""
        with self._conn() as db:
            rows = db.execute(
                "SELECT id FROM dag_runs WHERE status = 'running' AND stop_requested = 1 AND node = ?", (self.node,)
            ).fetchall()
        return [r[0] for r in rows]

    def put_back(self, run_id: str) -> bool:
        """A run taken from the queue whose dagd stopped before starting it goes back to the
        queue under its own id (nothing of it ran); False when it is not such a run."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT dag, file, params, trigger, schedule_time FROM dag_runs WHERE id = ? AND status = 'queued'"
                " AND id NOT IN (SELECT run_id FROM run_queue)",
                (run_id,),
            ).fetchone()
            if row is None:
                return False
            params = json.loads(row["params"] or "{}")
            params = params if isinstance(params, dict) else {}
            overrides = list(params.get("overrides") or [])
            trigger = row["trigger"] or "manual"  # (a webhook's payload was the queue row's: not kept)
            self._queue_in(db, run_id, row["dag"], row["file"], overrides, trigger, row["schedule_time"], None)
            return True

    def requeue(self, run_id: str) -> str | None:
        """Queue an ended run again, with its params, as `<id>_requeued` (on_restart: requeue)."""
        with self.transaction() as db:
            return self._requeue_in(db, run_id)

    def _requeue_in(self, db: Any, run_id: str) -> str | None:
        row = db.execute("SELECT dag, file, params FROM dag_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        params = json.loads(row["params"] or "{}")
        params = params if isinstance(params, dict) else {}
        overrides = list(params.get("overrides") or [])
        overrides += [f"{k}={v}" for k, v in (params.get("named") or {}).items()]
        new_id = f"{run_id}_requeued"
        cur = db.execute(
            "INSERT INTO dag_runs (id, dag, file, status, status_code, trigger, params, queued_at) VALUES"
            " (?, ?, ?, 'queued', 5, 'retry', ?, ?) ON CONFLICT (id) DO NOTHING",
            (new_id, row["dag"], row["file"], _params_doc(overrides), time.time()),
        )
        if cur.rowcount != 1:  # queued again once already (by the node that took it over, or by us)
            return new_id
        self._queue_in(db, new_id, row["dag"], row["file"], overrides, "retry", None, None)
        return new_id

    def still_mine(self, run_id: str) -> bool:
        """Whether this node still holds the run (another node may have taken it over after this
        one's lease ran out: its late results are then not recorded)."""
        with self._conn() as db:
            row = db.execute("SELECT node FROM dag_runs WHERE id = ?", (run_id,)).fetchone()
        return row is None or self._mine(row["node"])

    def last_success_since(self, dag: str, since: float) -> bool:
        with self._conn() as db:
            row = db.execute(
                "SELECT 1 FROM dag_runs WHERE dag = ? AND status = 'succeeded' AND started_at >= ? LIMIT 1",
                (dag, since),
            ).fetchone()
        return row is not None

    def run_counts(self) -> list[tuple[str, str, int]]:
        with self._conn() as db:
            rows = db.execute(
                "SELECT dag, status, COUNT(*) FROM dag_runs GROUP BY dag, status ORDER BY dag, status"
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def run_durations(self, buckets: tuple[float, ...]) -> list[tuple[str, list[int], float, int]]:
        """Cumulative bucket counts, sum and count of finished runs' durations, per DAG (one query)."""
        cols = ", ".join(f"SUM(CASE WHEN d <= {float(b)} THEN 1 ELSE 0 END)" for b in buckets)
        with self._conn() as db:
            rows = db.execute(
                f"SELECT dag, {cols}, SUM(d), COUNT(*) FROM (SELECT dag, finished_at - started_at AS d FROM dag_runs"
                " WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) AS durations GROUP BY dag ORDER BY dag"
            ).fetchall()
        n = len(buckets)
        return [(r[0], [int(x) for x in r[1 : n + 1]], float(r[n + 1] or 0), int(r[n + 2])) for r in rows]

    # ---- nodes: who runs what, and their leases ------------------------------------------------

    def heartbeat(self, node: str, host: str, pid: int, labels: dict[str, str], capacity: int, started: float) -> None:
        """This node is alive: its row, and the leases of the runs it runs, renewed on the
        database's clock (nodes' clocks may disagree; the database's is the one they share)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO nodes (id, host, pid, labels, capacity, started_at, heartbeat)"
                f" VALUES (?, ?, ?, ?, ?, ?, {self._now}) ON CONFLICT (id) DO UPDATE SET host = excluded.host,"
                " pid = excluded.pid, labels = excluded.labels, capacity = excluded.capacity,"
                " started_at = excluded.started_at, heartbeat = excluded.heartbeat",
                (node, host, pid, json.dumps(labels, sort_keys=True), capacity, started),
            )
            db.execute(
                f"UPDATE dag_runs SET lease_until = {self._now} + {LEASE_SEC} WHERE node = ?"
                " AND (status = 'running' OR (status = 'queued' AND lease_until IS NOT NULL))",
                (node,),
            )

    def nodes(self) -> list[dict[str, Any]]:
        """Every node that ever heartbeated, with the seconds since its last heartbeat (on the
        database's clock) and the runs it holds."""
        with self._conn() as db:
            rows = db.execute(f"SELECT n.*, {self._now} - n.heartbeat AS age FROM nodes n ORDER BY n.id").fetchall()
            running = db.execute(
                "SELECT id, dag, node, started_at, parent_run FROM dag_runs WHERE status = 'running' AND node IS NOT NULL"
                " ORDER BY started_at"
            ).fetchall()
        out = []
        for r in rows:
            doc = dict(r) | {"labels": json.loads(r["labels"])}
            doc["running"] = [dict(x) for x in running if x["node"] == r["id"]]
            out.append(doc)
        return out

    def close(self) -> None:
        if self.pool is None:
            self.db.close()
            return
        self.pool.close()
        if self.pinned is not None:
            self.pinned.close()


def _params_doc(overrides: list[str]) -> str:
    return json.dumps({"named": {}, "positional": [], "overrides": overrides})


def kept_for_reattach(log_dir: str | None) -> bool:
    """Whether the run's runner kept it for the dagd after it (dagd.engine.reattach's folder)."""
    return bool(log_dir) and os.path.isdir(os.path.join(log_dir or "", ".proc"))


def runner_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X") and (b"dagctl" in cmd or b"dagd" in cmd)
