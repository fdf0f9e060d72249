"""Tables for the terminal: run status and history. Plain text, no colour codes when piped."""

from __future__ import annotations

import datetime as dt
from typing import Any


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def took(start: float | None, end: float | None) -> str:
    if not start or not end:
        return "-"
    seconds = end - start
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def status_text(doc: dict[str, Any]) -> str:
    head = [
        f"DAG      {doc['dag']}",
        f"run      {doc['id']}",
        f"status   {doc['status']}",
        f"trigger  {doc['trigger']}",
        f"started  {when(doc['started_at'])}",
        f"finished {when(doc['finished_at'])}  ({took(doc['started_at'], doc['finished_at'])})",
    ]
    if doc.get("error"):
        head.append(f"error    {doc['error']}")
    rows = []
    sources: set[str] = set()
    for s in doc["steps"]:
        name = f"{s['step']} (handler)" if s["handler"] else s["step"]
        exit_code = "-" if s["exit_code"] is None else str(s["exit_code"])
        cpu = f"{(s['cpu_user'] or 0) + (s['cpu_sys'] or 0):.2f}s"
        rss = f"{(s['max_rss_kb'] or 0) / 1024:.1f}M" if s.get("memory_source") else "-"
        sources.add(s.get("memory_source") or "")
        rows.append(
            [name, s["status"], exit_code, str(s["attempt"]), took(s["started_at"], s["finished_at"]), cpu, rss]
        )
    body = table(rows, ["STEP", "STATUS", "EXIT", "ATTEMPTS", "DURATION", "CPU", "MAX RSS"])
    notes = [
        f"MAX RSS from {src}" + (" (the step and what it waited for)" if src == "rusage" else " (the whole tree)")
        for src in sorted(sources - {""})
    ]
    if "" in sources and any(s["started_at"] for s in doc["steps"]):
        notes.append("MAX RSS -: not measured (no memory controller; below dagd's own size rusage says nothing)")
    return "\n".join(head) + "\n\n" + body + ("\n\n" + "\n".join(notes) if notes else "")


def history_text(rows: list[dict[str, Any]]) -> str:
    body = [
        [r["id"], r["status"], r["trigger"], when(r["started_at"]), took(r["started_at"], r["finished_at"])]
        for r in rows
    ]
    return table(body, ["RUN", "STATUS", "TRIGGER", "STARTED", "DURATION"])
