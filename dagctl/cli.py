"""dagctl: the command line of dagd.

Kept light on purpose (click + the spec loader only; never trio or litestar) so that every
invocation starts fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dagd import __version__, config
from dagd.spec import Diagnostic, Severity, SpecError, load_file
from dagd.spec.load import Loaded

if TYPE_CHECKING:
    from dagd.store.db import Store

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class ExitWith(click.ClickException):
    """A failure already reported: exit with `code`, print nothing more."""

    def __init__(self, code: int) -> None:
        super().__init__("")
        self.code = code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code

    def show(self, file: Any = None) -> None:
        return None


def _dag_exists_near(file: str) -> Any:
    here = Path(file).resolve().parent

    def exists(name: str) -> bool:
        return config.resolve_dag_file(name, here) is not None

    return exists


DIALECT = click.option(
    "--dialect",
    type=click.Choice(["auto", "current", "classic"]),
    default="auto",
    show_default=True,
    help="Read the file as Dagu >= 2.7 (current) or Dagu 1.x (classic) instead of detecting it.",
)


def load(path: str, *, strict: bool = False, dialect: str = "auto") -> Loaded:
    from dagd.spec import Dialect

    forced = None if dialect == "auto" else Dialect(dialect)
    return load_file(
        path, base_config=config.base_config(), strict=strict, dag_exists=_dag_exists_near(path), dialect=forced
    )


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="dagctl")
def main() -> None:
    """Control dagd and work with Dagu-format DAG files.

    \b
    dagctl validate nightly.yaml      check a DAG file; errors as file:line:col: key: message
    dagctl dry nightly.yaml -- K=V    show the plan without running anything
    """


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with every finding.")
@click.option("--show-unresolved", is_flag=True, help="Also list references that only resolve at run time.")
@click.option("--verbose", "-v", is_flag=True, help="Name the Dagu dialect chosen for each file.")
@DIALECT
def validate(files: tuple[str, ...], as_json: bool, show_unresolved: bool, verbose: bool, dialect: str) -> None:
    """Check DAG files. Silent with exit 0 when every file is valid; exit 1 otherwise."""
    from dagd.spec.references import unresolved

    failed = False
    report: list[dict[str, Any]] = []
    for path in files:
        findings: list[Diagnostic] = []
        chosen = None
        try:
            loaded = load(path, strict=True, dialect=dialect)
            chosen = loaded.dag.dialect.value
            findings = loaded.diagnostics + unresolved(loaded.dag)
            if not show_unresolved:
                findings = [d for d in findings if d.severity is not Severity.NOTICE]
            if verbose and not as_json:
                click.echo(
                    f"{path}: dialect {chosen} ({loaded.dag.type.value} DAG, {len(loaded.dag.steps)} steps)", err=True
                )
        except SpecError as exc:
            failed = True
            findings = exc.diagnostics + exc.warnings
        report.append(
            {
                "file": path,
                "valid": not any(d.severity is Severity.ERROR for d in findings),
                "dialect": chosen,
                "diagnostics": [d.as_json() for d in findings],
            }
        )
        if not as_json:
            for d in findings:
                click.echo(d.render(), err=True)
    if as_json:
        click.echo(json.dumps({"valid": not failed, "files": report}, indent=2))
    if failed:
        raise ExitWith(1)


@main.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("params", nargs=-1)
@click.option("--params", "params_opt", default=None, help='Parameters as Dagu takes them: "K=V K2=V2" or positional.')
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def dry(file: str, params: tuple[str, ...], params_opt: str | None, as_json: bool) -> None:
    """Show what a run would do: steps in order, with params and commands resolved. Runs nothing."""
    from dagd.plan import make_plan, render_plan

    try:
        loaded = load(file)
    except SpecError as exc:
        for d in exc.diagnostics:
            click.echo(d.render(), err=True)
        raise ExitWith(1) from None
    for d in loaded.diagnostics:
        click.echo(d.render(), err=True)
    try:
        plan = make_plan(loaded.dag, list(params), params_opt)
    except ValueError as exc:
        click.echo(f"{file}: params: {exc}", err=True)
        raise ExitWith(1) from None
    if as_json:
        click.echo(json.dumps(plan, indent=2))
    else:
        click.echo(render_plan(plan))


@main.command("run", context_settings=CONTEXT)
@click.argument("target")
@click.argument("params", nargs=-1)
@click.option(
    "--params",
    "params_opt",
    default=None,
    help='Parameters as Dagu takes them: "K=V K2=V2", positional values, or JSON.',
)
@click.option("--run-id", default=None, help="Use this run id instead of a generated one.")
@click.option(
    "--trigger-type", default="manual", show_default=True, help="Recorded trigger: manual, scheduler, webhook, retry, …"
)
@click.option("--schedule-time", default=None, help="The scheduled time this run stands for (RFC 3339).")
@click.option("--json", "as_json", is_flag=True, help="Print the final run document as JSON on stdout.")
def run_cmd(
    target: str,
    params: tuple[str, ...],
    params_opt: str | None,
    run_id: str | None,
    trigger_type: str,
    schedule_time: str | None,
    as_json: bool,
) -> None:
    """Run a DAG (a file, or a name in the DAGs folder) to its end, with live progress.

    Exit code 0 when the run succeeds, 1 otherwise. Ctrl-C aborts the run: every step's
    process group is killed and the run is recorded as aborted.
    """
    from dagctl.client import connect

    client = connect(str(config.socket_path()))
    if client is not None and not _is_file_outside_daemon(target):
        with contextlib.closing(client):
            _run_in_daemon(client, target, list(params), params_opt, run_id, as_json)
        return
    from dagd.engine.local import run_local

    if client is None and not _is_file_outside_daemon(target) and config.socket_path().exists():
        click.echo(f"dagctl: no dagd answering at {config.socket_path()}; running in this process", err=True)
    path = config.resolve_dag_file(target)
    if path is None:
        click.echo(f"dagctl: no DAG file or DAG named {target!r} (looked in . and {config.dags_dir()})", err=True)
        raise ExitWith(1)
    try:
        loaded = load(str(path))
    except SpecError as exc:
        for d in exc.diagnostics:
            click.echo(d.render(), err=True)
        raise ExitWith(1) from None
    code = run_local(
        loaded.dag,
        state_dir=str(config.state_dir()),
        params=list(params),
        param_string=params_opt,
        run_id=run_id,
        trigger=trigger_type,
        schedule_time=schedule_time,
        default_shell=config.default_shell(),
        as_json=as_json,
    )
    if code:
        raise ExitWith(code)


def _store() -> Store:
    from dagd.store.db import Store

    path = config.state_dir() / "dagd.db"
    if not path.exists():
        click.echo(f"dagctl: no run history yet ({path} does not exist)", err=True)
        raise ExitWith(1)
    return Store(str(path))


def _dag_name(target: str) -> str:
    """A DAG name from a name or a file path (the file stem, or its `name:` when it sets one)."""
    path = config.resolve_dag_file(target)
    if path is None:
        return target
    try:
        return load(str(path)).dag.name
    except SpecError:
        return path.stem


def _run_doc(target: str, run_id: str | None) -> dict[str, Any]:
    store = _store()
    try:
        doc = store.run(_dag_name(target), run_id)
    finally:
        store.close()
    if doc is None:
        what = f"run {run_id} of {target}" if run_id else f"any run of {target}"
        click.echo(f"dagctl: no {what} in the history", err=True)
        raise ExitWith(1)
    result: dict[str, Any] = doc
    return result


@main.command(context_settings=CONTEXT)
@click.argument("target")
@click.argument("run_id", required=False)
@click.option("--run-id", "run_id_opt", default=None, help="The run to show (Dagu's spelling of RUN_ID).")
@click.option("--json", "as_json", is_flag=True, help="Print the run document as JSON.")
def status(target: str, run_id: str | None, run_id_opt: str | None, as_json: bool) -> None:
    """Show a run (the latest unless RUN_ID is given): its status and every step's."""
    from dagctl.render import status_text

    doc = _run_doc(target, run_id or run_id_opt)
    click.echo(json.dumps(doc, indent=2) if as_json else status_text(doc))


@main.command(context_settings=CONTEXT)
@click.argument("target", required=False)
@click.option("--limit", "-n", default=20, show_default=True, help="How many runs to show.")
@click.option("--status", "status_filter", default=None, help="Only runs with this status (succeeded, failed, …).")
@click.option("--run-id", "run_id", default=None, help="Only this run.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="Dagu's spelling of --json."
)
def history(
    target: str | None, limit: int, status_filter: str | None, run_id: str | None, as_json: bool, fmt: str
) -> None:
    """List runs, newest first: of one DAG, or of every DAG when none is given."""
    from dagctl.render import history_text

    store = _store()
    try:
        rows = store.history(_dag_name(target) if target else None, limit, status_filter, run_id)
    finally:
        store.close()
    click.echo(json.dumps(rows, indent=2) if as_json or fmt == "json" else history_text(rows))


@main.command(context_settings=CONTEXT)
@click.argument("target")
@click.argument("run_id", required=False)
@click.argument("step", required=False)
@click.option("--stderr", "stream_err", is_flag=True, help="Show the step's stderr instead of its stdout.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the step writes, until the run ends.")
def logs(target: str, run_id: str | None, step: str | None, stream_err: bool, follow: bool) -> None:
    """Print a step's output (or, without STEP, every step's, in order)."""
    import time

    doc = _run_doc(target, run_id if run_id not in (None, "latest") else None)
    steps = [s for s in doc["steps"] if step is None or s["step"] == step]
    if step is not None and not steps:
        click.echo(f"dagctl: run {doc['id']} has no step {step!r}", err=True)
        raise ExitWith(1)
    key = "stderr_path" if stream_err else "stdout_path"
    for s in steps:
        if step is None:
            click.echo(f"==> {s['step']} ({s['status']}) <==")
        path = s[key]
        offset = 0
        while True:
            try:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                chunk = b""
            if chunk:
                offset += len(chunk)
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            if not follow:
                break
            current = _run_doc(target, doc["id"])
            mine = [x for x in current["steps"] if x["step"] == s["step"]]
            if (
                current["status"] not in ("running", "queued")
                and (not mine or mine[0]["status"] not in ("running", "retrying"))
                and not chunk
            ):
                break
            time.sleep(0.2)


@main.command(context_settings=CONTEXT)
@click.argument("target")
@click.argument("run_id", required=False)
def stop(target: str, run_id: str | None) -> None:
    """Stop a running run: its steps' process groups are killed and the run ends aborted."""
    import os
    import signal
    import time

    client = _daemon(required=False)
    if client is not None:
        with contextlib.closing(client):
            result = _rpc(client, "run.stop", name=_dag_name(target), run_id=run_id)
        click.echo(f"run {', '.join(result['stopped'])} stopped")
        return
    doc = _run_doc(target, run_id)
    if doc["status"] not in ("running", "queued"):
        click.echo(f"dagctl: run {doc['id']} is not running (status {doc['status']})", err=True)
        raise ExitWith(1)
    pid = doc.get("runner_pid")
    if pid and _is_daemon(pid):
        click.echo(
            f"dagctl: run {doc['id']} belongs to dagd (pid {pid}), which does not answer at {config.socket_path()}",
            err=True,
        )
        raise ExitWith(1)
    try:
        if not pid:
            raise ProcessLookupError
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        click.echo(f"dagctl: the process that ran {doc['id']} is gone; killing its step groups", err=True)
        for s in doc["steps"]:
            if s["status"] in ("running", "retrying") and s["pgid"]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(s["pgid"], signal.SIGKILL)
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _run_doc(target, doc["id"])["status"] not in ("running", "queued"):
            click.echo(f"run {doc['id']} stopped")
            return
        time.sleep(0.1)
    click.echo(f"dagctl: run {doc['id']} did not stop within 30s", err=True)
    raise ExitWith(1)


@main.command(context_settings=CONTEXT)
@click.argument("target")
@click.argument("run_id")
def retry(target: str, run_id: str) -> None:
    """Run a recorded run again under the same id: steps that succeeded keep their results
    (and outputs), failed, aborted and never-started steps run again with the same params."""
    client = _daemon(required=False)
    if client is not None:
        from dagctl.client import Client

        with contextlib.closing(client):
            watcher = Client(client.path)
            events = watcher.events()  # subscribe before the run starts: no event is missed
            _rpc(client, "run.retry", name=_dag_name(target), run_id=run_id)
            _follow(client, _dag_name(target), run_id, watcher, events)
        return
    from dagd.engine.local import resume_from, run_local

    doc = _run_doc(target, run_id)
    if doc["status"] in ("running", "queued"):
        click.echo(f"dagctl: run {run_id} is still {doc['status']}", err=True)
        raise ExitWith(1)
    try:
        loaded = load(doc["file"])
    except SpecError as exc:
        for d in exc.diagnostics:
            click.echo(d.render(), err=True)
        raise ExitWith(1) from None
    overrides, kept = resume_from(doc)
    code = run_local(
        loaded.dag,
        state_dir=str(config.state_dir()),
        params=overrides,
        run_id=run_id,
        trigger="retry",
        default_shell=config.default_shell(),
        resume=kept,
    )
    if code:
        raise ExitWith(code)


def _is_daemon(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
        return b"dagd.daemon" in argv or any(a.endswith(b"/dagd") or a == b"dagd" for a in argv[:2])
    except OSError:
        return False


def _is_file_outside_daemon(target: str) -> bool:
    """A path to a file (not a bare name of the DAGs folder) runs in this process."""
    return ("/" in target or target.endswith((".yaml", ".yml"))) and Path(target).exists()


def _daemon(required: bool = True) -> Any:
    from dagctl.client import connect

    client = connect(str(config.socket_path()))
    if client is None and required:
        click.echo(f"dagctl: no dagd answering at {config.socket_path()} (start it, or set DAGD_SOCKET)", err=True)
        raise ExitWith(1)
    return client


def _rpc(client: Any, method: str, **params: Any) -> Any:
    from dagctl.client import RpcError

    try:
        return client.call(method, **params)
    except RpcError as exc:
        click.echo(f"dagctl: {exc.message}", err=True)
        raise ExitWith(1) from None


def _run_in_daemon(
    client: Any, name: str, params: list[str], param_string: str | None, run_id: str | None, as_json: bool
) -> None:
    from dagctl.client import Client

    overrides = ([param_string] if param_string else []) + params
    watcher = Client(client.path)
    events = watcher.events()
    rid = _rpc(client, "run.start", name=name, params=overrides, run_id=run_id)["run_id"]
    click.echo(f"run {rid} of {name} started in dagd (following it; Ctrl-C stops following, not the run)", err=True)
    _follow(client, name, rid, watcher, events, as_json)


def _follow(client: Any, name: str, rid: str, watcher: Any = None, events: Any = None, as_json: bool = False) -> None:
    """Print a daemon run's events until it finishes; exit 1 unless it succeeded."""
    from dagctl.client import Client
    from dagd.engine.status import StepStatus

    if watcher is None:
        watcher = Client(client.path)
        events = watcher.events()
    status = None
    try:
        for ev in events:
            if ev.get("run_id") != rid:
                continue
            if ev["type"] == "StepChanged" and ev["status"] != StepStatus.NOT_STARTED.value:
                extra = (
                    f" (exit {ev['exit_code']})" if ev["status"] == "failed" and ev.get("exit_code") is not None else ""
                )
                click.echo(f"{ev['step']} {ev['status']}{extra}", err=True)
            elif ev["type"] == "RunFinished":
                status = ev["status"]
                click.echo(f"run {rid} {status}" + (f": {ev['error']}" if ev.get("error") else ""), err=True)
                break
    except KeyboardInterrupt:
        click.echo(f"stopped following; the run goes on (dagctl stop {name} {rid})", err=True)
        raise ExitWith(130) from None
    finally:
        watcher.close()
    if as_json:
        click.echo(json.dumps(_rpc(client, "run.status", name=name, run_id=rid), indent=2))
    if status != "succeeded":
        raise ExitWith(1)


@main.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_cmd(as_json: bool) -> None:
    """The DAGs dagd knows: schedule, next fire, last status, suspended."""
    from dagctl.render import table

    client = _daemon()
    with contextlib.closing(client):
        rows = _rpc(client, "dag.list")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    body = [
        [
            r["name"],
            " | ".join(r["schedule"]) or "-",
            r["next_fire"] or "-",
            r["last_status"] or "-",
            "yes" if r["suspended"] else "",
            (r["error"] and "INVALID") or "",
        ]
        for r in rows
    ]
    click.echo(table(body, ["NAME", "SCHEDULE", "NEXT FIRE", "LAST STATUS", "SUSPENDED", ""]))


@main.command(context_settings=CONTEXT)
@click.argument("name")
@click.argument("params", nargs=-1)
@click.option("--params", "params_opt", default=None, help='Parameters: "K=V K2=V2".')
@click.option("--run-id", default=None, help="Use this run id.")
def enqueue(name: str, params: tuple[str, ...], params_opt: str | None, run_id: str | None) -> None:
    """Queue a run of NAME in dagd; it starts when max_active_runs and the global limit allow."""
    client = _daemon()
    with contextlib.closing(client):
        result = _rpc(
            client, "run.enqueue", name=name, params=([params_opt] if params_opt else []) + list(params), run_id=run_id
        )
    click.echo(result["run_id"])


@main.command(context_settings=CONTEXT)
@click.argument("name")
@click.argument("run_id")
def dequeue(name: str, run_id: str) -> None:
    """Take a queued run out of the queue (it is recorded aborted)."""
    client = _daemon()
    with contextlib.closing(client):
        _rpc(client, "run.dequeue", name=name, run_id=run_id)
    click.echo(f"run {run_id} dequeued")


@main.command(context_settings=CONTEXT)
@click.argument("name")
def suspend(name: str) -> None:
    """Stop scheduling NAME (manual runs still work)."""
    client = _daemon()
    with contextlib.closing(client):
        _rpc(client, "dag.suspend", name=name)
    click.echo(f"{name} suspended")


@main.command(context_settings=CONTEXT)
@click.argument("name")
def resume(name: str) -> None:
    """Schedule NAME again."""
    client = _daemon()
    with contextlib.closing(client):
        _rpc(client, "dag.resume", name=name)
    click.echo(f"{name} resumed")


@main.command(context_settings=CONTEXT)
def reload() -> None:
    """Make dagd re-read the DAGs folder now; exit 1 when a file does not load."""
    client = _daemon()
    with contextlib.closing(client):
        result = _rpc(client, "daemon.reload")
    for file, error in result["errors"].items():
        click.echo(f"{file}: {error}", err=True)
    click.echo(f"{result['dags']} DAG files, {len(result['changed'])} changed")
    if result["errors"]:
        raise ExitWith(1)


@main.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True)
def daemon(as_json: bool) -> None:
    """Is dagd up? Its pid, uptime, DAG count, running runs, paths."""
    client = _daemon()
    with contextlib.closing(client):
        info = _rpc(client, "daemon.status")
    click.echo(json.dumps(info, indent=2) if as_json else "\n".join(f"{k:12} {v}" for k, v in info.items()))


def run() -> None:  # console-script entry point
    main(prog_name="dagctl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
