"""Response shapes of /api/v1 as types, so our OpenAPI document describes them (and
schemathesis checks every response against it). Names follow Dagu's api-v1.yaml; keys marked
NotRequired are left out when there is nothing to say. dagd's additions are commented."""

# No `from __future__ import annotations`: TypedDict must see NotRequired[...] at class creation.
from typing import Any, NotRequired, TypedDict


class Health(TypedDict):
    status: str
    version: str
    uptime: int
    timestamp: str
    reason: NotRequired[str]  # dagd: why it is unhealthy


class Pagination(TypedDict):
    totalRecords: int
    currentPage: int
    totalPages: int
    nextPage: int
    prevPage: int


class RunSummary(TypedDict):
    dagRunId: str
    name: str
    status: int
    statusLabel: str
    startedAt: str
    finishedAt: str
    artifactsAvailable: bool
    autoRetryCount: int
    triggerType: NotRequired[str]
    queuedAt: NotRequired[str]
    scheduleTime: NotRequired[str]
    error: NotRequired[str]  # dagd: why the run failed
    params: NotRequired[str]  # the params the run used, as a JSON object (positional ones as "1", "2" …)


class NodeCommand(TypedDict):
    command: str


class StepRef(TypedDict):
    """The step of a node, from the DAG as dagd knows it now: edges (depends) and what it runs."""

    name: str
    id: NotRequired[str]
    description: NotRequired[str]
    depends: NotRequired[list[str]]
    commands: NotRequired[list[NodeCommand]]
    script: NotRequired[str]
    call: NotRequired[str]


class SubDagRun(TypedDict):
    dagRunId: str
    dagName: NotRequired[str]
    params: NotRequired[str]


class Node(TypedDict):
    step: StepRef
    stdout: str
    stderr: str
    startedAt: str
    finishedAt: str
    status: int
    statusLabel: str
    retryCount: int
    doneCount: int
    exitCode: int | None  # dagd: the step's exit code
    cpuUserSec: float | None  # dagd: CPU seconds in user mode, the step's whole process tree (cgroup cpu.stat)
    cpuSysSec: float | None  # dagd: CPU seconds in the kernel, likewise
    maxRssKb: int | None  # dagd: peak memory (whole tree from a cgroup; else rusage); 0 when not measured
    memorySource: str | None  # dagd: where maxRssKb comes from (a cgroup file or "rusage"); null: not measured
    error: NotRequired[str]
    subRuns: NotRequired[list[SubDagRun]]


class RunDetails(RunSummary):
    rootDAGRunName: str
    rootDAGRunId: str
    parentDAGRunName: NotRequired[str]
    parentDAGRunId: NotRequired[str]
    log: str
    nodes: list[Node]
    onSuccess: NotRequired[Node]
    onFailure: NotRequired[Node]
    onAbort: NotRequired[Node]
    onExit: NotRequired[Node]
    error: NotRequired[str]
    subRuns: NotRequired[list[RunSummary]]  # dagd: sub-DAG runs this run started


class Schedule(TypedDict):
    expression: str


class DagSummary(TypedDict):
    name: str
    group: NotRequired[str]
    description: NotRequired[str]
    schedule: NotRequired[list[Schedule]]
    params: NotRequired[list[str]]
    tags: NotRequired[list[str]]
    maxActiveRuns: NotRequired[int]


class DagFile(TypedDict):
    fileName: str
    dag: DagSummary
    latestDAGRun: RunSummary
    suspended: bool
    errors: list[str]
    runningCount: int  # dagd
    queuedCount: int  # dagd
    nextRun: NotRequired[str]


class DagList(TypedDict):
    dags: list[DagFile]
    errors: list[str]
    pagination: Pagination


class Command(TypedDict):
    command: str


class StepSummary(TypedDict):
    name: str
    id: NotRequired[str]
    description: str
    depends: list[str]
    commands: list[Command]


class ParamDef(TypedDict):  # dagd
    name: str
    positional: bool
    default: str
    type: str
    required: bool
    description: str
    enum: NotRequired[list[str]]


class DagDetails(TypedDict):
    name: str
    group: str
    description: str
    type: str
    schedule: list[Schedule]
    params: list[str]
    defaultParams: str
    paramDefs: list[ParamDef]
    maxActiveRuns: int
    maxActiveSteps: int
    histRetentionDays: int
    delay: int
    tags: list[str]
    steps: list[StepSummary]


class LocalDag(TypedDict):
    name: str
    dag: DagDetails
    errors: list[str]


class DagDetail(TypedDict):
    dag: NotRequired[DagDetails]
    localDags: list[LocalDag]
    latestDAGRun: RunDetails  # a DAG that never ran: dagRunId "none", no nodes
    suspended: bool
    errors: list[str]


class RunsPage(TypedDict):
    dagRuns: list[RunSummary]
    nextCursor: NotRequired[str]


class GridItem(TypedDict):
    name: str
    history: list[int]


class DagRuns(TypedDict):
    dagRuns: list[RunDetails]
    gridData: list[GridItem]


class RunDetailsResponse(TypedDict):
    dagRunDetails: RunDetails


class DagRun(TypedDict):
    dagRun: RunDetails


class SubRun(TypedDict):
    dagRunId: str
    dagName: str
    status: int
    statusLabel: str
    startedAt: str
    finishedAt: str
    params: str


class SubRuns(TypedDict):
    subRuns: list[SubRun]


class Started(TypedDict):
    dagRunId: str


class Log(TypedDict):
    content: str
    lineCount: int
    totalLines: int
    hasMore: bool
    isEstimate: bool


class OutputsMetadata(TypedDict):
    dagName: str
    dagRunId: str
    attemptId: str
    status: str
    completedAt: str
    params: str


class Outputs(TypedDict):
    metadata: OutputsMetadata
    outputs: dict[str, Any]


class ErrorLine(TypedDict):
    line: int  # 1-based; 0 when the error has no place in the text
    column: int
    message: str


class Validation(TypedDict):
    valid: bool
    errors: list[str]
    errorLines: NotRequired[list[ErrorLine]]  # dagd: where each error is, for the editor
    dag: NotRequired[DagDetails]


class ValueReferenceNotice(TypedDict):
    message: str
    fieldPath: NotRequired[str]
    token: NotRequired[str]
    reason: NotRequired[str]
    # `class` in Dagu's schema: "defect" or "runtime_only" (a Python keyword, added by name)


class Spec(TypedDict):
    spec: str
    errors: list[str]
    valueReferenceNotices: list[dict[str, str]]
    dag: NotRequired[DagDetails]


class RunSpec(TypedDict):
    spec: str


class Labels(TypedDict):
    labels: list[str]
    errors: list[str]


class Tags(TypedDict):
    tags: list[str]
    errors: list[str]


class QueueItems(TypedDict):
    items: list[RunSummary]
    nextCursor: NotRequired[str]


class Errors(TypedDict):
    errors: list[str]


class Empty(TypedDict):
    pass


class QueueSummary(TypedDict):
    totalQueues: int
    totalRunning: int
    totalQueued: int
    totalCapacity: int
    utilizationPercentage: float


class Queue(TypedDict):
    name: str
    type: str
    maxConcurrency: int
    runningCount: int
    queuedCount: int
    running: list[RunSummary]


class Queues(TypedDict):
    queues: list[Queue]
    summary: QueueSummary
