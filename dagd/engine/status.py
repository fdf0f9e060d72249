"""Run and step statuses: Dagu's names and numeric codes (a closed set)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    FAILED = "failed"
    ABORTED = "aborted"
    SUCCEEDED = "succeeded"
    QUEUED = "queued"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    WAITING = "waiting"
    REJECTED = "rejected"

    @property
    def code(self) -> int:
        return _RUN_CODES[self]

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.NOT_STARTED, RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.WAITING)


class StepStatus(StrEnum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    FAILED = "failed"
    ABORTED = "aborted"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    WAITING = "waiting"
    REJECTED = "rejected"
    RETRYING = "retrying"

    @property
    def code(self) -> int:
        return _STEP_CODES[self]

    @property
    def done(self) -> bool:
        return self in (
            StepStatus.FAILED,
            StepStatus.ABORTED,
            StepStatus.SUCCEEDED,
            StepStatus.SKIPPED,
            StepStatus.PARTIALLY_SUCCEEDED,
            StepStatus.REJECTED,
        )


_RUN_CODES = {s: i for i, s in enumerate(RunStatus)}
_STEP_CODES = {
    StepStatus.NOT_STARTED: 0,
    StepStatus.RUNNING: 1,
    StepStatus.FAILED: 2,
    StepStatus.ABORTED: 3,
    StepStatus.SUCCEEDED: 4,
    StepStatus.SKIPPED: 5,
    StepStatus.PARTIALLY_SUCCEEDED: 6,
    StepStatus.WAITING: 7,
    StepStatus.REJECTED: 8,
    StepStatus.RETRYING: 9,
}
