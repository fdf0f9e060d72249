"""When schedules fire: a pure function of (schedule, after, zone) — no clock is read here.

Cron expressions are evaluated on local wall-clock time and mapped to instants with cronie's
rules for daylight-saving changes:
- a fire whose wall-clock time falls in the skipped hour runs once, right after the jump;
- a fire in the repeated hour runs once, at its first occurrence;
- schedules that fire every hour or more often (a wildcard hour field) keep their real
  interval: nothing fires in the skipped hour, and the repeated hour fires twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

from croniter import croniter

from dagd.spec.model import CronEntry, Schedule

UTC = dt.UTC


@dataclass(frozen=True, order=True)
class Fire:
    at: dt.datetime  # aware, UTC
    action: str  # "start" | "stop" | "restart"
    expression: str
    slot: str  # the scheduled wall-clock time, e.g. "2026-11-01T02:30:00+01:00"


def zone(entry: CronEntry, default: dt.tzinfo) -> dt.tzinfo:
    return zoneinfo.ZoneInfo(entry.timezone) if entry.timezone else default


def _instants(naive: dt.datetime, tz: dt.tzinfo, frequent: bool) -> list[dt.datetime]:
    """The real instants a local wall-clock time stands for (0, 1 or 2 of them)."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    valid = [a for a in (first, second) if a.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive]
    if not valid:  # skipped by a spring-forward jump
        if frequent:
            return []
        probe = naive
        for _ in range(24 * 60):
            probe += dt.timedelta(minutes=1)
            after = probe.replace(tzinfo=tz, fold=0)
            if after.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == probe:
                # the jump's end: the first valid wall-clock minute after the gap
                return [after.astimezone(UTC)]
        return []
    utc = sorted({a.astimezone(UTC) for a in valid})
    return utc if frequent else utc[:1]


def _frequent(expression: str) -> bool:
    fields = expression.split()
    return len(fields) == 5 and fields[1].startswith("*")


def entry_fires(entry: CronEntry, after: dt.datetime, default_tz: dt.tzinfo) -> Iterator[dt.datetime]:
    """Instants (UTC, strictly after `after`, ascending) at which `entry` fires."""
    if entry.at:
        when = dt.datetime.fromisoformat(entry.at).astimezone(UTC)
        if when > after:
            yield when
        return
    tz = zone(entry, default_tz)
    # Fast path: away from DST transitions wall-clock times and instants map one to one, so
    # croniter's next time from `after` is the next fire. Near a DST transition (and
    # after one), the careful walk below takes over from the last fire yielded.
    it = croniter(entry.expression, after.astimezone(tz).replace(tzinfo=None))
    while True:
        naive = it.get_next(dt.datetime)
        instant = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
        # no transition within 3 h of either end: `after` had one wall-clock reading, the fire
        # is neither in a skipped nor in a repeated hour, and a fire that a shift in between
        # could repeat or skip would itself lie within 3 h of that shift
        calm = _offset(tz, after - _SLACK) == _offset(tz, after + _SLACK)
        if not (calm and _offset(tz, instant - _SLACK) == _offset(tz, instant + _SLACK) and instant > after):
            break
        yield instant
        after = instant
    yield from _careful_fires(entry, after, tz)


_SLACK = dt.timedelta(hours=3)  # more than any DST shift: transitions are months apart


def _offset(tz: dt.tzinfo, at: dt.datetime) -> dt.timedelta | None:
    return at.astimezone(tz).utcoffset()


def _careful_fires(entry: CronEntry, after: dt.datetime, tz: dt.tzinfo) -> Iterator[dt.datetime]:
    """cronie's DST rules, walking wall-clock time around `after` (see _instants)."""
    frequent = _frequent(entry.expression)
    # start a little before `after` in wall-clock time: a repeated hour maps later instants
    # to earlier wall-clock times
    local = after.astimezone(tz).replace(tzinfo=None) - dt.timedelta(hours=3)
    it = croniter(entry.expression, local)
    last: dt.datetime | None = None
    pending: list[dt.datetime] = []
    while True:
        naive = it.get_next(dt.datetime)
        for instant in _instants(naive, tz, frequent):
            if instant > after and (last is None or instant > last):
                pending.append(instant)
        pending.sort()
        # every later wall-clock time maps at or after (naive - 2h) in real time
        horizon = naive.replace(tzinfo=tz, fold=0).astimezone(UTC) - dt.timedelta(hours=2)
        while pending and pending[0] <= horizon:
            last = pending.pop(0)
            yield last


# (entry, default zone) -> (after, the first fire after it). The answer holds for every later
# `after` up to that fire, so the daemon's loop and the DAG listings (1000s of DAGs, every wake)
# walk croniter only when a fire has passed. Entries are frozen: a reloaded DAG is a new key.
_NEXT: dict[tuple[CronEntry, dt.tzinfo], tuple[dt.datetime, dt.datetime | None]] = {}


def next_fire(entry: CronEntry, after: dt.datetime, default_tz: dt.tzinfo) -> dt.datetime | None:
    key = (entry, default_tz)
    hit = _NEXT.get(key)
    if hit is not None and hit[0] <= after and (hit[1] is None or after < hit[1]):
        return hit[1]
    at = next(entry_fires(entry, after, default_tz), None)
    if len(_NEXT) > 100_000:
        _NEXT.clear()
    _NEXT[key] = (after, at)
    return at


def due(schedule: Schedule, after: dt.datetime, until: dt.datetime, default_tz: dt.tzinfo) -> list[Fire]:
    """Every fire of the schedule in (after, until], in time order."""
    out: list[Fire] = []
    for action, entries in (("start", schedule.start), ("stop", schedule.stop), ("restart", schedule.restart)):
        for entry in entries:
            first = next_fire(entry, after, default_tz)
            if first is None or first > until:  # the common case, answered from the memo
                continue
            tz = zone(entry, default_tz)
            for at in entry_fires(entry, after, default_tz):
                if at > until:
                    break
                out.append(Fire(at, action, entry.at or entry.expression, at.astimezone(tz).isoformat()))
    return sorted(out)


def next_due(schedule: Schedule, after: dt.datetime, default_tz: dt.tzinfo) -> Fire | None:
    best: Fire | None = None
    for action, entries in (("start", schedule.start), ("stop", schedule.stop), ("restart", schedule.restart)):
        for entry in entries:
            at = next_fire(entry, after, default_tz)
            if at is not None and (best is None or at < best.at):
                tz = zone(entry, default_tz)
                best = Fire(at, action, entry.at or entry.expression, at.astimezone(tz).isoformat())
    return best


def slot_run_id(dag: str, fire: Fire) -> str:
    """The run id of a scheduled fire: derived from (DAG, slot) so a replay cannot double-fire."""
    # run ids are unique across DAGs: the DAG's hash tells two DAGs' fires of the same minute apart
    tag = hashlib.sha256(dag.encode()).hexdigest()[:12]
    return f"sched_{fire.at.strftime('%Y%m%dT%H%M%SZ')}_{tag}" + ("" if fire.action == "start" else f"_{fire.action}")
