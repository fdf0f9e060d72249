"""The scheduler loop of the daemon: fire due schedules at most once per (DAG, slot), with
bounded catch-up, overlap policies and skip_if_successful, then dispatch the queue. The fire
times themselves come from the pure dagd.scheduler."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

import trio

from dagd import faults, scheduler
from dagd.errors import ServiceError
from dagd.service import Service

log = logging.getLogger("dagd")


def wall_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def scaled_clock(spec: str) -> tuple[Callable[[], dt.datetime], float]:
    """A schedule clock that runs `scale` times faster than the wall clock, the same in every
    process given the same spec "REAL0,VIRTUAL0,SCALE" (epoch seconds: at real time REAL0 it reads
    VIRTUAL0). DAGD_SCHEDULER_CLOCK: the chaos test and `make bench` fire hours of minutely
    schedules across several dagd nodes in minutes. Only schedules read it."""
    real0, virtual0, scale = (float(x) for x in spec.split(","))
    if not scale > 0:
        raise ValueError(f"DAGD_SCHEDULER_CLOCK: the scale must be positive, not {scale}")

    def clock() -> dt.datetime:
        return dt.datetime.fromtimestamp(virtual0 + (time.time() - real0) * scale, dt.UTC)

    return clock, scale


async def scheduler_loop(svc: Service, clock: Callable[[], dt.datetime] = wall_clock, scale: float = 1.0) -> None:
    """Fire schedules: at most once per (DAG, slot), catch-up bounded by catchup_window.

    `clock` is the wall clock; tests pass one that follows trio's clock, so under
    trio.testing.MockClock a day of fires takes moments, or a scaled one (scaled_clock: `scale`
    of its seconds per real second). The loop waits on trio's clock only."""
    while True:
        now = clock()
        suspended = await svc.suspended_names()
        marks = await svc.watermarks()
        nearest: dt.datetime | None = None
        for name, entry in svc.catalog.dags().items():
            dag = entry.usable
            if (
                dag is None
                or not (dag.schedule.start or dag.schedule.stop or dag.schedule.restart)
                or name in suspended
            ):
                continue
            mark = marks.get(name)
            if mark is None:  # first sight: start from now, no replay of the past
                await svc.set_watermark(name, now.timestamp())
                mark = now.timestamp()
            after = dt.datetime.fromtimestamp(mark, dt.UTC)
            # fires older than the catch-up window can only be dropped: do not even enumerate them
            horizon = now - dt.timedelta(seconds=(dag.catchup_window_sec or 0) + 120)
            after = max(after, horizon)
            for fire in scheduler.due(dag.schedule, after, now, svc.default_tz):
                await fire_one(svc, name, fire, now)
            nxt = scheduler.next_due(dag.schedule, max(after, now), svc.default_tz)
            if nxt is not None and (nearest is None or nxt.at < nearest):
                nearest = nxt.at
        await svc.dispatch()
        delay = 60.0 if nearest is None else max(0.0, min(60.0, (nearest - clock()).total_seconds()))
        with trio.move_on_after(delay / scale):
            await svc.wakeup.wait()
        svc.wakeup = trio.Event()


async def fire_one(svc: Service, name: str, fire: scheduler.Fire, now: dt.datetime) -> None:
    dag = svc.dag(name)
    late = (now - fire.at).total_seconds()
    stamp = fire.at.timestamp()
    if fire.action in ("stop", "restart"):
        await svc.set_watermark(name, stamp)
        if late <= 60:  # stopping and waiting belong to this DAG alone: never to the scheduler loop
            assert svc.nursery is not None
            svc.nursery.start_soon(_stop_then_restart, svc, name, fire)
        return
    trigger = "scheduler"
    if late > 60:  # missed while dagd was down or busy
        if not dag.catchup_window_sec or late > dag.catchup_window_sec:
            await svc.set_watermark(name, stamp)
            return
        trigger = "catchup"
    if dag.skip_if_successful and await svc.succeeded_since(name, stamp - 86400 * 366):
        prev = await _previous_fire(svc, dag, fire)
        if prev is not None and await svc.succeeded_since(name, prev):
            log.info("schedule %s: %s skipped (succeeded since the previous fire)", fire.expression, name)
            await svc.set_watermark(name, stamp)
            return
    queued = await svc.queue(name)
    busy = any(a.dag == name for a in svc.active.values()) or bool(queued) or await svc.running_elsewhere(name)
    if busy and dag.overlap_policy == "skip":
        log.info("schedule %s: %s skipped (a run is still active; overlap_policy skip)", fire.expression, name)
        await svc.set_watermark(name, stamp)
        return
    if dag.overlap_policy == "latest":  # only the most recent missed interval is kept
        for item in queued:
            if item["trigger"] in ("scheduler", "catchup"):
                await svc.cancel_queued(item["run_id"])
    run_id = scheduler.slot_run_id(name, fire)
    if not await svc.claim_slot(name, run_id, dag.file, stamp, trigger, fire.slot):
        return  # this slot already fired (a replay after a crash, or another node)
    faults.hit("claimed")
    log.info("schedule %s: %s fires (%s, run %s)", fire.expression, name, trigger, run_id)


async def _stop_then_restart(svc: Service, name: str, fire: scheduler.Fire) -> None:
    """A stop or restart fire, in its own task: stop the DAG's runs, and for a restart wait
    `restart_wait_sec` and start it again (claimed once per slot, like every fire)."""
    try:
        dag = svc.dag(name)
        if any(a.dag == name for a in svc.active.values()):
            log.info("schedule %s: stop %s", fire.expression, name)
            await svc.stop(name, None)
        if fire.action == "stop":
            return
        await trio.sleep(dag.restart_wait_sec)
        run_id = scheduler.slot_run_id(name, fire)
        if await svc.claim_slot(name, run_id, dag.file, fire.at.timestamp(), "scheduler", fire.slot):
            log.info("schedule %s: %s restarts (run %s)", fire.expression, name, run_id)
    except ServiceError as exc:
        log.warning("schedule %s: %s of %s failed: %s", fire.expression, fire.action, name, exc.message)


async def _previous_fire(svc: Service, dag: object, fire: scheduler.Fire) -> float | None:
    """The start fire before `fire`: searched in growing windows, so a minutely schedule costs
    a handful of cron steps, not a year of them."""
    from dagd.spec.model import Dag

    assert isinstance(dag, Dag)
    end = fire.at - dt.timedelta(seconds=1)
    for window in (
        dt.timedelta(minutes=2),
        dt.timedelta(hours=2),
        dt.timedelta(days=2),
        dt.timedelta(days=64),
        dt.timedelta(days=400),
    ):
        starts = [f for f in scheduler.due(dag.schedule, end - window, end, svc.default_tz) if f.action == "start"]
        if starts:
            return starts[-1].at.timestamp()
    return None
