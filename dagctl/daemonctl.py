"""dagctl commands that need the daemon: list, enqueue, dequeue, suspend, resume, reload, daemon."""

from __future__ import annotations

import contextlib
import json

import click

from dagctl.base import CONTEXT, ExitWith, daemon_client, rpc


@click.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_cmd(as_json: bool) -> None:
    """The DAGs dagd knows: schedule, next fire, last status, suspended."""
    from dagctl.render import table

    client = daemon_client()
    with contextlib.closing(client):
        rows = rpc(client, "dag.list")
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


@click.command(context_settings=CONTEXT)
@click.argument("name")
@click.argument("params", nargs=-1)
@click.option("--params", "params_opt", default=None, help='Parameters: "K=V K2=V2".')
@click.option("--run-id", default=None, help="Use this run id.")
@click.option("--parent", default=None, hidden=True, help="The run this one belongs to (set by `dagu enqueue`).")
def enqueue(
    name: str, params: tuple[str, ...], params_opt: str | None, run_id: str | None, parent: str | None = None
) -> None:
    """Queue a run of NAME in dagd; it starts when max_active_runs and the global limit allow."""
    client = daemon_client()
    extra = {"parent": parent} if parent else {}
    with contextlib.closing(client):
        result = rpc(
            client,
            "run.enqueue",
            name=name,
            params=([params_opt] if params_opt else []) + list(params),
            run_id=run_id,
            **extra,
        )
    click.echo(result["run_id"])


@click.command(context_settings=CONTEXT)
@click.argument("name")
@click.argument("run_id")
def dequeue(name: str, run_id: str) -> None:
    """Take a queued run out of the queue (it is recorded aborted)."""
    client = daemon_client()
    with contextlib.closing(client):
        rpc(client, "run.dequeue", name=name, run_id=run_id)
    click.echo(f"run {run_id} dequeued")


@click.command(context_settings=CONTEXT)
@click.argument("name")
def suspend(name: str) -> None:
    """Stop scheduling NAME (manual runs still work)."""
    client = daemon_client()
    with contextlib.closing(client):
        rpc(client, "dag.suspend", name=name)
    click.echo(f"{name} suspended")


@click.command(context_settings=CONTEXT)
@click.argument("name")
def resume(name: str) -> None:
    """Schedule NAME again."""
    client = daemon_client()
    with contextlib.closing(client):
        rpc(client, "dag.resume", name=name)
    click.echo(f"{name} resumed")


@click.command(context_settings=CONTEXT)
def reload() -> None:
    """Make dagd re-read the DAGs folder now; exit 1 when a file does not load."""
    client = daemon_client()
    with contextlib.closing(client):
        result = rpc(client, "daemon.reload")
    for file, error in result["errors"].items():
        click.echo(f"{file}: {error}", err=True)
    click.echo(f"{result['dags']} DAG files, {len(result['changed'])} changed")
    if result["errors"]:
        raise ExitWith(1)


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True)
def daemon(as_json: bool) -> None:
    """Is dagd up? Its pid, uptime, DAG count, running runs, paths."""
    client = daemon_client()
    with contextlib.closing(client):
        info = rpc(client, "daemon.status")
    click.echo(json.dumps(info, indent=2) if as_json else "\n".join(f"{k:12} {v}" for k, v in info.items()))


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True)
def nodes(as_json: bool) -> None:
    """The dagd nodes of this store: labels, capacity, last heartbeat, what each runs."""
    client = daemon_client()
    with contextlib.closing(client):
        rows = rpc(client, "daemon.nodes")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    lines = [f"{'NODE':20} {'HOST':16} {'HEARTBEAT':>10} {'RUNNING':>8}  LABELS"]
    for n in rows:
        labels = ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items())) or "-"
        beat = f"{float(n['age']):.0f}s ago"
        lines.append(f"{n['id']:20} {n['host']:16} {beat:>10} {len(n['running']):>3}/{n['capacity']:<4}  {labels}")
        lines += [f"{'':20} └ {r['dag']} {r['id']}" for r in n["running"]]
    click.echo("\n".join(lines))


@click.command(context_settings=CONTEXT)
@click.option("--open/--no-open", "open_browser", default=None, help="Open the link in a browser [where one exists].")
def ui(open_browser: bool | None) -> None:
    """Print a one-time link that logs this browser into dagd's web UI (valid for two minutes).

    dagd hands it only to those its control socket lets in (root, its own user, group dagd), so
    the link is how an SSH tunnel or another user's browser gets in without a password."""
    import os

    client = daemon_client()
    with contextlib.closing(client):
        link = rpc(client, "daemon.login_link")
    click.echo(link["url"])
    if open_browser is None:
        open_browser = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if open_browser:
        import webbrowser

        webbrowser.open(link["url"])


@click.command("prepare-stop", context_settings=CONTEXT)
@click.option("--keep-runs/--stop-runs", "keep", default=None, help="The coming stop is a restart / a stop.")
@click.option("--systemd-unit", default=None, metavar="UNIT", help="Ask systemd: a restart job of UNIT keeps runs.")
@click.option("--user-unit", is_flag=True, help="UNIT is one of the user's service manager.")
def prepare_stop(keep: bool | None, systemd_unit: str | None, user_unit: bool) -> None:
    """Tell dagd what its next SIGTERM is: a restart, whose running runs go on and are re-attached
    by the next dagd (on_restart: reattach), or a stop, which aborts them. dagd.service's ExecStop=
    calls it with --systemd-unit; it never fails a stop (exit 0 when dagd is not there)."""
    if systemd_unit:
        keep = _restart_job(systemd_unit, user_unit)
        if keep is None:
            return  # no job (dagd exited by itself, or systemctl is missing): dagd's default stands
    if keep is None:
        raise click.UsageError("give --keep-runs, --stop-runs or --systemd-unit")
    client = daemon_client(required=systemd_unit is None)
    if client is None:
        return
    with contextlib.closing(client):
        try:
            result = rpc(client, "daemon.prepare_stop", keep_runs=keep)
        except ExitWith:
            if systemd_unit is None:
                raise
            return  # an older dagd that knows no prepare_stop: it stops as it always did
    kept = "left running for the next dagd" if result["keep_runs"] else "aborted"
    click.echo(f"on the coming stop, {result['running']} running run(s) will be {kept}")


def _restart_job(unit: str, user: bool) -> bool | None:
    """Whether systemd's job on `unit` is a restart (True), a stop (False), or unknown (None)."""
    import subprocess

    try:
        out = subprocess.run(
            ["systemctl", *(["--user"] if user else []), "list-jobs", "--no-legend", "--no-pager", "--full", unit],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == unit:
            return "restart" in fields[2]
    return None
