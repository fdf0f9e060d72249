"""Runs on a terminal: one line per event, or a live view redrawn in place. No trio here:
dagctl uses it to follow runs of the daemon too."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any, TextIO

from dagd.engine.events import Event, RunFinished, RunStarted, StepChanged
from dagd.engine.status import RunStatus, StepStatus

_SYMBOLS = {
    StepStatus.RUNNING: "▶",
    StepStatus.SUCCEEDED: "✓",
    StepStatus.FAILED: "✗",
    StepStatus.SKIPPED: "↷",
    StepStatus.ABORTED: "■",
    StepStatus.RETRYING: "↻",
    StepStatus.PARTIALLY_SUCCEEDED: "✓",
}


def stderr_tail(path: str, lines: int = 10) -> list[str]:
    """The last lines a failed step wrote to stderr (dagd's own notes left out)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith("dagd: ")]
    return kept[-lines:]


def event_from_dict(doc: dict[str, Any]) -> Event | None:
    """An event as the daemon sends it (JSON) back into its dataclass."""
    kinds: dict[str, type[Any]] = {"RunStarted": RunStarted, "StepChanged": StepChanged, "RunFinished": RunFinished}
    kind = kinds.get(str(doc.get("type")))
    if kind is None:
        return None
    known = {f.name for f in dataclasses.fields(kind)}
    fields = {k: v for k, v in doc.items() if k in known}  # newer daemons may add keys
    try:
        if kind is StepChanged:
            fields["status"] = StepStatus(fields["status"])
        elif kind is RunFinished:
            fields["status"] = RunStatus(fields["status"])
        event: Event = kind(**fields)
    except (KeyError, TypeError, ValueError):
        return None
    return event


class Progress:
    """One line per event on a stream (stderr), so stdout stays free for --json."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.mask: Callable[[str], str] = lambda text: text

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            print(f"run {event.run_id} of {event.dag} started", file=self.out)
        elif isinstance(event, StepChanged):
            if event.status is StepStatus.NOT_STARTED:
                return
            sym = _SYMBOLS.get(event.status, "·")
            took = f" in {event.finished_at - event.started_at:.2f}s" if event.finished_at and event.started_at else ""
            extra = (
                f" (exit {event.exit_code})"
                if event.status is StepStatus.FAILED and event.exit_code is not None
                else ""
            )
            label = f"{event.step} [handler]" if event.handler else event.step
            print(f"{sym} {label} {event.status.value}{extra}{took}", file=self.out)
            if event.error and event.status is StepStatus.FAILED:
                print(f"  error: {self.mask(event.error)}", file=self.out)
                for line in stderr_tail(event.stderr_path):
                    print(f"  | {self.mask(line)}", file=self.out)
        elif isinstance(event, RunFinished):
            tail = f": {self.mask(event.error)}" if event.error else ""
            print(f"run {event.run_id} {event.status.value}{tail}", file=self.out)
        self.out.flush()


class LiveView:
    """On a terminal: one line per step, redrawn in place, with running durations ticking."""

    def __init__(self, out: TextIO, title: str) -> None:
        self.out = out
        self.title = title
        self.rows: dict[str, list[Any]] = {}  # step -> [status, started, finished, exit]
        self.drawn = 0
        self.footer = ""
        self.errors: dict[str, str] = {}
        self.mask: Callable[[str], str] = lambda text: text

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            if event.parent_run is None:
                self.title = f"{event.dag}  run {event.run_id}"
        elif isinstance(event, StepChanged):
            if event.status is not StepStatus.NOT_STARTED or event.step in self.rows:
                label = f"{event.step} [handler]" if event.handler else event.step
                self.rows[label] = [event.status, event.started_at, event.finished_at, event.exit_code]
                if event.status is StepStatus.FAILED and event.error:
                    tail = " / ".join(stderr_tail(event.stderr_path, 3))
                    self.errors[label] = self.mask(event.error + (f" — {tail}" if tail else ""))
        elif isinstance(event, RunFinished):
            if event.run_id.startswith("sub_"):
                return
            self.footer = f"{event.status.value}" + (f": {self.mask(event.error)}" if event.error else "")
        self.draw()

    def draw(self) -> None:
        now = time.time()
        lines = [self.title]
        width = max((len(k) for k in self.rows), default=4)
        for name, (status, started, finished, code) in self.rows.items():
            end = finished or now
            took = f"{end - started:6.1f}s" if started else "       "
            sym = _SYMBOLS.get(status, "·")
            extra = f" exit {code}" if status is StepStatus.FAILED and code is not None else ""
            lines.append(f" {sym} {name.ljust(width)}  {status.value:<20}{took}{extra}")
        if self.footer:
            lines.append(self.footer)
            lines.extend(f"  {name}: {error}" for name, error in self.errors.items())
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F")
        self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self.drawn = len(lines)


def terminal_view(out: TextIO, title: str) -> Progress | LiveView:
    """The live view on a terminal, one line per event otherwise."""
    if out.isatty() and os.environ.get("TERM") != "dumb":
        return LiveView(out, title)
    return Progress(out)
