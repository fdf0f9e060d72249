"""`dagu` for steps: Dagu's CLI (start, enqueue, dequeue, stop, restart, retry, status, dry,
validate, version) with its flags, mapped onto dagctl. dagd writes a script that runs this module
into its state directory and puts that folder first on every step's PATH (dagd/shim.py), so
`dagu start child` in a step starts dagd's `child`, linked to the step's run (DAG_RUN_ID).

Flags of Dagu's that dagd has no meaning for are not accepted: click names them, exit 2."""

from __future__ import annotations

import os
import sys
import time

import click

from dagctl.base import CONTEXT
from dagd import __version__

HELP = {**CONTEXT, "help_option_names": ["-h", "--help"]}


def _dagctl(args: list[str]) -> None:
    """Run dagctl with `args` in this process; its exit code is ours."""
    from dagctl.cli import main
    from dagctl.client import DaemonUnavailable

    try:
        main.main(args=args, prog_name="dagu", standalone_mode=True)
    except DaemonUnavailable as exc:
        click.echo(f"dagu: {exc}", err=True)
        sys.exit(1)


def _parent() -> list[str]:
    """Inside a step of a dagd run: link the new run to it."""
    rid = os.environ.get("DAG_RUN_ID", "")
    return ["--parent", rid] if rid else []


def _params(params_opt: str | None, params: tuple[str, ...]) -> list[str]:
    return (["--params", params_opt] if params_opt else []) + (["--", *params] if params else [])


@click.group(context_settings=HELP)
def dagu() -> None:
    """Dagu's commands, run by dagd (this is not Dagu: see `dagctl --help` for dagd's own CLI)."""


@dagu.command(context_settings=HELP)
@click.option("-p", "--params", "params_opt", default=None, help='Parameters: "K=V K2=V2" or positional.')
@click.option("-r", "--run-id", default=None, help="The new run's id.")
@click.option("--trigger-type", default=None, help="Recorded trigger (manual, scheduler, webhook, …).")
@click.option("--schedule-time", default=None, help="The time this run stands for (RFC 3339).")
@click.argument("dag")
@click.argument("params", nargs=-1)
def start(
    params_opt: str | None,
    run_id: str | None,
    trigger_type: str | None,
    schedule_time: str | None,
    dag: str,
    params: tuple[str, ...],
) -> None:
    """Run DAG now and wait for it; exit 0 when it succeeds."""
    args = ["run", dag, *_parent()]
    args += ["--run-id", run_id] if run_id else []
    args += ["--trigger-type", trigger_type] if trigger_type else []
    args += ["--schedule-time", schedule_time] if schedule_time else []
    _dagctl(args + _params(params_opt, params))


@dagu.command(context_settings=HELP)
@click.option("-p", "--params", "params_opt", default=None, help='Parameters: "K=V K2=V2" or positional.')
@click.option("-r", "--run-id", default=None, help="The new run's id.")
@click.argument("dag")
@click.argument("params", nargs=-1)
def enqueue(params_opt: str | None, run_id: str | None, dag: str, params: tuple[str, ...]) -> None:
    """Queue a run of DAG in dagd; prints its run id."""
    args = ["enqueue", _name(dag), *_parent()] + (["--run-id", run_id] if run_id else [])
    _dagctl(args + _params(params_opt, params))


@dagu.command(context_settings=HELP)
@click.option("-d", "--dag-run", "dag_run", required=True, help="NAME:RUN_ID of the queued run.")
@click.argument("queue", required=False)
def dequeue(dag_run: str, queue: str | None) -> None:
    """Take a queued run out of the queue (dagd has one queue per DAG: QUEUE is its name)."""
    name, _, rid = dag_run.partition(":")
    if not name or not rid:
        raise click.UsageError(f"--dag-run must be NAME:RUN_ID, got {dag_run!r}")
    _dagctl(["dequeue", name, rid])


@dagu.command(context_settings=HELP)
@click.option("-r", "--run-id", default=None, help="Stop this run (default: every running run of DAG).")
@click.argument("dag")
def stop(run_id: str | None, dag: str) -> None:
    """Stop running runs of DAG."""
    _dagctl(["stop", _name(dag), *([run_id] if run_id else [])])


@dagu.command(context_settings=HELP)
@click.option("-r", "--run-id", default=None, help="The run to restart (default: the latest).")
@click.argument("dag")
def restart(run_id: str | None, dag: str) -> None:
    """Stop the run if it is running, wait the DAG's restart_wait_sec, start it again with the
    same params under a new run id."""
    from dagctl.base import load, run_doc

    doc = run_doc(_name(dag), run_id)
    if doc["status"] == "running":
        _call(["stop", doc["dag"], doc["id"]])
    wait = load(doc["file"]).dag.restart_wait_sec
    if wait:
        time.sleep(wait)  # Dagu's documented pause between stop and start, not a synchronisation
    named = doc.get("params", {}).get("named", {})
    positional = doc.get("params", {}).get("positional", [])
    _dagctl(["run", doc["dag"], *_parent(), "--", *positional, *(f"{k}={v}" for k, v in named.items())])


@dagu.command(context_settings=HELP)
@click.option("-r", "--run-id", required=True, help="The run to retry (same run id, a new attempt).")
@click.argument("dag")
def retry(run_id: str, dag: str) -> None:
    """Run what failed in a finished run again, under the same run id."""
    _dagctl(["retry", _name(dag), run_id])


@dagu.command(context_settings=HELP)
@click.option("-r", "--run-id", default=None, help="The run to show (default: the latest).")
@click.argument("dag")
def status(run_id: str | None, dag: str) -> None:
    """Show a run of DAG and its steps."""
    _dagctl(["status", _name(dag), *(["--run-id", run_id] if run_id else [])])


@dagu.command(context_settings=HELP)
@click.option("-p", "--params", "params_opt", default=None, help='Parameters: "K=V K2=V2" or positional.')
@click.argument("dag")
@click.argument("params", nargs=-1)
def dry(params_opt: str | None, dag: str, params: tuple[str, ...]) -> None:
    """Show the plan of DAG without running anything."""
    _dagctl(["dry", dag, *_params(params_opt, params)])


@dagu.command(context_settings=HELP)
@click.option("--show-unresolved", is_flag=True, help="Also list references that resolve only at run time.")
@click.argument("dag")
def validate(show_unresolved: bool, dag: str) -> None:
    """Check DAG with `dagu validate`'s exact rules."""
    _dagctl(["validate", "--strict", *(["--show-unresolved"] if show_unresolved else []), dag])


@dagu.command(context_settings=HELP)
def version() -> None:
    """dagd's version (this `dagu` is dagd's mapping of Dagu's CLI)."""
    click.echo(f"{__version__} (dagd)")


def _name(dag: str) -> str:
    """A DAG name for commands about runs: Dagu accepts a file too."""
    from dagctl.base import dag_name

    return dag_name(dag)


def _call(args: list[str]) -> None:
    """dagctl `args`, going on unless it failed."""
    from dagctl.cli import main

    try:
        main.main(args=args, prog_name="dagu", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


def run() -> None:  # python -m dagctl.dagu
    dagu(prog_name="dagu")


if __name__ == "__main__":
    run()
