"""Scheduler fires across every DST transition of 2020-2035 in a dozen zones (cronie's rules)."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import pytest

from dagd.scheduler import due, entry_fires, next_due, slot_run_id
from dagd.spec.model import CronEntry, Schedule

UTC = dt.UTC
ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "America/Havana",  # jumps at midnight
    "America/Santiago",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Helsinki",
    "Asia/Tehran",  # DST until 2022, at midnight
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute shift
    "Pacific/Auckland",
    "Pacific/Chatham",  # 2:45 transitions
]


def transitions(name: str) -> list[dt.date]:
    tz = zoneinfo.ZoneInfo(name)
    days = []
    day = dt.date(2020, 1, 1)
    prev = dt.datetime(2019, 12, 31, 12, tzinfo=tz).utcoffset()
    while day < dt.date(2036, 1, 1):
        off = dt.datetime(day.year, day.month, day.day, 23, 59, tzinfo=tz).utcoffset()
        if off != prev:
            days.append(day)
            prev = off
        day += dt.timedelta(days=1)
    return days


def local_valid(naive: dt.datetime, tz: dt.tzinfo) -> list[dt.datetime]:
    out = []
    for fold in (0, 1):
        a = naive.replace(tzinfo=tz, fold=fold)
        if a.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive:
            out.append(a.astimezone(UTC))
    return sorted(set(out))


def fires(expr: str, tz: dt.tzinfo, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    out = []
    for at in entry_fires(CronEntry(expr), start, tz):
        if at > end:
            break
        out.append(at)
    return out


@pytest.mark.parametrize("name", ZONES)
def test_daily_jobs_fire_exactly_once_per_day_across_transitions(name: str) -> None:
    tz = zoneinfo.ZoneInfo(name)
    for day in transitions(name):
        start = dt.datetime(day.year, day.month, day.day, tzinfo=tz) - dt.timedelta(days=1)
        end = start + dt.timedelta(days=3) - dt.timedelta(minutes=1)
        for hour in range(24):
            for minute in (0, 30, 45):
                got = fires(f"{minute} {hour} * * *", tz, start.astimezone(UTC), end.astimezone(UTC))
                dates = [start.date() + dt.timedelta(days=i) for i in range(3)]
                expected = []
                for d in dates:
                    naive = dt.datetime(d.year, d.month, d.day, hour, minute)
                    valid = local_valid(naive, tz)
                    if valid:
                        expected.append(valid[0])  # repeated hour: the first occurrence only
                    else:  # skipped hour: once, right after the jump
                        probe = naive
                        while not local_valid(probe, tz):
                            probe += dt.timedelta(minutes=1)
                        expected.append(local_valid(probe, tz)[0])
                expected = [e for e in expected if start.astimezone(UTC) < e <= end.astimezone(UTC)]
                assert got == expected, (name, day, hour, minute)


@pytest.mark.parametrize("name", ZONES)
@pytest.mark.parametrize("expr", ["*/15 * * * *", "0 * * * *"])
def test_frequent_jobs_keep_their_real_interval(name: str, expr: str) -> None:
    tz = zoneinfo.ZoneInfo(name)
    step = dt.timedelta(minutes=15 if expr.startswith("*/15") else 60)
    for day in transitions(name):
        start = (dt.datetime(day.year, day.month, day.day, tzinfo=tz) - dt.timedelta(hours=12)).astimezone(UTC)
        end = start + dt.timedelta(days=2)
        got = fires(expr, tz, start, end)
        gaps = {b - a for a, b in itertools.pairwise(got)}
        shift = abs(
            dt.datetime(day.year, day.month, day.day, 23, 59, tzinfo=tz).utcoffset()  # type: ignore[operator]
            - (dt.datetime(day.year, day.month, day.day, tzinfo=tz) - dt.timedelta(hours=1)).utcoffset()
        )
        if step == dt.timedelta(minutes=15) or shift % dt.timedelta(hours=1) == dt.timedelta(0):
            assert gaps == {step}, (name, day, expr, sorted(gaps))
        # every fire sits on a wall-clock time the expression names
        for at in got:
            local = at.astimezone(tz)
            assert local.minute % (15 if step < dt.timedelta(hours=1) else 60) == 0


def test_transitions_were_found() -> None:
    assert len(transitions("Europe/Berlin")) == 32
    assert len(transitions("Asia/Tehran")) == 6


def test_due_lists_start_stop_and_one_off_fires_in_order() -> None:
    tz = zoneinfo.ZoneInfo("Europe/Berlin")
    sched = Schedule(
        start=(CronEntry("0 9 * * *"), CronEntry("", at="2026-03-02T10:30:00+01:00")),
        stop=(CronEntry("0 17 * * *"),),
    )
    start = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
    got = due(sched, start, start + dt.timedelta(days=1), tz)
    assert [(f.action, f.at.astimezone(tz).strftime("%d %H:%M")) for f in got] == [
        ("stop", "01 17:00"),
        ("start", "02 09:00"),
        ("start", "02 10:30"),
    ]
    nxt = next_due(sched, start, tz)
    assert nxt is not None and nxt.action == "stop"
    assert slot_run_id("d", got[1]).startswith("sched_20260302T080000Z_")
    assert slot_run_id("d", got[1]) == slot_run_id("d", got[1]) != slot_run_id("e", got[1])  # per DAG, stable


def test_a_cron_tz_prefix_wins_over_the_default_zone() -> None:
    entry = CronEntry("0 9 * * *", timezone="Asia/Tokyo")
    at = next(entry_fires(entry, dt.datetime(2025, 12, 31, 23, tzinfo=UTC), zoneinfo.ZoneInfo("Europe/Berlin")))
    assert at == dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


def test_two_dags_firing_in_the_same_minute_both_claim_their_slot(tmp_path: object) -> None:
    """Regression: slot run ids were the same for every DAG, so only one DAG fired per minute."""
    import datetime as dt
    from pathlib import Path

    from dagd.scheduler import Fire
    from dagd.store.db import Store

    at = dt.datetime(2026, 11, 25, 2, 30, tzinfo=dt.UTC)
    fire = Fire(at, "start", "30 2 * * *", at.isoformat())
    store = Store(str(Path(str(tmp_path)) / "dagd.db"))
    claims = [store.claim_slot(d, slot_run_id(d, fire), f"{d}.yaml", at.timestamp(), "scheduler") for d in ("a", "b")]
    replay = store.claim_slot("a", slot_run_id("a", fire), "a.yaml", at.timestamp(), "scheduler")
    store.close()
    assert claims == [True, True] and replay is False
