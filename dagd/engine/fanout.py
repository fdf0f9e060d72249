"""Steps that run other DAGs: sub-DAG calls, `parallel` fan-out, and `foreach` bodies.

Children run in this process, as child runs of the parent (recorded with parent_run), each
with its own per-run work directory; the parent step's stdout is a JSON document describing
what ran, so `output: VAR` on the step captures it as Dagu does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from dagd.engine.resolve import Scope, resolve, resolve_data
from dagd.engine.status import RunStatus
from dagd.engine.step import StepFailed, StepResult
from dagd.spec.errors import SpecError
from dagd.spec.fields import thaw
from dagd.spec.load import load_file
from dagd.spec.model import Dag, DagType, Step

if TYPE_CHECKING:
    from dagd.engine.run import Run

_SPLIT = re.compile(r'"[^"]*"|[^\s,;|]+')


def _item_text(item: Any) -> str:
    return item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))


def expand_items(
    source: tuple[Any, ...] | str, scope: Scope, *, json_only: bool = False, what: str = "parallel"
) -> list[Any]:
    if not isinstance(source, str):
        return list(resolve_data(thaw(source), scope))
    text = resolve(source, scope).strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list):
        return data
    if json_only:
        raise StepFailed(f"{what}.items string must resolve to a JSON array, got {text[:80]!r}")
    if isinstance(data, dict):
        return [data]
    return [t.strip('"') for t in _SPLIT.findall(text)]


def child_params(params: Any, item: Any | None, scope: Scope) -> tuple[list[str], str | None]:
    """(overrides, param string) for a child run, from with.params or the item itself."""
    if params is None:
        if item is None:
            return [], None
        if isinstance(item, Mapping):
            return [f"{k}={_item_text(v)}" for k, v in item.items()], None
        return [_item_text(item)], None
    value = resolve_data(thaw(params), scope)
    if isinstance(value, str):
        return [], value
    if isinstance(value, Mapping):
        return [f"{k}={_item_text(v)}" for k, v in value.items()], None
    out: list[str] = []
    for entry in value:
        if isinstance(entry, Mapping):
            out.extend(f"{k}={_item_text(v)}" for k, v in entry.items())
        else:
            out.append(str(entry))
    return out, None


def find_dag(run: Run, name: str) -> Dag:
    local = run.local_dags.get(name)
    if local is not None:
        return local
    from dagd import config

    here = os.path.dirname(os.path.abspath(run.dag.file))
    path = config.resolve_dag_file(name, Path(here))
    if path is None:
        raise StepFailed(
            f'failed to find DAG "{name}" (no local DAG of that name, no file in {here} or the DAGs folder)'
        )
    try:
        return load_file(str(path), base_config=config.base_config()).dag
    except SpecError as exc:
        raise StepFailed(f'DAG "{name}" is invalid: {exc}') from None


async def run_child(
    run: Run, step: Step, dag: Dag, overrides: list[str], param_string: str | None, salt: str
) -> dict[str, Any]:
    from dagd.engine.environment import RunOptions, RunSetupError
    from dagd.engine.run import Run as RunClass

    digest = hashlib.sha256(
        f"{run.opts.run_id}\0{step.name}\0{dag.name}\0{overrides}\0{param_string}\0{salt}".encode()
    ).hexdigest()[:20]
    opts = RunOptions(
        run_id=f"sub_{digest}",
        state_dir=run.opts.state_dir,
        params=overrides,
        trigger="subdag",
        default_shell=run.opts.default_shell,
        parent_run=run.opts.run_id,
        param_string=param_string,
        shared_store=run.opts.shared_store,
    )
    child = RunClass(dag, opts, run.emit, local_dags={**run.local_dags})
    try:
        await child.prepare()
    except (RunSetupError, ValueError) as exc:
        raise StepFailed(f"sub-DAG {dag.name} cannot start: {exc}") from None
    status = await child.execute()
    return {
        "name": dag.name,
        "dagRunId": opts.run_id,
        "status": status.value,
        "params": param_string or " ".join(overrides),
        "outputs": child.outputs(),
    }


async def run_sub_dag(run: Run, step: Step, r: StepResult, scope: Scope, dagu_env: dict[str, str]) -> None:
    call = step.sub_dag
    assert call is not None
    with_scope = dataclasses.replace(scope, env=dagu_env)
    if step.parallel is None:
        dag = find_dag(run, resolve(call.dag, with_scope))
        overrides, pstring = child_params(call.params, None, with_scope)
        result = await run_child(run, step, dag, overrides, pstring, "")
        r.published.update(result["outputs"])
        _write(r, json.dumps(result, indent=2))
        if result["status"] not in (RunStatus.SUCCEEDED.value, RunStatus.PARTIALLY_SUCCEEDED.value):
            raise StepFailed(f"sub-DAG {dag.name} {result['status']} (run {result['dagRunId']})")
        return
    items = expand_items(step.parallel.items, with_scope)
    if not items:
        raise StepFailed("parallel: the item list is empty")
    if len(items) > 1000:
        raise StepFailed("parallel execution exceeds maximum limit of 1000 items")
    calls: dict[tuple[str, tuple[str, ...], str | None], Any] = {}
    for item in items:
        text = _item_text(item)
        item_scope = dataclasses.replace(
            with_scope, env={**dagu_env, "ITEM": text}, variables={**with_scope.variables, "ITEM": text}
        )
        target = resolve(call.dag, item_scope)
        overrides, pstring = child_params(call.params, item, item_scope)
        calls.setdefault((target, tuple(overrides), pstring), item)  # identical calls coalesce
    # every child DAG is found before any starts: a missing one fails the step, nothing half-run
    dags = {target: find_dag(run, target) for target, _, _ in calls}
    results: list[dict[str, Any]] = [{} for _ in calls]
    limiter = trio.Semaphore(step.parallel.max_concurrent)

    async def one(i: int, key: tuple[str, tuple[str, ...], str | None]) -> None:
        async with limiter:
            target, overrides, pstring = key
            try:
                results[i] = await run_child(run, step, dags[target], list(overrides), pstring, str(i))
            except StepFailed as exc:  # this child could not start; its siblings go on
                params = pstring or " ".join(overrides)
                results[i] = {"name": target, "dagRunId": None, "status": "failed", "params": params, "outputs": {}}
                results[i]["error"] = str(exc)

    async with trio.open_nursery() as nursery:
        for i, key in enumerate(calls):
            nursery.start_soon(one, i, key)
    ok = [x for x in results if x["status"] in (RunStatus.SUCCEEDED.value, RunStatus.PARTIALLY_SUCCEEDED.value)]
    doc = {
        "summary": {"total": len(results), "succeeded": len(ok), "failed": len(results) - len(ok)},
        "results": results,
        "outputs": [x["outputs"] for x in results],
    }
    _write(r, json.dumps(doc, indent=2))
    if len(ok) != len(results):
        raise StepFailed(f"parallel: {len(results) - len(ok)} of {len(results)} child runs did not succeed")


async def run_foreach(run: Run, step: Step, r: StepResult, scope: Scope, dagu_env: dict[str, str]) -> None:
    fe = step.foreach
    assert fe is not None
    with_scope = dataclasses.replace(scope, env=dagu_env)
    items = expand_items(fe.items, with_scope, json_only=True, what="foreach")
    slots: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        ctx = {"item": item, fe.as_name: item, "index": index}
        key = str(index)
        if fe.key:
            key = resolve(
                fe.key, dataclasses.replace(with_scope, variables={**with_scope.variables, "foreach": json.dumps(ctx)})
            )
            if key in seen:
                raise StepFailed(f'duplicate foreach item key "{key}"')
        seen.add(key)
        ctx["key"] = key
        slots.append(ctx)
    from dagd.engine.environment import RunOptions, RunSetupError
    from dagd.engine.run import Run as RunClass

    body = dataclasses.replace(
        run.dag, steps=fe.steps, handlers={}, preconditions=(), type=DagType.GRAPH, working_dir=run.default_cwd
    )
    outcomes: list[dict[str, Any]] = [{} for _ in slots]
    limiter = trio.Semaphore(fe.max_concurrent)

    async def one(i: int, ctx: dict[str, Any]) -> None:
        async with limiter:
            opts = RunOptions(
                run_id=f"{run.opts.run_id}_{re.sub('[^A-Za-z0-9_]', '_', step.name)}_{i}",
                state_dir=run.opts.state_dir,
                params=run.opts.params,
                param_string=run.opts.param_string,
                trigger="subdag",
                default_shell=run.opts.default_shell,
                parent_run=run.opts.run_id,
                shared_store=run.opts.shared_store,
            )
            child = RunClass(body, opts, run.emit, local_dags=run.local_dags, variables={"foreach": json.dumps(ctx)})
            try:
                await child.prepare()
            except (RunSetupError, ValueError) as exc:  # this item cannot start; the others go on
                outcomes[i] = {"index": ctx["index"], "key": ctx["key"], "status": "failed", "outputs": {}}
                outcomes[i]["error"] = f"cannot start: {exc}"
                return
            status = await child.execute()
            collected: dict[str, Any] = {}
            if status in (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED):
                body_scope = child.final_scope()
                collected = resolve_data(thaw(fe.collect), body_scope)
            outcomes[i] = {"index": ctx["index"], "key": ctx["key"], "status": status.value, "outputs": collected}

    async with trio.open_nursery() as nursery:
        for i, ctx in enumerate(slots):
            nursery.start_soon(one, i, ctx)
    ok = [o for o in outcomes if o["status"] in (RunStatus.SUCCEEDED.value, RunStatus.PARTIALLY_SUCCEEDED.value)]
    doc = {
        "total": len(outcomes),
        "succeeded": len(ok),
        "failed": len(outcomes) - len(ok),
        "items": outcomes,
        "outputs": [o["outputs"] for o in ok],
    }
    _write(r, json.dumps(doc, separators=(",", ":")))
    if len(ok) != len(outcomes):
        raise StepFailed(f"foreach: {len(outcomes) - len(ok)} of {len(outcomes)} items failed")


def _write(r: StepResult, text: str) -> None:
    with open(r.stdout_path, "ab") as fh:
        fh.write(text.encode() + b"\n")
