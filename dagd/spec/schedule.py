"""`schedule:` forms → Schedule, validated by computing a real next fire time.

croniter accepts some expressions that can never fire (`0 0 31 2 *`) and rejects CRON_TZ=
prefixes, so the prefix is split off here and every expression is tried once.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from croniter import croniter

from dagd.spec.fields import Ctx, type_name
from dagd.spec.keys import SCHEDULE_ENTRY_KEYS, SCHEDULE_KEYS
from dagd.spec.model import CronEntry, Schedule
from dagd.spec.yamlnode import Node

_TZ_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")
_DESCRIPTORS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


def check_cron(expression: str, *, descriptors: bool) -> tuple[str, str | None, str | None]:
    """(expression, timezone, error) for one cron string with an optional CRON_TZ=/TZ= prefix."""
    text = " ".join(expression.split())
    tz = None
    m = _TZ_PREFIX.match(text)
    if m:
        tz, text = m.group(1), m.group(2)
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return text, tz, f'invalid timezone "{tz}" (use an IANA name such as Europe/Berlin)'
    if text.startswith("@"):
        if not descriptors or text not in _DESCRIPTORS:
            return (
                text,
                tz,
                f'invalid cron expression "{expression}": descriptors such as @daily are not accepted; use 5 fields',
            )
    elif len(text.split()) != 5:
        return (
            text,
            tz,
            f'invalid cron expression "{expression}": expected exactly 5 fields (minute hour day-of-month month day-of-week)',
        )
    try:
        it = croniter(text, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        it.get_next(dt.datetime)
    except (ValueError, KeyError, TypeError) as exc:
        return text, tz, f'invalid cron expression "{expression}": {exc}'
    except Exception as exc:  # croniter raises CroniterBadDateError for impossible dates
        return text, tz, f'invalid cron expression "{expression}": never fires ({exc})'
    return text, tz, None


def _entry(ctx: Ctx, node: Node, key: str, *, allow_at: bool) -> CronEntry | None:
    if node.kind == "map":
        m = ctx.mapping(node, key, SCHEDULE_ENTRY_KEYS, what="a schedule entry")
        if m is None:
            return None
        if "at" in m:
            at = ctx.string(m["at"], f"{key}.at") or ""
            if not allow_at:
                ctx.error(m["at"], f"{key}.at", "one-off `at` schedules are allowed only in start schedules")
                return None
            try:
                when = dt.datetime.fromisoformat(at)
                if when.tzinfo is None or when.second:
                    raise ValueError("needs an explicit offset and minute precision")
            except ValueError as exc:
                ctx.error(
                    m["at"],
                    f"{key}.at",
                    f'invalid at time "{at}": RFC 3339 with offset, e.g. 2026-03-01T09:30:00+09:00 ({exc})',
                )
                return None
            return CronEntry("", None, at)
        if "expression" not in m:
            ctx.error(node, key, "a schedule entry needs expression or at")
            return None
        node = m["expression"]
    if node.kind != "scalar" or not isinstance(node.value, str):
        ctx.error(node, key, f"a schedule must be a cron string, got {type_name(node)}")
        return None
    expr, tz, err = check_cron(node.value, descriptors=ctx.classic)
    if err:
        ctx.error(node, key, err)
        return None
    return CronEntry(expr, tz)


def _entries(ctx: Ctx, node: Node, key: str, *, allow_at: bool) -> tuple[CronEntry, ...]:
    items = node.value if node.kind == "seq" else [node]
    out = []
    for i, item in enumerate(items):
        e = _entry(ctx, item, f"{key}[{i}]" if node.kind == "seq" else key, allow_at=allow_at)
        if e is not None:
            out.append(e)
    return tuple(out)


def parse_schedule(ctx: Ctx, node: Node, key: str = "schedule") -> Schedule:
    if node.kind == "scalar" and node.value is None:
        return Schedule()
    if node.kind == "map" and set(node.value) & SCHEDULE_KEYS:
        m = ctx.mapping(node, key, SCHEDULE_KEYS, what="schedule (expected start, stop, or restart)")
        if m is None:
            return Schedule()
        return Schedule(
            *(
                _entries(ctx, m[k], f"{key}.{k}", allow_at=k == "start") if k in m else ()
                for k in ("start", "stop", "restart")
            )
        )
    if node.kind in ("scalar", "seq", "map"):
        return Schedule(start=_entries(ctx, node, key, allow_at=True))
    ctx.error(node, key, f"schedule must be string, array, or map, got {type_name(node)}")  # pragma: no cover
    return Schedule()
