"""dagctl commands about runs: run, status, history, logs, stop, retry."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from dagctl.base import (
    CONTEXT,
    ExitWith,
    daemon_client,
    dag_name,
    find_daemon,
    is_daemon,
    load,
    open_store,
    rpc,
    run_doc,
    runs_in_process,
    system_daemon_installed,
)
from dagd import config, names


@click.command("run", context_settings=CONTEXT)
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
@click.option("--local", is_flag=True, help="Run a named DAG in this process even though a system dagd is installed.")
@click.option(
    "--parent", default=None, hidden=True, help="The run this one belongs to (set by `dagu start` in a step)."
)
def run_cmd(
    target: str,
    params: tuple[str, ...],
    params_opt: str | None,
    run_id: str | None,
    trigger_type: str,
    schedule_time: str | None,
    as_json: bool,
    local: bool,
    parent: str | None = None,
) -> None:
    """Run a DAG (a file, or a name in the DAGs folder) to its end, with live progress.

    Exit code 0 when the run succeeds, 1 otherwise. Ctrl-C aborts the run: every step's
    process group is killed and the run is recorded as aborted.
    """
    if run_id is not None and not names.is_run_id(run_id):
        click.echo(f"dagctl: {names.explain_run_id(run_id)}", err=True)
        raise ExitWith(2)
    in_process = runs_in_process(target)
    client, problem = (None, None) if in_process else find_daemon()
    if client is not None:
        with contextlib.closing(client):
            _run_in_daemon(client, target, list(params), params_opt, run_id, as_json, parent)
        return
    from dagd.engine.local import run_local
    from dagd.spec import SpecError

    if not in_process and (problem or "").startswith("permission denied"):
        click.echo(f"dagctl: {problem}", err=True)
        raise ExitWith(1)
    if not in_process and not local and system_daemon_installed():
        click.echo(
            f"dagctl: dagd is installed but does not answer at {config.SYSTEM_SOCKET}: start it "
            "(systemctl start dagd), or pass --local to run the DAG in this process as this user",
            err=True,
        )
        raise ExitWith(1)
    if not in_process and any(p.exists() for p in config.socket_candidates()):
        click.echo(f"dagctl: {problem}; running in this process", err=True)
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
    try:
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
            parent_run=parent,
        )
    finally:
        give_state_back(loaded.dag.name)
    if code:
        raise ExitWith(code)


def give_state_back(dag: str) -> None:
    """After root ran a DAG in-process with the system state dir (`--local`), what it wrote there
    goes back to the dagd user: root-owned logs or a root-owned database would break every later
    run of the daemon."""
    import os
    import pwd

    state = config.state_dir()
    if os.geteuid() != 0 or state != config.SYSTEM_STATE_DIR:
        return
    try:
        owner = pwd.getpwnam("dagd")
    except KeyError:
        return
    tops = [state / "logs" / dag, state / "work" / dag, state / "logs", state / "work"]
    paths = [*state.glob("dagd.db*"), *tops]
    for top in tops[:2]:
        for folder, dirs, files in os.walk(top):
            paths += [Path(folder, n) for n in dirs + files]
    for path in paths:
        with contextlib.suppress(OSError):
            if path.lstat().st_uid == 0:
                os.lchown(path, owner.pw_uid, owner.pw_gid)


@click.command(context_settings=CONTEXT)
@click.argument("target")
@click.argument("run_id", required=False)
@click.option("--run-id", "run_id_opt", default=None, help="The run to show (Dagu's spelling of RUN_ID).")
@click.option("--json", "as_json", is_flag=True, help="Print the run document as JSON.")
def status(target: str, run_id: str | None, run_id_opt: str | None, as_json: bool) -> None:
    """Show a run (the latest unless RUN_ID is given): its status and every step's."""
    from dagctl.render import status_text

    doc = run_doc(target, run_id or run_id_opt)
    click.echo(json.dumps(doc, indent=2) if as_json else status_text(doc))


@click.command(context_settings=CONTEXT)
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

    name = dag_name(target) if target else None
    client = daemon_client(required=False)
    if client is not None:
        with contextlib.closing(client):
            rows = rpc(client, "run.history", name=name, limit=limit, status=status_filter, run_id=run_id)
    else:
        store = open_store()
        try:
            rows = store.history(name, limit, status_filter, run_id)
        finally:
            store.close()
    click.echo(json.dumps(rows, indent=2) if as_json or fmt == "json" else history_text(rows))


@click.command(context_settings=CONTEXT)
@click.argument("target")
@click.argument("run_id", required=False)
@click.argument("step", required=False)
@click.option("--stderr", "stream_err", is_flag=True, help="Show the step's stderr instead of its stdout.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the step writes, until the run ends.")
def logs(target: str, run_id: str | None, step: str | None, stream_err: bool, follow: bool) -> None:
    """Print a step's output (or, without STEP, every step's, in order)."""
    import time

    client = daemon_client(required=False)
    if client is not None:  # through dagd: secrets masked even while the step runs
        with contextlib.closing(client):
            _logs_from_daemon(
                client, dag_name(target), run_id if run_id != "latest" else None, step, stream_err, follow
            )
        return
    doc = run_doc(target, run_id if run_id not in (None, "latest") else None)
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
            current = run_doc(target, doc["id"])
            mine = [x for x in current["steps"] if x["step"] == s["step"]]
            if (
                current["status"] not in ("running", "queued")
                and (not mine or mine[0]["status"] not in ("running", "retrying"))
                and not chunk
            ):
                break
            time.sleep(0.2)


def _logs_from_daemon(
    client: Any, name: str, run_id: str | None, step: str | None, stream_err: bool, follow: bool
) -> None:
    import time

    stream = "stderr" if stream_err else "stdout"
    if not follow:
        result = rpc(client, "run.logs", name=name, run_id=run_id, step=step, stream=stream)
        for s in result["steps"]:
            if step is None:
                click.echo(f"==> {s['step']} ({s['status']}) <==")
            sys.stdout.write(s["text"])
        sys.stdout.flush()
        return
    rid = rpc(client, "run.status", name=name, run_id=run_id)["id"]
    shown = rpc(client, "run.logs", name=name, run_id=rid, step=step, stream=stream, offset=0)["steps"]
    for s in shown if step is None else [x for x in shown if x["step"] == step]:
        if step is None:
            click.echo(f"==> {s['step']} ({s['status']}) <==")
        offset = 0
        while True:
            got = rpc(client, "run.logs", name=name, run_id=rid, step=s["step"], stream=stream, offset=offset)
            item = got["steps"][0]
            if item["text"]:
                sys.stdout.write(item["text"])
                sys.stdout.flush()
            moved = item["next_offset"] != offset
            offset = item["next_offset"]
            if not moved and (
                got["status"] not in ("running", "queued")
                or item["status"] not in ("running", "retrying", "not_started")
            ):
                break
            if not moved:
                time.sleep(0.2)


@click.command(context_settings=CONTEXT)
@click.argument("target")
@click.argument("run_id", required=False)
def stop(target: str, run_id: str | None) -> None:
    """Stop a running run: its steps' process groups are killed and the run ends aborted."""
    import os
    import signal
    import time

    client = daemon_client(required=False)
    if client is not None:
        with contextlib.closing(client):
            result = rpc(client, "run.stop", name=dag_name(target), run_id=run_id)
        click.echo(f"run {', '.join(result['stopped'])} stopped")
        return
    doc = run_doc(target, run_id)
    if doc["status"] not in ("running", "queued"):
        click.echo(f"dagctl: run {doc['id']} is not running (status {doc['status']})", err=True)
        raise ExitWith(1)
    pid = doc.get("runner_pid")
    if pid and is_daemon(pid):
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
        from dagd.cgroups import kill_recorded
        from dagd.procfs import kill_group_we_started

        click.echo(f"dagctl: the process that ran {doc['id']} is gone; killing what it started", err=True)
        left = kill_recorded(doc.get("cgroup"))
        if left:
            click.echo(f"dagctl: {left}", err=True)
        for s in doc["steps"]:
            if s["status"] in ("running", "retrying") and s["pgid"]:
                spared = kill_group_we_started(s["pgid"], s.get("pgid_identity"))
                if spared:
                    click.echo(f"dagctl: step {s['step']}: {spared}", err=True)
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if run_doc(target, doc["id"])["status"] not in ("running", "queued"):
            click.echo(f"run {doc['id']} stopped")
            return
        time.sleep(0.1)
    click.echo(f"dagctl: run {doc['id']} did not stop within 30s", err=True)
    raise ExitWith(1)


@click.command(context_settings=CONTEXT)
@click.argument("target")
@click.argument("run_id")
def retry(target: str, run_id: str) -> None:
    """Run a recorded run again under the same id: steps that succeeded keep their results
    (and outputs), failed, aborted and never-started steps run again with the same params."""
    client = daemon_client(required=False)
    if client is not None:
        from dagctl.client import Client

        with contextlib.closing(client):
            watcher = Client(client.path)
            events = watcher.events()  # subscribe before the run starts: no event is missed
            rpc(client, "run.retry", name=dag_name(target), run_id=run_id)
            _follow(client, dag_name(target), run_id, watcher, events)
        return
    from dagd.engine.local import resume_from, run_local
    from dagd.spec import SpecError

    doc = run_doc(target, run_id)
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


def _run_in_daemon(
    client: Any,
    name: str,
    params: list[str],
    param_string: str | None,
    run_id: str | None,
    as_json: bool,
    parent: str | None = None,
) -> None:
    from dagctl.client import Client

    overrides = ([param_string] if param_string else []) + params
    watcher = Client(client.path)
    events = watcher.events()
    extra = {"parent": parent} if parent else {}
    rid = rpc(client, "run.start", name=name, params=overrides, run_id=run_id, **extra)["run_id"]
    click.echo(f"run {rid} of {name} started in dagd (following it; Ctrl-C stops following, not the run)", err=True)
    _follow(client, name, rid, watcher, events, as_json)


def _follow(client: Any, name: str, rid: str, watcher: Any = None, events: Any = None, as_json: bool = False) -> None:
    """Print a daemon run's events until it finishes; exit 1 unless it succeeded."""
    from dagctl.client import Client

    if watcher is None:
        watcher = Client(client.path)
        events = watcher.events()
    from dagctl.client import EventsDropped
    from dagd.engine.terminal import event_from_dict, terminal_view

    view = terminal_view(sys.stderr, f"{name}  run {rid}")
    status = None
    try:
        while status is None:
            try:
                for ev in events:
                    if ev.get("run_id") != rid:
                        continue
                    event = event_from_dict(ev)
                    if event is not None:
                        view(event)
                    if ev["type"] == "RunFinished":
                        status = ev["status"]
                        break
            except EventsDropped:
                # fell behind: subscribe again, then ask where the run is (nothing is missed
                # between the two), and go on from there
                watcher.close()
                watcher = Client(client.path)
                events = watcher.events()
                doc = rpc(client, "run.status", name=name, run_id=rid)
                click.echo(f"(caught up from dagd: run {rid} is {doc['status']})", err=True)
                if doc["status"] not in ("running", "queued", "not_started"):
                    status = doc["status"]
    except KeyboardInterrupt:
        click.echo(f"stopped following; the run goes on (dagctl stop {name} {rid})", err=True)
        raise ExitWith(130) from None
    finally:
        watcher.close()
    if as_json:
        click.echo(json.dumps(rpc(client, "run.status", name=name, run_id=rid), indent=2))
    if status != "succeeded":
        raise ExitWith(1)
