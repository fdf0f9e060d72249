"""A watch on the event loop, for tests: `DAGD_LOOP_WATCH_MS=100` makes dagd log an error each
time one task step holds the loop longer than that (CPU time of the loop's thread, so a busy
machine does not count against dagd; or ten times that in wall time, for a blocking call)."""

from __future__ import annotations

import logging
import time

import trio

log = logging.getLogger("dagd.loop")


class LoopWatch(trio.abc.Instrument):
    def __init__(self, limit_ms: float) -> None:
        self.limit = limit_ms / 1000
        self.cpu = time.thread_time()  # the step that adds this instrument is measured from here
        self.wall = time.monotonic()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.cpu = time.thread_time()
        self.wall = time.monotonic()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        cpu = time.thread_time() - self.cpu
        wall = time.monotonic() - self.wall
        if cpu > self.limit or wall > 10 * self.limit:
            log.error(
                "the event loop was held for %.0f ms (%.0f ms of CPU) by one step of task %s",
                wall * 1000,
                cpu * 1000,
                task.name,
            )
