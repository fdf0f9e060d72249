"""The control socket's methods: typed parameters (msgspec structs) and one Service call each.

A method's params are converted to its struct before anything runs, so a wrong type, an unknown
key or a name that breaks dagd.names is a -32602 reply naming the field, never an exception
deeper down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from dagd import names
from dagd.access import Principal
from dagd.service import Service

DagName = Annotated[str, msgspec.Meta(pattern=names.NAME_PATTERN, max_length=names.NAME_MAX)]
RunId = Annotated[str, msgspec.Meta(pattern=names.RUN_ID_PATTERN, max_length=names.RUN_ID_MAX)]
Param = Annotated[str, msgspec.Meta(max_length=64 * 1024)]
RunStatusName = Literal[
    "not_started", "queued", "running", "succeeded", "partially_succeeded", "failed", "aborted", "waiting", "rejected"
]
MAX_SPEC = 4 * 1024 * 1024


class Params(msgspec.Struct, forbid_unknown_fields=True):
    pass


class NoParams(Params):
    pass


class DagRef(Params):
    name: DagName


class RunStart(Params):
    name: DagName
    params: Annotated[list[Param], msgspec.Meta(max_length=1000)] = []
    run_id: RunId | None = None
    parent: RunId | None = None  # the run whose step started this one (`dagu start` in a step)


class RunRef(Params):
    name: DagName
    run_id: RunId


class MaybeRun(Params):
    name: DagName
    run_id: RunId | None = None


class History(Params):
    name: DagName | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 20
    status: RunStatusName | None = None
    run_id: RunId | None = None


class Logs(Params):
    name: DagName
    run_id: RunId | None = None
    step: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    stream: Literal["stdout", "stderr"] = "stdout"
    offset: Annotated[int, msgspec.Meta(ge=0)] | None = None  # from this byte on (a live tail)


class PrepareStop(Params):
    keep_runs: bool


class Validate(Params):
    """YAML text, or the name of a DAG in dagd's folder; never a path (dagd may read files the
    caller may not)."""

    spec: Annotated[str, msgspec.Meta(max_length=MAX_SPEC)] | None = None
    name: DagName | None = None


@dataclass(frozen=True)
class Method:
    params: type[Params]
    call: Callable[[Any, Principal], Awaitable[Any]]
    mutating: bool = False


def table(svc: Service, login: Callable[[Principal], dict[str, Any]]) -> dict[str, Method]:
    """Every method by name. `login` makes a one-time web UI login link for the caller."""

    async def start(p: RunStart, who: Principal) -> Any:
        return {"run_id": await svc.enqueue(p.name, list(p.params), run_id=p.run_id, parent_run=p.parent)}

    async def retry(p: RunRef, who: Principal) -> Any:
        return {"run_id": await svc.retry(p.name, p.run_id)}

    async def validate(p: Validate, who: Principal) -> Any:
        from dagd.errors import INVALID, ServiceError

        if (p.spec is None) == (p.name is None):
            raise ServiceError(INVALID, "give exactly one of spec (YAML text) or name (a DAG of dagd's folder)")
        return await svc.validate(p.spec, p.name)

    async def login_link(p: NoParams, who: Principal) -> Any:
        return login(who)

    async def dag_list(p: NoParams, who: Principal) -> Any:
        return await svc.list_dags()

    async def reload(p: NoParams, who: Principal) -> Any:
        return await svc.reload()

    async def status(p: NoParams, who: Principal) -> Any:
        return svc.status()

    async def prepare_stop(p: PrepareStop, who: Principal) -> Any:
        return svc.prepare_stop(p.keep_runs)

    async def nodes(p: NoParams, who: Principal) -> Any:
        return await svc.nodes()

    async def suspend(p: DagRef, who: Principal) -> Any:
        return await svc.suspend(p.name, True)

    async def resume(p: DagRef, who: Principal) -> Any:
        return await svc.suspend(p.name, False)

    async def dequeue(p: RunRef, who: Principal) -> Any:
        return await svc.dequeue(p.name, p.run_id)

    async def stop(p: MaybeRun, who: Principal) -> Any:
        return await svc.stop(p.name, p.run_id)

    async def run_status(p: MaybeRun, who: Principal) -> Any:
        return await svc.run_doc(p.name, p.run_id)

    async def history(p: History, who: Principal) -> Any:
        return await svc.history(p.name, p.limit, p.status, p.run_id)

    async def logs(p: Logs, who: Principal) -> Any:
        return await svc.step_logs(p.name, p.run_id, p.step, p.stream, p.offset)

    return {
        "daemon.status": Method(NoParams, status),
        "daemon.nodes": Method(NoParams, nodes),
        "daemon.reload": Method(NoParams, reload, mutating=True),
        "daemon.prepare_stop": Method(PrepareStop, prepare_stop, mutating=True),
        "daemon.login_link": Method(NoParams, login_link, mutating=True),
        "dag.list": Method(NoParams, dag_list),
        "dag.suspend": Method(DagRef, suspend, mutating=True),
        "dag.resume": Method(DagRef, resume, mutating=True),
        "dag.validate": Method(Validate, validate),
        "run.start": Method(RunStart, start, mutating=True),
        "run.enqueue": Method(RunStart, start, mutating=True),
        "run.dequeue": Method(RunRef, dequeue, mutating=True),
        "run.stop": Method(MaybeRun, stop, mutating=True),
        "run.retry": Method(RunRef, retry, mutating=True),
        "run.status": Method(MaybeRun, run_status),
        "run.history": Method(History, history),
        "run.logs": Method(Logs, logs),
    }


def convert(kind: type[Params], raw: object) -> Params:
    """Params of a request as `kind`; msgspec.ValidationError says which field is wrong."""
    return msgspec.convert({} if raw is None else raw, kind)
