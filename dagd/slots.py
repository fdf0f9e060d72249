"""What the scheduler loop asks of the store, as typed service methods: watermarks, slot claims,
the queue of one DAG, the last success (a mixin of Service, which owns the store)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from dagd.store.db import Store


class Slots:
    store: Store
    _store_call: Callable[..., Awaitable[Any]]
    wakeup: trio.Event
    changed: trio.Event

    async def watermarks(self) -> dict[str, float]:
        """The last fire time handled, per DAG."""
        marks: dict[str, float] = await self._store_call(self.store.watermarks)
        return marks

    async def set_watermark(self, dag: str, at: float) -> None:
        await self._store_call(self.store.set_watermark, dag, at)

    async def claim_slot(
        self, dag: str, run_id: str, file: str, at: float, trigger: str, schedule_time: str | None
    ) -> bool:
        """Fire a scheduled slot once — recorded and queued together; False when that slot was
        already claimed (a replay, or another node)."""
        claimed: bool = await self._store_call(self.store.claim_slot, dag, run_id, file, at, trigger, schedule_time)
        if claimed:
            self.wakeup.set()
            self.changed.set()
        return claimed

    async def succeeded_since(self, dag: str, since: float) -> bool:
        found: bool = await self._store_call(self.store.last_success_since, dag, since)
        return found

    async def cancel_queued(self, run_id: str) -> None:
        """Take a run out of the queue, recorded aborted (overlap_policy latest)."""
        await self._store_call(lambda: self.store.dequeue(run_id, cancelled=True))
