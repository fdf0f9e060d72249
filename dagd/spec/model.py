"""The DAG model: immutable, typed, one shape for both of Dagu's naming generations.

Everything here is plain frozen data; the loader (`load.py`) builds it, the engine reads it.
Executor-specific configuration (`with:`/`config:`, container, ssh, smtp …) is kept as read,
in read-only mappings, for the executors that will consume it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return EMPTY


class Dialect(StrEnum):
    """Which of Dagu's semantics a file is read with (docs/compat.md)."""

    CURRENT = "current"  # Dagu >= 2.7
    CLASSIC = "classic"  # Dagu 1.x


class DagType(StrEnum):
    GRAPH = "graph"
    CHAIN = "chain"


class ChainRule(StrEnum):
    """What an explicit `depends` means in a classic chain DAG (docs/compat.md).

    replace — Dagu 1.17-1.21: the step waits for what it lists, not for the previous step.
    additive — Dagu 1.22+: the step waits for what it lists and for the previous step.
    """

    REPLACE = "replace"
    ADDITIVE = "additive"


class StepKind(StrEnum):
    COMMAND = "command"  # one or more shell commands
    SCRIPT = "script"  # a script body written to a file and run by the shell/interpreter
    SUB_DAG = "sub_dag"  # call another DAG and wait for it
    ACTION = "action"  # a named executor (http.request, docker.run, …)
    FOREACH = "foreach"  # an inline body run once per item
    NOOP = "noop"


@dataclass(frozen=True, slots=True)
class Location:
    line: int = 0
    col: int = 0


@dataclass(frozen=True, slots=True)
class Precondition:
    condition: str | None = None
    eval: str | None = None
    expected: str | None = None
    negate: bool = False
    location: Location = Location()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    limit: int | str  # a string is resolved at run time ("${RETRIES}")
    interval_sec: float | str
    exit_codes: tuple[int, ...] = ()
    backoff: float | None = None
    max_interval_sec: float | None = None


@dataclass(frozen=True, slots=True)
class RepeatPolicy:
    mode: str  # "while" | "until"
    condition: str | None = None
    expected: str | None = None
    exit_codes: tuple[int, ...] = ()
    interval_sec: float | str = 0
    limit: int | str = 0
    backoff: float | None = None
    max_interval_sec: float | None = None


@dataclass(frozen=True, slots=True)
class ContinueOn:
    failure: bool = False
    skipped: bool = False
    exit_codes: tuple[int, ...] = ()
    output: tuple[str, ...] = ()
    mark_success: bool = False


@dataclass(frozen=True, slots=True)
class OutputDecl:
    name: str
    type: str = "string"  # "string" | "json"


@dataclass(frozen=True, slots=True)
class SubDagCall:
    dag: str
    params: Any = None  # string | mapping | list, passed like CLI params
    wait: bool = True  # dag.enqueue does not wait


@dataclass(frozen=True, slots=True)
class Parallel:
    items: tuple[Any, ...] | str  # a static list, or a reference resolved at run time
    max_concurrent: int = 10


@dataclass(frozen=True, slots=True)
class Foreach:
    items: tuple[Any, ...] | str
    steps: tuple[Step, ...]
    as_name: str = "item"
    key: str | None = None
    max_concurrent: int = 10
    collect: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    kind: StepKind
    path: str  # where it was written: "steps[2]", "handler_on.failure"
    location: Location = Location()
    id: str | None = None
    description: str = ""
    commands: tuple[str, ...] = ()  # COMMAND: each run in a fresh shell, in order
    script: str | None = None  # SCRIPT: the body
    interpreter: tuple[str, ...] = ()  # classic `command: python` + `script:`
    shell: tuple[str, ...] = ()  # explicit step shell (suppresses automatic -e)
    working_dir: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    depends: tuple[str, ...] = ()
    output: str | None = None  # legacy `output: VAR` (stdout, trimmed)
    output_fields: Mapping[str, Any] = field(default_factory=_empty)  # object-form `output:`
    outputs: tuple[OutputDecl, ...] = ()
    stdout: str | None = None
    stderr: str | None = None
    log_output: str | None = None
    continue_on: ContinueOn = ContinueOn()
    retry_policy: RetryPolicy | None = None
    repeat_policy: RepeatPolicy | None = None
    preconditions: tuple[Precondition, ...] = ()
    timeout_sec: float = 0
    signal_on_stop: str | None = None
    mail_on_error: bool = False
    sub_dag: SubDagCall | None = None
    action: str | None = None  # ACTION: builtin action name, e.g. "http.request"
    config: Mapping[str, Any] = field(default_factory=_empty)  # `with:` / legacy `config:` / executor config
    parallel: Parallel | None = None
    foreach: Foreach | None = None
    extra: Mapping[str, Any] = field(default_factory=_empty)  # accepted keys dagd does not act on yet (approval, …)


@dataclass(frozen=True, slots=True)
class Param:
    """One declared parameter; `name` is None for a positional one ($1, $2 …)."""

    name: str | None
    default: str | None = None
    type: str = "string"
    required: bool = False
    eval: str | None = None
    description: str = ""
    enum: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class CronEntry:
    expression: str  # without the CRON_TZ=/TZ= prefix
    timezone: str | None = None
    at: str | None = None  # one-off RFC 3339 time instead of a cron expression


@dataclass(frozen=True, slots=True)
class Schedule:
    start: tuple[CronEntry, ...] = ()
    stop: tuple[CronEntry, ...] = ()
    restart: tuple[CronEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    provider: str | None = None
    key: str | None = None
    ref: str | None = None
    options: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class DagRetryPolicy:
    limit: int
    interval_sec: float = 60
    backoff: float | None = None
    max_interval_sec: float = 3600


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """Dagu's `resources: {limits: {cpu, memory}}`: the run's ceiling, enforced through cgroups."""

    memory_bytes: int | None = None
    cpu_millicores: int | None = None


@dataclass(frozen=True, slots=True)
class Dag:
    name: str
    file: str
    dialect: Dialect
    steps: tuple[Step, ...]
    type: DagType = DagType.GRAPH
    chain_rule: ChainRule | None = None  # classic chain DAGs with an explicit depends: the rule applied
    name_explicit: bool = False
    description: str = ""
    group: str = ""
    labels: Mapping[str, str] = field(default_factory=_empty)
    schedule: Schedule = Schedule()
    skip_if_successful: bool = False
    catchup_window_sec: float = 0
    overlap_policy: str = "skip"
    params: tuple[Param, ...] = ()
    params_json: str | None = None  # params given as a JSON document
    env: tuple[tuple[str, str], ...] = ()
    dotenv: tuple[str, ...] = (".env",)
    consts: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None  # explicit root working_dir (already made absolute)
    shell: tuple[str, ...] = ()
    log_dir: str | None = None
    hist_retention_days: int = 30
    hist_retention_runs: int | None = None
    timeout_sec: float = 0
    delay_sec: float = 0
    restart_wait_sec: float = 0
    max_active_runs: int = 1
    max_active_steps: int = 0
    max_clean_up_time_sec: float = 5
    max_output_size: int = 1024 * 1024
    preconditions: tuple[Precondition, ...] = ()
    handlers: Mapping[str, Step] = field(default_factory=_empty)  # init, success, failure, abort, exit, wait
    mail_on: Mapping[str, bool] = field(default_factory=_empty)
    queue: str | None = None
    secrets: tuple[Secret, ...] = ()
    retry_policy: DagRetryPolicy | None = None
    resources: ResourceLimits | None = None
    local_dags: Mapping[str, Dag] = field(default_factory=_empty)  # the other documents of the same file
    extra: Mapping[str, Any] = field(default_factory=_empty)  # smtp, mails, container, ssh, otel … as read
    base_config: str | None = None
    document: int = 0
    warnings: tuple[str, ...] = field(default=(), compare=False)
    no_effect: tuple[str, ...] = ()  # keys read but not acted on, said at each run's start

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)
