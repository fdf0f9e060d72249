"""The daemon's scheduler loop under trio.testing.MockClock: a real Service, store (SQLite) and
DAGs folder, the clock injected, so simulated minutes of fires take moments of real time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trio
import trio.testing

from dagd.catalog import Catalog
from dagd.firing import scheduler_loop
from dagd.service import Service
from dagd.store.db import Store

START = dt.datetime(2026, 11, 30, 12, 0, 30, tzinfo=dt.UTC)


def _simulate(
    tmp_path: Path, dags: dict[str, str], minutes: int, start: dt.datetime = START, tz: dt.tzinfo = dt.UTC
) -> Store:
    (tmp_path / "dags").mkdir()
    for name, text in dags.items():
        (tmp_path / "dags" / f"{name}.yaml").write_text(text)
    store = Store(str(tmp_path / "dagd.db"))
    catalog = Catalog(str(tmp_path / "dags"))
    catalog.refresh()

    def clock() -> dt.datetime:
        return start + dt.timedelta(seconds=trio.current_time())

    async def main() -> None:
        svc = Service(catalog, store, str(tmp_path / "state"), default_tz=tz)
        async with trio.open_nursery() as nursery:
            svc.nursery = nursery
            nursery.start_soon(scheduler_loop, svc, clock)
            await trio.sleep(minutes * 60)
            nursery.cancel_scope.cancel()

    # the clock jumps only after 20 ms of real idleness: never while a store call runs in a thread
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0.02))
    return store


def test_a_restart_wait_never_delays_another_dags_fires(tmp_path: Path) -> None:
    store = _simulate(
        tmp_path,
        {
            "restarter": "schedule:\n  restart: '* * * * *'\nrestart_wait_sec: 170\nsteps:\n  - run: 'true'\n",
            "ticker": "schedule: '* * * * *'\nsteps:\n  - run: 'true'\n",
        },
        minutes=5,
    )
    ticks = [r for r in store.history("ticker", 100) if r["trigger"] == "scheduler"]
    slots = sorted(r["id"].split("_")[1] for r in ticks)
    # every minute from 12:01 to 12:05 fired once, on time: none dropped as too late
    assert slots == [f"20261130T12{m:02d}00Z" for m in range(1, 6)], slots
    restarts = [r for r in store.history("restarter", 100) if r["trigger"] == "scheduler"]
    assert restarts  # the restarts themselves started once their wait had passed


def test_missed_fires_are_caught_up_within_the_window_only(tmp_path: Path) -> None:
    store_path = tmp_path / "dagd.db"
    pre = Store(str(store_path))
    pre.set_watermark("caught", (START - dt.timedelta(minutes=30)).timestamp())  # dagd was down 30 minutes
    pre.close()
    store = _simulate(
        tmp_path,
        {"caught": "schedule: '* * * * *'\ncatchup_window: 10m\noverlap_policy: all\nsteps:\n  - run: 'true'\n"},
        minutes=1,
    )
    rows = store.history("caught", 100)
    catchup = sorted(r["id"].split("_")[1] for r in rows if r["trigger"] == "catchup")
    # 11:51 … 11:59 were missed less than 10 minutes ago: caught up, once each; older ones dropped;
    # 12:00 (30 s late) and 12:01 are ordinary fires
    assert catchup == [f"20261130T11{m:02d}00Z" for m in range(51, 60)], catchup
    ordinary = sorted(r["id"].split("_")[1] for r in rows if r["trigger"] == "scheduler")
    assert ordinary == ["20261130T120000Z", "20261130T120100Z"], ordinary


@pytest.mark.parametrize("policy", ["skip", "all", "latest"])
def test_overlap_policies_while_a_run_outlasts_its_interval(tmp_path: Path, policy: str) -> None:
    # each run takes far longer than a minute of simulated time (a real 5 s sleep while the mock
    # clock jumps from fire to fire)
    store = _simulate(
        tmp_path,
        {"long": f"schedule: '* * * * *'\noverlap_policy: {policy}\nsteps:\n  - run: sleep 5\n"},
        minutes=4,
    )
    rows = store.history("long", 100)
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    started = [r for r in rows if r["status"] not in ("queued",) and r["started_at"]]
    assert len(started) == 1, rows  # max_active_runs 1: one run at a time, whatever the policy
    if policy == "skip":  # the fires that found it running were skipped: no row at all
        assert len(rows) == 1, rows
    elif policy == "all":  # every fire waits its turn in the queue
        assert by_status.get("queued") == 3, by_status
    else:  # only the most recent waiting fire is kept; the older ones were taken out
        assert by_status.get("queued") == 1 and by_status.get("aborted") == 2, by_status


@pytest.mark.parametrize(
    "start,minutes,fires",
    [
        # spring forward in Berlin: 02:30 does not exist on 2026-03-29; it runs once, at 03:00 CEST
        (dt.datetime(2026, 3, 29, 0, 50, tzinfo=dt.UTC), 20, ["20260329T010000Z"]),
        # fall back: 02:30 happens twice on 2026-10-25; it runs once, the first time
        (dt.datetime(2026, 10, 25, 0, 20, tzinfo=dt.UTC), 80, ["20261025T003000Z"]),
    ],
)
def test_daylight_saving_days_fire_a_skipped_or_repeated_hour_once(
    tmp_path: Path, start: dt.datetime, minutes: int, fires: list[str]
) -> None:
    import zoneinfo

    store = _simulate(
        tmp_path,
        {"nightly": "schedule: '30 2 * * *'\noverlap_policy: all\nsteps:\n  - run: 'true'\n"},
        minutes=minutes,
        start=start,
        tz=zoneinfo.ZoneInfo("Europe/Berlin"),
    )
    slots = sorted(r["id"].split("_")[1] for r in store.history("nightly", 100))
    assert slots == fires, slots
