"""What the service answers about runs, logs and files: reads of the store and the log files,
each a typed method (transports never reach the store themselves), blocking work in threads."""

from __future__ import annotations

import os
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from dagd import names
from dagd.catalog import Catalog
from dagd.errors import INVALID, NOT_FOUND, ServiceError, checked
from dagd.masking import masked_slice
from dagd.spec import SpecError, load_file
from dagd.store import logfiles
from dagd.store.db import Store

# CPU-bound parsing (YAML specs) holds the GIL: one such thread at a time leaves the event loop
# its share; more would make every request wait its turn behind them.
PARSING = trio.CapacityLimiter(1)


class Reads:
    """The read side of Service (a mixin: Service owns the store, the catalog and the runs)."""

    store: Store
    catalog: Catalog
    active: dict[str, Any]
    unrecorded: list[Any]  # RunFinished events the store could not take yet
    _store_call: Callable[..., Awaitable[Any]]

    def secrets(self, run_id: str) -> list[str]:
        """The secret values of a run in progress (a finished run's logs are masked on disk)."""
        active = self.active.get(run_id)
        return list(active.run.secret_values) if active is not None else []

    async def _stored(self, run_id: str, path: str | None) -> bytes | None:
        """A log this node does not have — its run ran on another node of the store — as that
        node stored it when the run ended (PostgreSQL); None when there is none."""
        if not path or not self.store.postgres or await trio.to_thread.run_sync(os.path.exists, path):
            return None
        stored = await self._store_call(self.store.stored_log, run_id, path)
        return None if stored is None else zlib.decompress(stored[0])

    async def log_text(self, run_id: str, path: str | None, limit: int = logfiles.TAIL) -> str:
        """A step log's last `limit` bytes, secrets masked."""
        raw = await trio.to_thread.run_sync(logfiles.read_tail, path, limit)
        if not raw:
            raw = (await self._stored(run_id, path) or b"")[-limit:]
        secrets = self.secrets(run_id)
        masked, _ = masked_slice(raw, secrets, final=not secrets)
        return masked.decode("utf-8", errors="replace")

    async def log_chunk(self, run_id: str, path: str | None, pos: int) -> tuple[str, int]:
        """What a growing step log gained since byte `pos`, secrets masked; (text, next pos)."""
        raw = await trio.to_thread.run_sync(logfiles.read_from, path, pos)
        if not raw:
            raw = (await self._stored(run_id, path) or b"")[pos : pos + logfiles.CHUNK]
        secrets = self.secrets(run_id)
        masked, used = masked_slice(raw, secrets, final=not secrets)
        return masked.decode("utf-8", errors="replace"), pos + used

    async def run_doc(self, name: str, run_id: str | None = None) -> dict[str, Any]:
        """A run's document (the latest run of `name` without a run id); NOT_FOUND if none."""
        checked(names.dag_name, name)
        if run_id == "latest":  # Dagu's schema: "ID of the DAG-run or 'latest'"
            run_id = None
        if run_id is not None:
            checked(names.run_id, run_id)
        doc = await self._store_call(self.store.run, name, run_id)
        if doc is None:
            raise ServiceError(NOT_FOUND, f"no run {run_id} of {name}" if run_id else f"no run of {name} yet")
        return self._with_pending(dict(doc))

    async def history(
        self, name: str | None, limit: int, status: str | None, run_id: str | None
    ) -> list[dict[str, Any]]:
        if name is not None:
            checked(names.dag_name, name)
        if run_id is not None:
            checked(names.run_id, run_id)
        rows: list[dict[str, Any]] = await self._store_call(self.store.history, name, limit, status, run_id)
        return [self._with_pending(r) for r in rows]

    async def step_logs(
        self, name: str, run_id: str | None, step: str | None, stream: str, offset: int | None
    ) -> dict[str, Any]:
        """Each step's stdout or stderr (one step when named), masked: the last MiB, or what
        follows byte `offset` (then `next_offset` says where to go on)."""
        doc = await self.run_doc(name, run_id)
        key = "stderr_path" if stream == "stderr" else "stdout_path"
        chosen = [s for s in doc["steps"] if step in (None, s["step"])]
        if step is not None and not chosen:
            raise ServiceError(NOT_FOUND, f"run {doc['id']} has no step {step!r}")
        out = []
        for s in chosen:
            item = {"step": s["step"], "status": s["status"]}
            if offset is None:
                item["text"] = await self.log_text(doc["id"], s[key], 1024 * 1024)
            else:
                item["text"], item["next_offset"] = await self.log_chunk(doc["id"], s[key], offset)
            out.append(item)
        return {"run_id": doc["id"], "status": doc["status"], "steps": out}

    async def validate(self, text: str | None, name: str | None) -> dict[str, Any]:
        """Validate YAML text, or the file of the DAG `name` from the catalog (never a path)."""
        from dagd.spec import load_text

        if name is not None:
            entry = self.catalog.find(checked(names.dag_name, name))
            if entry is None:
                raise ServiceError(NOT_FOUND, f"no DAG named {name!r}")
            path = entry.file

            def run() -> Any:
                return load_file(path, strict=True)
        else:
            source = text or ""

            def run() -> Any:
                return load_text(source, "<text>.yaml", strict=True)

        try:
            loaded = await trio.to_thread.run_sync(run, limiter=PARSING)
        except SpecError as exc:
            return {"valid": False, "diagnostics": [d.as_json() for d in exc.diagnostics]}
        except OSError as exc:
            raise ServiceError(INVALID, f"cannot read the DAG file: {exc.strerror or exc}") from None
        return {
            "valid": True,
            "dialect": loaded.dag.dialect.value,
            "diagnostics": [d.as_json() for d in loaded.diagnostics],
        }

    async def latest_run(self, name: str) -> dict[str, Any] | None:
        """The latest run of a DAG, or None when it never ran."""
        doc: dict[str, Any] | None = await self._store_call(self.store.run, checked(names.dag_name, name), None)
        return doc

    async def children(self, run_id: str) -> list[dict[str, Any]]:
        """The sub-DAG runs a run started."""
        rows: list[dict[str, Any]] = await self._store_call(self.store.children, checked(names.run_id, run_id))
        return rows

    async def runs_of(self, name: str, limit: int) -> list[dict[str, Any]]:
        """The latest `limit` runs of a DAG, as whole documents (steps included)."""
        rows = await self.history(name, limit, None, None)
        docs = [await self._store_call(self.store.run, name, r["id"]) for r in rows]
        return [d for d in docs if d is not None]

    async def runs_page(
        self,
        name: str | None,
        limit: int,
        status: str | None,
        run_id: str | None,
        before: tuple[float, str] | None,
        window: tuple[float | None, float | None] = (None, None),
        dags: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first, after the cursor `before` = (started_at, id); `window`: started
        from/until (epoch seconds); `dags`: only these DAGs' runs."""
        if name is not None:
            checked(names.dag_name, name)
        rows: list[dict[str, Any]] = await self._store_call(
            self.store.history, name, limit, status, run_id, before, *window, dags
        )
        return rows

    async def resources(self, name: str, limit: int) -> list[dict[str, Any]]:
        """A DAG's last `limit` runs with each step's duration, CPU and peak memory, oldest first."""
        rows: list[dict[str, Any]] = await self._store_call(self.store.resources, checked(names.dag_name, name), limit)
        return rows

    async def suspended_names(self) -> set[str]:
        found: set[str] = await self._store_call(self.store.suspended)
        return found

    async def queue(self, name: str | None = None) -> list[dict[str, Any]]:
        """The queued runs, oldest first (of one DAG when named)."""
        items: list[dict[str, Any]] = await self._store_call(self.store.queued, name)
        return items

    async def step_row(self, name: str, run_id: str, step: str) -> dict[str, Any] | None:
        row: dict[str, Any] | None = await self._store_call(self.store.step, name, run_id, step)
        return row

    async def run_counts(self) -> list[tuple[str, str, int]]:
        """(DAG, status, runs) over the whole history."""
        counts: list[tuple[str, str, int]] = await self._store_call(self.store.run_counts)
        return counts

    async def run_durations(self, buckets: tuple[float, ...]) -> list[tuple[str, list[int], float, int]]:
        """Per DAG: cumulative counts of finished runs' durations within each bucket, sum, count."""
        found: list[tuple[str, list[int], float, int]] = await self._store_call(self.store.run_durations, buckets)
        return found

    def _with_pending(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A run whose end dagd knows but could not write yet (a full disk) is shown as it is."""
        for event in self.unrecorded:
            if event.run_id == doc.get("id"):
                doc.update(status=event.status.value, status_code=event.status.code, error=event.error)
                doc["finished_at"] = event.finished_at
        return doc
