"""The operations every transport calls (JSON-RPC today, HTTP next): one method each.

The service owns the catalog of DAGs, the store, the queue and the runs in flight. Runs are
tasks in the daemon's nursery; the queue is persisted in SQLite so queued runs survive a
restart; admission honours each DAG's max_active_runs and a global limit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import functools
import logging
import os
import shutil
import socket
import sqlite3
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from dagd import cgroups, faults, names, scheduler, webhooks
from dagd.access import Rule
from dagd.catalog import Catalog, Entry
from dagd.cgroups import kill_recorded
from dagd.engine import reattach
from dagd.engine.environment import RunOptions, RunSetupError
from dagd.engine.events import Event, RunFinished
from dagd.engine.local import new_run_id, reattach_from, resume_from
from dagd.engine.process import end_run_group
from dagd.engine.run import Run
from dagd.engine.status import RunStatus
from dagd.errors import CONFLICT, FORBIDDEN, INVALID, NOT_FOUND, STORAGE_FULL, UNAUTHORIZED, ServiceError, checked
from dagd.masking import masked_slice
from dagd.reads import PARSING, Reads
from dagd.slots import Slots
from dagd.spec import Dag, SpecError, load_file
from dagd.store import logfiles
from dagd.store.db import LEASE_SEC, Store, StoreUnreachable

log = logging.getLogger("dagd.service")


@dataclass
class DagOverview:
    name: str
    entry: Entry
    last: dict[str, Any] | None  # the latest run row, without steps
    suspended: bool
    next_start: str | None
    running: int = 0  # runs of it in progress
    queued: int = 0  # runs of it waiting in the queue


@dataclass
class _Batch:
    events: list[Event] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    errors: dict[int, Exception] = field(default_factory=dict)  # by index in events


@dataclass
class Active:
    run: Run
    scope: trio.CancelScope
    dag: str
    done: trio.Event = field(default_factory=trio.Event)


class Service(Reads, Slots):
    def __init__(
        self,
        catalog: Catalog,
        store: Store,
        state_dir: str,
        *,
        max_concurrent_runs: int = 8,
        default_tz: dt.tzinfo | None = None,
        default_shell: str | None = None,
        rule: Rule | None = None,
        node: tuple[str, dict[str, str]] = ("", {}),
    ) -> None:
        self.rule = rule or Rule()  # who may drive this daemon, over any transport
        self.node_id, self.node_labels = node
        store.node = self.node_id or None  # the runs this dagd starts are its node's
        self.catalog = catalog
        self.store = store
        self.state_dir = state_dir
        self.max_concurrent_runs = max_concurrent_runs
        self.default_tz = default_tz or dt.datetime.now().astimezone().tzinfo or dt.UTC
        self.default_shell = default_shell
        self.active: dict[str, Active] = {}
        self.nursery: trio.Nursery | None = None
        self.wakeup = trio.Event()  # poked when the queue or the catalog changes
        self.changed = trio.Event()  # poked when running or queued counts may have changed
        self.poked = trio.Event()  # another node NOTIFYed: the heartbeat's work now, not at its time
        self.reached_since: float | None = None  # since when every heartbeat reached the store
        self.degraded: str | None = None  # why dagd cannot do all it should right now
        self.unrecorded: list[RunFinished] = []  # run ends the store could not take yet
        self.inline_dags: dict[str, Dag] = {}  # queued inline runs' DAGs, by spec file: parsed once
        # store calls at once from the daemon: one for SQLite (one connection, one writer); as
        # many as the pool has connections for PostgreSQL
        self.lock: trio.Lock | trio.CapacityLimiter = (
            trio.CapacityLimiter(store.pool.size) if store.pool is not None else trio.Lock()
        )
        self.subscribers: list[trio.MemorySendChannel[dict[str, Any]]] = []
        self.started_at = time.time()
        self.before_reload: Callable[[], None] = lambda: None
        self.after_reload: Callable[[], None] = lambda: None
        self._batch: _Batch | None = None  # events waiting for the group commit
        self._writing = False
        self.keep_runs = False  # on_restart: reattach — runs outlive this process, re-attached by the next
        self.next_stop_keeps: bool | None = None  # what the coming SIGTERM is (daemon.prepare_stop): None unsaid

    # ---- store access from the event loop ----------------------------------------------------

    async def _store_call(self, fn: Any, *args: Any) -> Any:
        """A store call in a worker thread. While another process holds the database locked it
        is tried again with a growing pause (events wait in memory meanwhile: none is lost), and
        dagd reports itself degraded until the lock clears."""
        pause, waited = 0.05, False
        while True:
            try:
                async with self.lock:
                    result = await trio.to_thread.run_sync(fn, *args)
            except StoreUnreachable as exc:
                if self.degraded is None or not self.degraded.startswith("the store cannot be reached"):
                    log.warning("the store cannot be reached: waiting for it (%s)", exc)
                self.degraded = f"the store cannot be reached ({exc})"
                self.reached_since = None  # no take-over of other nodes' runs right after an outage
                self.changed.set()
                waited = True
                await trio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            except sqlite3.OperationalError as exc:
                if _disk_full(exc):
                    self.degraded = "the history cannot be written: the disk is full"
                    self.changed.set()
                    raise ServiceError(STORAGE_FULL, f"disk full: dagd cannot write its history ({exc})") from exc
                if not _busy(exc):
                    raise
                if self.degraded is None:
                    log.warning("the history database is locked by another process: waiting for it (%s)", exc)
                self.degraded = f"the history database is locked by another process ({exc})"
                self.changed.set()
                waited = True
                await trio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            if self.degraded == "the history cannot be written: the disk is full" and not self.unrecorded:
                self.degraded = None  # (any successful call: reads succeed on a full disk too)
                self.changed.set()
            if waited and self.degraded is not None and self.degraded.startswith("the history database is locked"):
                log.warning("the history database is writable again")  # (reads go on while it is locked)
                self.degraded = None
                self.changed.set()
            if waited and self.degraded is not None and self.degraded.startswith("the store cannot be reached"):
                log.warning("the store is reachable again")
                self.degraded = None
                self.changed.set()
            return result

    async def emit(self, event: Event) -> None:
        """Record the event (committed before anyone hears of it), then tell the subscribers.

        Group commit: events emitted while a write is in flight are written together in the
        next transaction, so a thousand runs starting at once cost a handful of commits."""
        if self._batch is None:
            self._batch = _Batch()
        batch = self._batch
        index = len(batch.events)
        batch.events.append(event)
        if not self._writing:
            self._writing = True
            try:
                with trio.CancelScope(shield=True):  # waiters depend on this writer finishing
                    while self._batch is not None:
                        current, self._batch = self._batch, None
                        await self._write_batch(current)
                        current.done.set()
            finally:
                self._writing = False
        await batch.done.wait()
        if index in batch.errors:
            raise batch.errors[index]
        doc = {
            "type": type(event).__name__,
            **{k: (v.value if hasattr(v, "value") else v) for k, v in vars(event).items()},
        }
        if "dag" not in doc and event.run_id in self.active:  # StepChanged: say whose run it is
            doc["dag"] = self.active[event.run_id].dag
        for ch in list(self.subscribers):
            try:
                ch.send_nowait(doc)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.subscribers.remove(ch)
                ch.close()  # the reader sees the end of its stream and is told it fell behind

    async def quiesce(self) -> None:
        """Hold the store between two transactions for good (dagd exits next, leaving its runs):
        an event batch on its way lands first, then every store slot is taken and kept."""
        while self._writing:
            await trio.sleep(0.005)
        if isinstance(self.lock, trio.Lock):
            await self.lock.acquire()
        else:
            for _ in range(int(self.lock.total_tokens)):
                await self.lock.acquire_on_behalf_of(object())

    async def _write_batch(self, batch: _Batch) -> None:
        """One transaction for the batch; if it fails, each event alone, so an event that cannot
        be written fails its own run and no other."""
        try:
            await self._store_call(self.store.record_many, batch.events)
            return
        except Exception as exc:
            if len(batch.events) == 1:
                batch.errors[0] = exc
                return
        for i, event in enumerate(batch.events):
            try:
                await self._store_call(self.store.record_many, [event])
            except Exception as exc:
                batch.errors[i] = exc

    # ---- DAGs --------------------------------------------------------------------------------

    def dag(self, name: str) -> Dag:
        entry = self.catalog.find(checked(names.dag_name, name))
        if entry is not None and entry.conflict:
            raise ServiceError(CONFLICT, entry.conflict)
        if entry is None or entry.dag is None:
            raise ServiceError(NOT_FOUND, f"no DAG named {name!r}" + (f" loads: {entry.error}" if entry else ""))
        return entry.dag

    async def overview(self) -> list[DagOverview]:
        """Every DAG with its latest run, next start, suspension, running and queued counts:
        three queries in all."""
        suspended = await self._store_call(self.store.suspended)
        last_runs = await self._store_call(self.store.last_runs)
        running = Counter(a.dag for a in self.active.values())
        queued = Counter(q["dag"] for q in await self._store_call(self.store.queued))
        now = dt.datetime.now(dt.UTC)
        out = []
        for name, entry in sorted(self.catalog.dags().items()):
            nxt = scheduler.next_due(entry.usable.schedule, now, self.default_tz) if entry.usable else None
            next_start = nxt.at.isoformat() if nxt and nxt.action == "start" else None
            out.append(
                DagOverview(
                    name, entry, last_runs.get(name), name in suspended, next_start, running[name], queued[name]
                )
            )
        return out

    async def list_dags(self) -> list[dict[str, Any]]:
        out = []
        for o in await self.overview():
            name, entry, last = o.name, o.entry, o.last
            out.append(
                {
                    "name": name,
                    "file": entry.file,
                    "schedule": [e.expression or e.at for e in entry.dag.schedule.start] if entry.dag else [],
                    "next_fire": o.next_start,
                    "last_status": last["status"] if last else None,
                    "last_run": last["id"] if last else None,
                    "suspended": o.suspended,
                    "error": entry.problem,
                    "running": o.running,
                }
            )
        return out

    async def refresh(self) -> list[str]:
        """Look at the DAGs folder (stat and parse in a worker thread), apply what changed on the
        loop, and log every file that does not load or clashes by name."""
        scan = await trio.to_thread.run_sync(self.catalog.scan, self.catalog.stamps(), limiter=PARSING)
        changed = self.catalog.apply(scan)
        if changed:
            problems = self.catalog.problems()
            for path in changed:
                entry = self.catalog.entries.get(path)
                if entry is None:
                    log.info("DAG file removed: %s", path)
                elif entry.error:
                    log.error("DAG file %s does not load (keeping its last good version): %s", path, entry.error)
                else:
                    log.info("DAG file loaded: %s", path)
            for path, problem in problems.items():
                if self.catalog.entries[path].conflict:
                    log.error("DAG file %s: %s", path, problem)
            self.wakeup.set()
        return changed

    async def reload(self) -> dict[str, Any]:
        self.before_reload()
        changed = await self.refresh()
        self.wakeup.set()
        self.after_reload()
        return {
            "changed": changed,
            "dags": len(self.catalog.entries),
            "errors": self.catalog.problems(),
        }

    async def suspend(self, name: str, value: bool) -> dict[str, Any]:
        name = self.dag(name).name
        await self._store_call(self.store.set_suspended, name, value)
        self.wakeup.set()
        return {"name": name, "suspended": value}

    # ---- runs --------------------------------------------------------------------------------

    async def enqueue(
        self,
        name: str,
        params: list[str],
        *,
        run_id: str | None = None,
        trigger: str = "manual",
        schedule_time: str | None = None,
        parent_run: str | None = None,
    ) -> str:
        dag = self.dag(name)
        rid = checked(names.run_id, run_id) if run_id is not None else new_run_id()
        if parent_run is not None and await self._store_call(self.store.run_by_id, parent_run) is None:
            log.info("run %s of %s: its parent run %s is not in dagd's history; not linked", rid, dag.name, parent_run)
            parent_run = None  # e.g. `dagu start` in a step of a run another dagd (or dagctl run) holds
        await self._store_call(
            lambda: self.store.enqueue(rid, dag.name, dag.file, params, trigger, schedule_time, parent_run=parent_run)
        )
        faults.hit("queued")
        self.wakeup.set()
        self.changed.set()
        return rid

    async def wait_finished(self, name: str, run_id: str, timeout: float) -> dict[str, Any] | None:
        """The run's document once it has finished, or None when `timeout` seconds pass first."""
        with trio.move_on_after(timeout):
            while True:
                doc = await self._store_call(self.store.run, name, run_id)
                if doc is not None and RunStatus(doc["status"]).finished:
                    return dict(doc)
                active = self.active.get(run_id)
                if active is not None:
                    await active.done.wait()
                else:
                    await trio.sleep(0.1)
        return None

    async def dequeue(self, name: str, run_id: str) -> dict[str, Any]:
        checked(names.run_id, run_id)
        if not await self._store_call(lambda: self.store.dequeue(run_id, cancelled=True)):
            raise ServiceError(NOT_FOUND, f"run {run_id} of {name} is not queued")
        self.changed.set()
        return {"run_id": run_id, "status": "aborted"}

    async def stop(self, name: str, run_id: str | None) -> dict[str, Any]:
        checked(names.dag_name, name)
        if run_id is not None:
            checked(names.run_id, run_id)
        targets = [rid for rid, a in self.active.items() if a.dag == name and (run_id is None or rid == run_id)]
        if not targets and run_id is not None:  # another node's run: asked through the store
            doc = await self._store_call(self.store.run_by_id, run_id)
            if doc is not None and doc["dag"] == name:
                node = await self._store_call(self.store.request_stop, run_id)
                if node is not None:
                    return {"stopped": [run_id], "node": node}
        if not targets:
            raise ServiceError(NOT_FOUND, f"no running run of {name}" + (f" with id {run_id}" if run_id else ""))
        for rid in targets:
            active = self.active[rid]
            active.run.abort()
            active.scope.cancel()
        for rid in targets:
            if rid in self.active:
                await self.active[rid].done.wait()
        return {"stopped": targets}

    async def retry(self, name: str, run_id: str) -> str:
        doc = await self.run_doc(name, run_id)
        if doc["status"] in ("running", "queued"):
            raise ServiceError(CONFLICT, f"run {run_id} is still {doc['status']}")
        try:
            dag = load_file(doc["file"]).dag
        except SpecError as exc:
            raise ServiceError(INVALID, str(exc)) from None
        overrides, kept = resume_from(doc)
        self._spawn(dag, RunOptions(run_id, self.state_dir, overrides, "retry", default_shell=self.default_shell), kept)
        return run_id

    def reattach(self, dag: Dag, doc: dict[str, Any]) -> None:
        """Go on with a run a previous dagd left running (on_restart: reattach): what it finished
        stays, each step in flight is adopted where it is (or recorded lost), the rest follows."""
        overrides, done, inflight, handlers_done = reattach_from(doc)
        opts = RunOptions(
            doc["id"],
            self.state_dir,
            overrides,
            doc.get("trigger") or "manual",
            default_shell=self.default_shell,
            resumed_at=float(doc["started_at"]) if doc.get("started_at") else time.time(),
            cgroup=doc.get("cgroup"),
        )
        log.warning(
            "run %s of %s re-attached after a restart: %d step(s) done, %d in flight",
            doc["id"],
            dag.name,
            len(done),
            len(inflight),
        )
        self._spawn(dag, opts, done, inflight, handlers_done)

    def prepare_stop(self, keep_runs: bool) -> dict[str, Any]:
        """Say what the coming SIGTERM is: a restart (runs go on and the next dagd re-attaches
        them) or a stop (runs are aborted). Sent by dagd.service's ExecStop= (`dagctl
        prepare-stop --systemd-unit`), which asks systemd whether its job is a restart."""
        self.next_stop_keeps = keep_runs
        kept = keep_runs and self.keep_runs
        return {"keep_runs": kept, "running": len(self.active), "on_restart_reattach": self.keep_runs}

    def _spawn(
        self,
        dag: Dag,
        opts: RunOptions,
        resume: Any = None,
        inflight: Any = None,
        handlers_done: Any = (),
    ) -> None:
        assert self.nursery is not None
        if self.store.postgres:  # step state (state.*) is the store's, shared by every node
            opts = dataclasses.replace(opts, shared_store=self.store.path)
        if self.keep_runs:
            opts = dataclasses.replace(opts, keep=True)
        run = Run(dag, opts, self.emit, resume=resume, inflight=inflight, handlers_done=handlers_done)
        scope = trio.CancelScope()
        active = Active(run, scope, dag.name)
        self.active[opts.run_id] = active
        self.changed.set()

        async def go() -> None:
            try:
                await contained()
            except Exception as exc:  # a run's fault is that run's, never the daemon's
                cause = _first_cause(exc)
                if _disk_full(cause):
                    reason = f"disk full: dagd could not write ({cause})"
                    log.error("run %s of %s failed: %s", opts.run_id, dag.name, reason)
                else:
                    reason = f"dagd error: {type(cause).__name__}: {cause}"
                    log.error("run %s of %s failed inside dagd: %s", opts.run_id, dag.name, reason, exc_info=exc)
                with trio.CancelScope(shield=True):
                    await self._record_finish(opts.run_id, dag.name, reason)

        async def contained() -> None:
            try:
                with scope:
                    try:
                        await run.prepare()
                        await run.execute()
                    except (RunSetupError, ValueError) as exc:
                        run.status = RunStatus.FAILED  # nothing ran: no abort path, no handlers
                        if opts.resumed_at and opts.cgroup:  # re-attached, it cannot go on: what runs of it ends
                            await trio.to_thread.run_sync(kill_recorded, opts.cgroup)
                        await self.emit(RunFinished(opts.run_id, dag.name, RunStatus.FAILED, time.time(), str(exc)))
                if not run.status.finished:  # stopped from outside: record it
                    run.status = RunStatus.ABORTED
                    with trio.CancelScope(shield=True):
                        await run.after_abort()
                        await self.emit(RunFinished(opts.run_id, dag.name, RunStatus.ABORTED, time.time(), "stopped"))
            finally:
                self.active.pop(opts.run_id, None)
                active.done.set()
                with trio.CancelScope(shield=True):
                    if run.cgroup is not None:  # however the run ended, nothing it started stays
                        await end_run_group(run.cgroup, 5.0)
                    if opts.keep:  # its attempt records: nothing is left to re-attach
                        reattach.unregister(self.state_dir, opts.run_id, run.log_dir)
                    if self.store.postgres:
                        await self._share_logs(opts.run_id, list(run.secret_values))
                    try:
                        await self._prune(dag)
                    except Exception as exc:  # retention can wait for the next run; the run is recorded
                        log.warning("retention of %s skipped: %s", dag.name, _first_cause(exc))
                self.wakeup.set()
                self.changed.set()

        self.nursery.start_soon(go)

    async def _share_logs(self, run_id: str, secrets: list[str]) -> None:
        """A finished run's step logs into the store (their last 4 MiB each, secrets masked,
        compressed), so every node of a PostgreSQL store can show them. Best effort: a run is
        never failed for it."""
        try:
            doc = await self._store_call(self.store.run_by_id, run_id)
            steps = await self._store_call(self.store.run, doc["dag"], run_id) if doc else None
            paths = [p for s in (steps or {}).get("steps", []) for p in (s["stdout_path"], s["stderr_path"]) if p]

            def read() -> list[tuple[str, bytes, int]]:
                out = []
                for path in dict.fromkeys(paths):
                    try:
                        size = os.path.getsize(path)
                    except OSError:
                        continue
                    raw = logfiles.read_tail(path, logfiles.TAIL)
                    masked, _ = masked_slice(raw, secrets, final=True)
                    out.append((path, zlib.compress(masked, 6), size))
                return out

            logs = await trio.to_thread.run_sync(read)
            if logs:
                await self._store_call(self.store.put_logs, run_id, logs)
        except Exception as exc:
            log.warning("run %s: its logs are not shared with the other nodes: %s", run_id, _first_cause(exc))

    async def _prune(self, dag: Dag) -> None:
        dirs = await self._store_call(self.store.prune, dag.name, dag.hist_retention_days, dag.hist_retention_runs)
        await self._remove_run_folders(dag.name, dirs)

    async def _remove_run_folders(self, name: str, dirs: list[str]) -> None:
        # only run folders dagd made: a classic DAG's working directory is its own folder
        roots = [os.path.join(self.state_dir, "logs", name), os.path.join(self.state_dir, "work", name)]
        mine = [d for d in dirs if any(os.path.dirname(os.path.normpath(d)) == r for r in roots)]
        await trio.to_thread.run_sync(_remove_folders, mine)

    async def delete_run(self, name: str, run_id: str) -> None:
        """Forget a finished run: its record, steps, logs and work folder."""
        checked(names.dag_name, name)
        checked(names.run_id, run_id)
        try:
            dirs = await self._store_call(self.store.delete_run, name, run_id)
        except ValueError as exc:
            raise ServiceError(CONFLICT, str(exc)) from None
        if dirs is None:
            raise ServiceError(NOT_FOUND, f"no run {run_id} of {name}")
        await self._remove_run_folders(name, dirs)
        self.changed.set()

    # ---- webhooks ----------------------------------------------------------------------------

    async def webhook(self, name: str) -> dict[str, Any]:
        dag = self.dag(name)
        row = await self._store_call(self.store.webhook, dag.name)
        if row is None:
            raise ServiceError(NOT_FOUND, f"{dag.name} has no webhook")
        return dict(row)

    async def webhooks(self) -> list[dict[str, Any]]:
        return list(await self._store_call(self.store.webhooks))

    async def add_webhook(self, name: str, by: str) -> tuple[dict[str, Any], str]:
        """A new webhook for the DAG and its token (the only time it is shown)."""
        import uuid

        dag = self.dag(name)
        token = webhooks.new_token()
        added = await self._store_call(
            self.store.add_webhook,
            dag.name,
            str(uuid.uuid4()),
            webhooks.digest(token),
            webhooks.shown_prefix(token),
            by,
        )
        if not added:
            raise ServiceError(CONFLICT, f"{dag.name} has a webhook already (regenerate its token instead)")
        return await self.webhook(dag.name), token

    async def delete_webhook(self, name: str) -> None:
        dag = self.dag(name)
        if not await self._store_call(self.store.delete_webhook, dag.name):
            raise ServiceError(NOT_FOUND, f"{dag.name} has no webhook")

    async def change_webhook(self, name: str, **fields: Any) -> dict[str, Any]:
        dag = self.dag(name)
        if not await self._store_call(lambda: self.store.update_webhook(dag.name, **fields)):
            raise ServiceError(NOT_FOUND, f"{dag.name} has no webhook")
        return await self.webhook(dag.name)

    async def regenerate_webhook(self, name: str) -> tuple[dict[str, Any], str]:
        token = webhooks.new_token()
        row = await self.change_webhook(
            name, token_digest=webhooks.digest(token), token_prefix=webhooks.shown_prefix(token)
        )
        return row, token

    async def set_webhook_hmac(
        self, name: str, mode: str, enforcement: str | None, *, new_secret: bool
    ) -> dict[str, Any]:
        """token_and_hmac or hmac_only; a new secret when asked (or when there is none)."""
        if mode not in ("token_and_hmac", "hmac_only"):
            raise ServiceError(INVALID, "authMode must be token_and_hmac or hmac_only")
        if enforcement is not None and enforcement not in webhooks.HMAC_MODES:
            raise ServiceError(INVALID, "enforcementMode must be strict or observe")
        if mode == "hmac_only" and enforcement == "observe":
            raise ServiceError(INVALID, "hmac_only is always strict: with observe anyone could trigger the DAG")
        row = await self.webhook(name)
        fields: dict[str, Any] = {"auth_mode": mode, "hmac_mode": enforcement or row["hmac_mode"] or "strict"}
        if mode == "hmac_only":
            fields["hmac_mode"] = "strict"
        if new_secret or not row["hmac_secret"]:
            fields.update(hmac_secret=webhooks.new_hmac_secret(), hmac_updated_at=time.time())
        return await self.change_webhook(name, **fields)

    async def trigger_webhook(
        self,
        name: str,
        *,
        authorization: str | None,
        signature: str | None,
        profile: str | None,
        raw: bytes,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> tuple[str, str]:
        """Check a webhook call and queue its run: (DAG name, run id). No DAG and a DAG without a
        webhook get the same answer: an anonymous caller learns nothing about the DAGs."""
        nothing = ServiceError(NOT_FOUND, f"no webhook for {name}")
        entry = self.catalog.find(name)
        dag = entry.usable if entry is not None else None
        if dag is None:
            raise nothing
        row = await self._store_call(self.store.webhook, dag.name)
        if row is None:
            raise nothing
        verdict = webhooks.check(row, authorization, signature, raw)
        if isinstance(verdict, webhooks.Refusal):
            raise ServiceError(UNAUTHORIZED if verdict.status == 401 else FORBIDDEN, verdict.message)
        if verdict is not None:
            log.warning("%s: %s", dag.name, verdict)
        if profile:
            raise ServiceError(FORBIDDEN, "dagd has no runtime profiles: X-Dagu-Profile cannot select one")
        payload = body.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise ServiceError(INVALID, "payload must be a JSON object")
        rid = body.get("dagRunId")
        rid = checked(names.run_id, rid) if rid is not None else new_run_id()
        spec = dag.extra.get("webhook")
        forward = spec.get("forward_headers") if isinstance(spec, Mapping) else None
        env = webhooks.payload_env(body, headers, [str(h) for h in forward or []])
        declared = {p.name for p in dag.params if p.name}
        params = [f"{k}={v}" for k, v in env.items() if k in declared]  # a declared name is a normal param
        env = {k: v for k, v in env.items() if k not in declared}
        try:
            await self._store_call(
                lambda: self.store.enqueue(rid, dag.name, dag.file, params, "webhook", None, env=env, new_only=True)
            )
        except sqlite3.IntegrityError:
            raise ServiceError(CONFLICT, f"a run with id {rid} exists already") from None
        await self._store_call(self.store.webhook_used, dag.name)
        self.wakeup.set()
        self.changed.set()
        return dag.name, rid

    async def _record_finish(self, run_id: str, dag: str, reason: str) -> None:
        """Record a run failed; when the store cannot take it now (a full disk), keep it and
        write it as soon as it can — the run is never left `running` while dagd lives."""
        try:
            await self.emit(RunFinished(run_id, dag, RunStatus.FAILED, time.time(), reason))
            return
        except Exception as exc:
            log.error("run %s: cannot record its end yet (%s): trying again every 2 s", run_id, _first_cause(exc))
        self.unrecorded.append(RunFinished(run_id, dag, RunStatus.FAILED, time.time(), reason))
        self.degraded = (
            f"{len(self.unrecorded)} run ends wait to be written: the history cannot be written (disk full?)"
        )
        self.changed.set()
        if len(self.unrecorded) == 1:
            assert self.nursery is not None
            self.nursery.start_soon(self._record_later)

    async def _record_later(self) -> None:
        while self.unrecorded:
            await trio.sleep(2.0)
            try:
                await self._store_call(self.store.record_many, list(self.unrecorded))
            except Exception:
                continue
            log.warning("the ends of %d runs were recorded late (the history is writable again)", len(self.unrecorded))
            self.unrecorded.clear()
            self.degraded = None
            self.changed.set()

    def _is_inline(self, file: str) -> bool:
        return file.startswith(os.path.join(self.state_dir, "logs") + os.sep) and f"{os.sep}inline{os.sep}" in file

    async def _inline_dag(self, item: dict[str, Any]) -> Dag | None:
        """The DAG of a queued inline run, from the spec kept in its log folder; a spec that no
        longer loads (removed, or dagd's rules changed) ends the run failed, saying why."""
        cached = self.inline_dags.get(item["file"])
        if cached is not None:  # (waiting for a slot: not parsed again at every dispatch)
            return cached
        try:
            dag = (await trio.to_thread.run_sync(load_file, item["file"], limiter=PARSING)).dag
            self.inline_dags[item["file"]] = dag
            return dag
        except (SpecError, OSError) as exc:
            await self._store_call(self.store.dequeue, item["run_id"])
            await self._record_finish(item["run_id"], item["dag"], f"its inline spec cannot be loaded: {exc}")
            return None

    async def run_inline(
        self, spec: str, name: str | None, params: list[str], *, run_id: str | None, singleton: bool
    ) -> str:
        """Queue a run of a DAG sent as YAML text (Dagu's POST /dag-runs): the spec is checked as
        a DAG file would be and kept in the run's log folder (it goes with the run)."""
        from dagd.spec import load_text

        fname = checked(names.dag_name, name) if name else "inline"
        rid = checked(names.run_id, run_id) if run_id is not None else new_run_id()
        try:
            dag = (
                await trio.to_thread.run_sync(
                    lambda: load_text(spec, os.path.join(self.state_dir, "inline", f"{fname}.yaml")), limiter=PARSING
                )
            ).dag
        except SpecError as exc:
            raise ServiceError(INVALID, "; ".join(d.render() for d in exc.diagnostics)) from None
        if singleton and (any(a.dag == dag.name for a in self.active.values()) or await self.queue(dag.name)):
            raise ServiceError(CONFLICT, f"{dag.name} is already running or queued (singleton)")
        if await self._store_call(self.store.run_by_id, rid) is not None:
            raise ServiceError(CONFLICT, f"a run with id {rid} exists already")
        folder = os.path.join(self.state_dir, "logs", dag.name, rid, "inline")
        path = os.path.join(folder, f"{fname}.yaml")

        def keep() -> None:
            os.makedirs(folder, exist_ok=True)
            with open(path, "x", encoding="utf-8") as fh:
                fh.write(spec)

        try:
            await trio.to_thread.run_sync(keep)
        except OSError as exc:
            raise ServiceError(
                STORAGE_FULL if exc.errno == errno.ENOSPC else CONFLICT, f"cannot keep the spec: {exc}"
            ) from None
        try:
            await self._store_call(
                lambda: self.store.enqueue(rid, dag.name, path, params, "manual", None, new_only=True)
            )
        except sqlite3.IntegrityError:
            raise ServiceError(CONFLICT, f"a run with id {rid} exists already") from None
        self.wakeup.set()
        self.changed.set()
        return rid

    async def dispatch(self) -> None:
        """Start queued runs, oldest first, as admission allows."""
        running: dict[str, int] = {}
        for a in self.active.values():
            running[a.dag] = running.get(a.dag, 0) + 1
        for item in await self._store_call(self.store.queued):
            if len(self.active) >= self.max_concurrent_runs:
                return
            if self._is_inline(item["file"]):  # a spec sent with the run (POST /dag-runs): its own file
                dag = await self._inline_dag(item)
            else:
                entry = self.catalog.find(item["dag"])
                dag = entry.usable if entry else None
            if dag is None:
                continue
            if running.get(dag.name, 0) >= max(1, dag.max_active_runs):
                continue
            if not self._selects_me(dag):
                continue  # for a node whose labels match its worker_selector
            taken = functools.partial(self.store.take, item["run_id"], dag.name, max(1, dag.max_active_runs))
            if not await self._store_call(taken):
                continue  # taken meanwhile (another node, a dequeue), or the DAG's runs are going elsewhere
            faults.hit("taken")  # out of the queue, not started yet
            running[dag.name] = running.get(dag.name, 0) + 1
            self.inline_dags.pop(item["file"], None)
            params = item["params"]
            self._spawn(
                dag,
                RunOptions(
                    item["run_id"],
                    self.state_dir,
                    params,
                    item["trigger"],
                    item["schedule_time"],
                    self.default_shell,
                    parent_run=item["parent_run"],
                    env=item["env"],
                ),
            )

    async def beat(self) -> None:
        """This node's heartbeat and its runs' leases (dagd.daemon.heartbeat calls it)."""
        if self.node_id:
            await self._store_call(
                self.store.heartbeat,
                self.node_id,
                socket.gethostname(),
                os.getpid(),
                self.node_labels,
                self.max_concurrent_runs,
                self.started_at,
            )

    async def maintain(self, on_restart: str = "fail") -> None:
        """One heartbeat's work between nodes: this node's heartbeat and leases; its runs another
        node asked to stop (stopped); its runs it no longer holds — its lease ran out and another
        node took the run over — ended at once, their late results not recorded; and the runs of
        nodes whose lease ran out: recorded failed (and queued again with on_restart: requeue) —
        only once this node has itself reached the store for a whole lease: after an outage of
        the database every node renews before any takes another's runs over."""
        try:
            await self.beat()
        except BaseException:
            self.reached_since = None
            raise
        if self.reached_since is None:
            self.reached_since = time.monotonic()
        if self.store.node is not None and await self._store_call(self.store.has_queued):
            self.wakeup.set()  # runs other nodes queued: this one may take some (a poll each beat)
        for rid in await self._store_call(self.store.stop_requests) if self.store.postgres else ():
            if rid in self.active:
                log.info("run %s: stopped (asked through the store by another node)", rid)
                self._end_local(rid)
        for rid in list(self.active) if self.store.postgres else ():  # (only nodes of a shared store lose runs)
            if not await self._store_call(self.store.still_mine, rid):
                log.error("run %s: this node lost its lease (another node took the run over): ending it", rid)
                self._end_local(rid)
        settled = self.reached_since is not None and time.monotonic() - self.reached_since >= LEASE_SEC
        for run in await self._store_call(self.store.expired_runs) if self.store.postgres and settled else ():
            why = f"its node {run['node']} stopped renewing its lease (killed, cut off or frozen)"
            taken = functools.partial(self.store.take_over, run["id"], why, requeue=on_restart == "requeue")
            new_id = await self._store_call(taken)
            if new_id is not None:
                log.warning("run %s of %s: recorded failed: %s", run["id"], run["dag"], why)
                if new_id:
                    log.warning("run %s re-queued as %s (on_restart: requeue)", run["id"], new_id)
                    self.wakeup.set()
                self.changed.set()

    def poke(self) -> None:
        """Another node queued a run or asked for a stop: look now."""
        self.wakeup.set()
        self.poked.set()

    def _end_local(self, rid: str) -> None:
        active = self.active.get(rid)
        if active is not None:
            active.run.abort()
            active.scope.cancel()

    def _selects_me(self, dag: Dag) -> bool:
        """A DAG's worker_selector (Dagu's key: labels a node must have) among the nodes of a
        PostgreSQL store; on one machine (SQLite) it has no effect, as said at each run."""
        selector = dag.extra.get("worker_selector")
        if not self.store.postgres or not isinstance(selector, Mapping) or not selector:
            return True
        return all(self.node_labels.get(str(k)) == str(v) for k, v in selector.items())

    async def running_elsewhere(self, name: str) -> bool:
        """Whether another node of the store runs `name` now (overlap policies span nodes)."""
        if self.store.node is None:
            return False
        return bool(await self._store_call(self.store.running_on_others, name))

    async def nodes(self) -> list[dict[str, Any]]:
        """The nodes of this store: each one's labels, capacity, last heartbeat and running runs."""
        rows: list[dict[str, Any]] = await self._store_call(self.store.nodes)
        return rows

    async def system(self, fires: int = 10) -> dict[str, Any]:
        """What the System page shows: this dagd (version, uptime, health), its store (where,
        size), its scheduler (the next `fires` starts across DAGs, suspended DAGs), the DAG files
        that do not load, and its limits."""
        from dagd import __version__

        overview = await self.overview()
        upcoming = sorted((o.next_start, o.name) for o in overview if o.next_start and not o.suspended)
        return self.status() | {
            "version": __version__,
            "health": "unhealthy" if self.degraded else "healthy",
            "reason": self.degraded,
            "node": self.node_id,
            "store": {
                "kind": "postgresql" if self.store.postgres else "sqlite",
                "where": self.store.where,
                "size_bytes": await self._store_call(self.store.size),
            },
            "scheduled": sum(1 for o in overview if o.entry.usable and o.entry.usable.schedule.start),
            "suspended": sorted(o.name for o in overview if o.suspended),
            "next_fires": [{"dag": name, "at": at} for at, name in upcoming[:fires]],
            "problems": [{"file": f, "error": e} for f, e in sorted(self.catalog.problems().items())],
            "max_concurrent_runs": self.max_concurrent_runs,
            "queued": sum(o.queued for o in overview),
        }

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "uptime_sec": round(time.time() - self.started_at, 1),
            "dags": len(self.catalog.entries),
            "running": len(self.active),
            "dags_folder": self.catalog.folder,
            "state_dir": self.state_dir,
            "containment": cgroups.current().summary,
        }


def _first_cause(exc: BaseException) -> BaseException:
    """The first real exception inside trio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "disk is full" in str(exc).lower()


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _remove_folders(paths: list[str]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
