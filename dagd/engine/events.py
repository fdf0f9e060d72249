"""What a run announces. One event model for the store, the terminal and (later) SSE."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dagd.engine.status import RunStatus, StepStatus


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    dag: str
    file: str
    params: dict[str, Any]
    trigger: str
    started_at: float
    log_dir: str
    work_dir: str
    parent_run: str | None = None
    cgroup: str | None = None  # the run's cgroup (v2 path), where there is one


@dataclass(frozen=True)
class StepChanged:
    run_id: str
    step: str
    status: StepStatus
    attempt: int = 0
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    stdout_path: str = ""
    stderr_path: str = ""
    cpu_user: float = 0.0
    cpu_sys: float = 0.0
    max_rss_kb: int = 0
    pgid: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    handler: bool = False
    published: dict[str, str] = field(default_factory=dict)
    output_value: str | None = None
    pgid_identity: str | None = None
    memory_source: str | None = None  # where max_rss_kb comes from; None: not measured


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    dag: str
    status: RunStatus
    finished_at: float
    error: str | None = None


Event = RunStarted | StepChanged | RunFinished
