"""dagd: one trio.run with the scheduler, the queue, the runs, and the control socket.

Start-up: reconcile what a previous process left running (kill its orphaned step groups, mark
the runs failed), load the DAGs folder, bind the socket, then READY=1. SIGHUP reloads, SIGTERM
stops scheduling, aborts running runs (their groups killed, handlers run, state recorded) and
exits 0.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import trio

from dagd import __version__, access, cgroups, config, peers, rpc
from dagd.access import Principal
from dagd.catalog import Catalog
from dagd.engine import reattach
from dagd.engine.process import become_subreaper, reap_orphans
from dagd.firing import scaled_clock, scheduler_loop
from dagd.journal import setup_logging
from dagd.service import Service
from dagd.sessions import Sessions
from dagd.settings import (
    FileSettings,
    Options,
    SettingsError,
    check_bind,
    check_chain_rule,
    check_timezone,
    env_settings,
    read_config,
    where,
)
from dagd.spec.errors import SpecError
from dagd.spec.load import load_file, set_chain_rule
from dagd.spec.model import ChainRule, Dag
from dagd.store.db import Store, runner_alive
from dagd.systemd import Notifier, listen_fds

log = logging.getLogger("dagd")


def http_hosts(bind: str, extra: tuple[str, ...]) -> set[str]:
    host = bind.rsplit(":", 1)[0]
    return {"localhost", "127.0.0.1", "[::1]", host, *extra}


class StartupError(Exception):
    """dagd cannot start as configured; the message says why and what to change."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def bind_http(address: str) -> int:
    """Listen on host:port now, so a taken port is a clear start-up error, not a traceback."""

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except (OSError, ValueError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartupError(
            f"cannot listen for HTTP on {address}: {reason} (another dagd? use --http-bind or --no-http)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock.detach()


def listener_address(fd: int) -> tuple[str, int]:
    """(host, port) a listening socket is bound to: what clients can really reach."""

    sock = socket.socket(fileno=os.dup(fd))
    try:
        name = sock.getsockname()
    finally:
        sock.close()
    if isinstance(name, str):  # a Unix socket: reachable by whoever its mode lets in
        return name, 0
    return str(name[0]), int(name[1])


async def serve_http(
    svc: Service,
    opts: Options,
    fd: int,
    sessions: Sessions,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    from dagd.http.app import create_app
    from dagd.http.auth import Auth

    cfg = Config()
    cfg.bind = [f"fd://{fd}"]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")  # through dagd's handler (journald priorities)
    cfg.graceful_timeout = 1.0
    auth = Auth.from_config(opts.http_auth, opts.api_token)
    app = create_app(svc, http_hosts(opts.http_bind or "127.0.0.1:8090", opts.http_hosts), auth, sessions)
    task_status.started()
    await serve(app, cfg, shutdown_trigger=trio.sleep_forever)  # type: ignore[arg-type]


def check_http_listener(fd: int, auth_enabled: bool) -> tuple[str, int]:
    """The listener's real address; a non-loopback one without credentials is refused, whether
    it came from --http-bind, config.yaml or a socket passed by systemd."""
    host, port = listener_address(fd)
    if not auth_enabled and port and not peers.is_loopback(host):
        raise StartupError(
            f"refusing to serve HTTP on {host}:{port} (not loopback) without authentication: set http_auth "
            "(users with `dagd --hash-password` hashes, or tokens) or api_token in config.yaml, or listen on 127.0.0.1"
        )
    return host, port


def login_link(sessions: Sessions, address: tuple[str, int]) -> Callable[[Principal], dict[str, object]]:
    host, port = address
    shown = (
        "127.0.0.1"
        if host in ("0.0.0.0", "")
        else ("[::1]" if host == "::" else (f"[{host}]" if ":" in host else host))
    )

    def make(who: Principal) -> dict[str, object]:
        token = sessions.issue_link(who)
        return {"url": f"http://{shown}:{port}/login?token={token}", "expires_in": 120}

    return make


async def watch_catalog(svc: Service, poll: float) -> None:
    while True:
        await trio.sleep(poll)
        if await svc.refresh():
            svc.changed.set()


async def report_status(svc: Service, notifier: Notifier, every: float = 1.0) -> None:
    """STATUS= follows the DAG, running and queued counts, at most once every `every` seconds
    (`systemctl status dagd` shows it)."""
    last = ""
    while True:
        await svc.changed.wait()
        svc.changed = trio.Event()
        line = await status_line(svc)
        if line != last:
            notifier.status(line)
            last = line
        await trio.sleep(every)  # a throttle: a burst of runs is one update


HEARTBEAT_SEC = 5.0  # with store.LEASE_SEC = 20: a node missing about four beats loses its runs


async def heartbeat(svc: Service, on_restart: str) -> None:
    """This node is alive: its row in `nodes` and its runs' leases, every HEARTBEAT_SEC; and what
    the store says between nodes: stops asked of this node's runs, runs it no longer holds, runs
    of nodes whose lease ran out. A database that cannot be reached is logged and tried again;
    it never stops dagd."""
    import sqlite3

    from dagd.errors import ServiceError

    while True:
        try:
            await svc.maintain(on_restart)
        except (sqlite3.Error, ServiceError) as exc:  # (a full disk is already reported as degraded)
            log.warning("heartbeat: the store cannot be written: %s", exc)
        with trio.move_on_after(HEARTBEAT_SEC):  # or at once when another node says so (NOTIFY)
            await svc.poked.wait()
        svc.poked = trio.Event()


async def listen_store(svc: Service) -> None:
    """PostgreSQL only: another node's NOTIFY (a run queued, a stop asked) wakes this node at once."""
    import threading

    if not svc.store.postgres:
        return
    token = trio.lowlevel.current_trio_token()
    stop = threading.Event()

    def wake() -> None:
        with contextlib.suppress(trio.RunFinishedError):  # dagd is stopping
            trio.from_thread.run_sync(svc.poke, trio_token=token)

    try:
        await trio.to_thread.run_sync(svc.store.listen, stop, wake, abandon_on_cancel=True)
    finally:
        stop.set()


async def reaper() -> None:
    while True:
        await trio.sleep(1.0)
        reap_orphans()


async def watchdog(notifier: Notifier) -> None:
    while True:
        notifier.watchdog()
        await trio.sleep(notifier.watchdog_sec / 2)


async def status_line(svc: Service) -> str:
    if svc.degraded:
        return f"DEGRADED: {svc.degraded}; {len(svc.active)} running"
    queued = len(await svc.queue())
    return f"{len(svc.catalog.entries)} DAGs, {len(svc.active)} running, {queued} queued"


def mask_left_logs(doc: dict[str, object]) -> None:
    """The step logs of a run a dead dagd left behind, with its DAG's secrets masked (the step
    wrote them raw; masking happens when a step ends, which that dagd did not see).

    Every step log in the run's folder, not only those recorded: dagd can die after a step was
    spawned and before its start was committed."""
    from dagd.engine.environment import mask_file, secret_values
    from dagd.spec import SpecError, load_file

    try:
        secrets = secret_values(load_file(str(doc["file"])).dag)
    except (SpecError, OSError):
        return
    steps = doc.get("steps")
    paths = {
        str(step[key])
        for step in (steps if isinstance(steps, list) else [])
        for key in ("stdout_path", "stderr_path")
        if step.get(key)
    }
    log_dir = doc.get("log_dir")
    if isinstance(log_dir, str) and log_dir:
        for top, _dirs, files in os.walk(log_dir):  # (does not follow links)
            paths.update(os.path.join(top, f) for f in files if f.endswith((".out", ".err")))
    for path in sorted(paths):
        try:
            mask_file(path, secrets)
        except OSError as exc:
            log.warning("run %s: cannot mask secrets in %s: %s", doc["id"], path, exc)


def open_history(state_dir: str, url: str | None = None, node: str = "") -> Store:
    """The history database (SQLite in the state folder, or the PostgreSQL server at `url`),
    checked; one clear line (exit 3) when it cannot be used."""
    import sqlite3

    path = os.path.join(state_dir, "dagd.db")
    try:
        os.makedirs(state_dir, exist_ok=True)
        store = Store(url or path)
        store.check()
        if not store.claim_node(node):
            store.close()
            raise StartupError(
                f"another dagd runs as node {node!r} on this store ({store.where}): give each dagd its own node_id",
                code=3,
            )
        store.node = node or None  # before stale_runs: only this node's runs are its to reconcile
        store.stale_runs()
        return store
    except sqlite3.DatabaseError as exc:
        if url:
            where = Store.describe(url)
            raise StartupError(f"the run store {where} cannot be used: {exc}", code=3) from None
        raise StartupError(
            f"the history database {path} cannot be used ({exc}): move it aside (mv {path} {path}.broken) and "
            "start dagd again to begin a new history, or restore it from a backup",
            code=3,
        ) from None
    except OSError as exc:
        raise StartupError(f"the state folder {state_dir} cannot be used: {exc.strerror or exc}", code=3) from None
    except ImportError as exc:  # psycopg finds no libpq: the package only recommends it
        raise StartupError(
            f"the run store {Store.describe(url or '')} needs PostgreSQL's client library, libpq:"
            f" install libpq5 (Debian) or libpq (RPM) ({str(exc).splitlines()[0]})",
            code=3,
        ) from None


async def main(opts: Options) -> None:
    # worker threads parse YAML and hash passwords while the loop serves: hand the interpreter
    # lock over every millisecond (not 5), so a request waits little behind them
    sys.setswitchinterval(0.001)
    set_chain_rule(ChainRule(opts.classic_chain))
    # steps' `dagu` / `dagctl` reach this daemon, its DAGs and its history (dagd/shim.py)
    os.environ.update(DAGD_SOCKET=opts.socket, DAGD_DAGS_DIR=opts.dags_dir, DAGD_STATE_DIR=opts.state_dir)
    notifier = Notifier()
    # the HTTP listener first: a taken port, or a non-loopback address without credentials (judged
    # by where the socket really listens, also when systemd passed it), stops dagd before it
    # touches its history
    fds = listen_fds()
    http_fd = fds.get("http")
    if http_fd is None and opts.http_bind:
        http_fd = bind_http(opts.http_bind)
    if http_fd is not None:
        from dagd.http.auth import Auth

        address = check_http_listener(http_fd, Auth.from_config(opts.http_auth, opts.api_token).enabled)
    store = open_history(opts.state_dir, opts.store, opts.node_id)
    become_subreaper()
    contained = cgroups.current(opts.state_dir)  # before any run: dagd may move itself into <its cgroup>/daemon
    log.info("containment: %s", contained.summary)
    reattaching: list[tuple[Dag, dict[str, Any]]] = []
    for run_id in store.stale_runs():
        try:
            doc = store.run_by_id(run_id)
            if opts.on_restart == "reattach" and doc is not None:
                found = reattachable(store, doc)
                if found is not None:
                    reattaching.append(found)
                    continue
            queued = opts.on_restart == "reattach" and doc is not None and doc.get("status") == "queued"
            if queued and store.put_back(run_id):  # taken from the queue, not started: nothing of it ran
                log.warning("run %s was taken from the queue but not started by a previous dagd: queued again", run_id)
                continue
            new_id = store.reconcile(run_id, "daemon restart", "failed", requeue=opts.on_restart == "requeue")
            if new_id is None:
                continue  # ended meanwhile (another node took it over)
            full = store.run(doc["dag"], run_id) if doc is not None else None
            if full is not None:
                mask_left_logs(full)
            log.warning("run %s was left running by a previous dagd: recorded failed (daemon restart)", run_id)
            if new_id:
                log.warning("run %s re-queued as %s (on_restart: requeue)", run_id, new_id)
        except (sqlite3.Error, OSError) as exc:  # a full disk: recorded at a later start
            log.error("run %s was left running and cannot be recorded ended now: %s", run_id, exc)
    going_on = {doc["id"] for _, doc in reattaching}
    for run_id, log_dir in reattach.registered(opts.state_dir).items():
        if run_id in going_on:
            continue  # kept for this dagd, re-attached below
        for note in reattach.end_left(log_dir):  # taken over, or recorded failed above: no step outlives it
            log.warning("run %s: %s", run_id, note)
        reattach.unregister(opts.state_dir, run_id, log_dir)
    if contained.tree is not None:
        for gone in cgroups.iter_leftover_roots(contained.tree):  # empty subtrees of dagd processes now gone
            cgroups.remove_tree(gone)
    catalog = Catalog(opts.dags_dir, config.base_config())
    catalog.refresh()
    for path, problem in catalog.problems().items():
        log.error("DAG file %s: %s", path, problem)
    import zoneinfo

    svc = Service(
        catalog,
        store,
        opts.state_dir,
        max_concurrent_runs=opts.max_concurrent_runs,
        default_tz=zoneinfo.ZoneInfo(opts.timezone) if opts.timezone else None,
        default_shell=config.default_shell(),
        rule=access.Rule(None if opts.user else opts.group),
        node=(opts.node_id, opts.node_labels or {}),
    )

    def on_reload() -> None:  # `dagctl reload` is announced to systemd like SIGHUP
        notifier.reloading()

    svc.before_reload = on_reload

    def after_reload() -> None:
        notifier.ready()
        svc.changed.set()  # the new counts follow as STATUS=

    svc.after_reload = after_reload
    svc.keep_runs = opts.on_restart == "reattach"
    sessions = Sessions()
    login = None
    if http_fd is not None:
        login = login_link(sessions, address)
    async with trio.open_nursery() as nursery:
        svc.nursery = nursery
        await nursery.start(
            lambda task_status: rpc.serve(
                opts.socket,
                svc,
                0o600 if opts.user else 0o660,
                task_status=task_status,
                listener_fd=fds.get("control"),
                login=login,
            )
        )
        for dag, doc in reattaching:  # before the scheduler: its overlap rules see them running
            svc.reattach(dag, doc)
        if os.environ.get("DAGD_SCHEDULER_CLOCK"):  # the chaos test and bench/: a shared fast clock
            nursery.start_soon(scheduler_loop, svc, *scaled_clock(os.environ["DAGD_SCHEDULER_CLOCK"]))
        else:
            nursery.start_soon(scheduler_loop, svc)
        nursery.start_soon(watch_catalog, svc, opts.poll_sec)
        nursery.start_soon(report_status, svc, notifier)
        nursery.start_soon(reaper)
        nursery.start_soon(heartbeat, svc, opts.on_restart)
        nursery.start_soon(listen_store, svc)
        if http_fd is not None:
            await nursery.start(serve_http, svc, opts, http_fd, sessions)
        if notifier.watchdog_sec:
            nursery.start_soon(watchdog, notifier)
        where = "passed by systemd" if "control" in fds else opts.socket
        log.info("dagd %s ready: %d DAGs from %s, socket %s", __version__, len(catalog.entries), opts.dags_dir, where)
        # the handlers are in place before READY=1: a stop that follows at once is a clean stop
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            await notifier.say("READY=1", f"STATUS={await status_line(svc)}")
            # what start-up built (modules, the app, the catalog) lives as long as dagd: out of the
            # collector's way, so a full collection costs what the running work holds, not all of it
            gc.collect()
            gc.freeze()
            if os.environ.get("DAGD_LOOP_WATCH_MS"):  # tests: no step may hold the loop (after start-up)
                from dagd.loopwatch import LoopWatch

                trio.lowlevel.add_instrument(LoopWatch(float(os.environ["DAGD_LOOP_WATCH_MS"])))
            async for sig in signals:
                if sig == signal.SIGHUP:
                    result = await svc.reload()  # announces RELOADING=1 … READY=1
                    log.info("reloaded: %d DAGs, %d changed", result["dags"], len(result["changed"]))
                    continue
                await notifier.say("STOPPING=1", within=1.0)
                keep = svc.next_stop_keeps if svc.next_stop_keeps is not None else not opts.stop_runs_on_stop
                if svc.active and svc.keep_runs and keep:
                    await leave_runs(svc, store, opts, fds)
                if svc.active and opts.stop_grace_sec:
                    log.info("stopping: waiting up to %gs for %d running runs", opts.stop_grace_sec, len(svc.active))
                    with trio.move_on_after(opts.stop_grace_sec):
                        while svc.active:
                            await trio.sleep(0.1)
                log.info("stopping: aborting %d running runs", len(svc.active))
                for active in list(svc.active.values()):
                    active.run.abort()
                    active.scope.cancel()
                deadline = time.monotonic() + 30
                while svc.active and time.monotonic() < deadline:
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
                break
    store.close()
    if os.path.exists(opts.socket) and not fds:
        os.unlink(opts.socket)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="dagd")
@click.option("--user", is_flag=True, help="Run as a user daemon with XDG paths.")
@click.option("--dags", "dags_dir", default=None, help="The DAGs folder (DAGD_DAGS_DIR).")
@click.option("--state", "state_dir", default=None, help="History and logs (DAGD_STATE_DIR).")
@click.option("--socket", "socket_path", default=None, help="The control socket (DAGD_SOCKET).")
@click.option("--max-concurrent-runs", default=None, type=int, help="Global limit on runs at once [8].")
@click.option("--poll", "poll_sec", default=None, type=float, help="Seconds between checks of the DAGs folder [2].")
@click.option(
    "--stop-grace", "stop_grace_sec", default=None, type=float, help="On SIGTERM, wait this long for runs [0]."
)
@click.option("--config", "config_path", default=None, help="Settings file (default: <config dir>/config.yaml).")
@click.option("--http-bind", default=None, help="Address of the HTTP API and web UI [127.0.0.1:8090].")
@click.option("--no-http", is_flag=True, help="Serve no HTTP at all.")
@click.option(
    "--release-cgroup",
    is_flag=True,
    hidden=True,
    help="dagd.service's ExecStartPre=: let systemd place the new dagd beside runs that live on; exit.",
)
@click.option(
    "--hash-password",
    is_flag=True,
    help="Read a password (prompt, or stdin when piped), print its hash for http_auth.users, exit.",
)
def cli(
    user: bool,
    dags_dir: str | None,
    state_dir: str | None,
    socket_path: str | None,
    max_concurrent_runs: int | None,
    poll_sec: float | None,
    stop_grace_sec: float | None,
    config_path: str | None,
    http_bind: str | None,
    no_http: bool,
    hash_password: bool,
    release_cgroup: bool = False,
) -> None:
    """The dagd daemon: schedules and runs DAGs; dagctl drives it over its socket.

    Settings come from flags, then the environment (DAGD_*), then config.yaml, then defaults.
    """
    if release_cgroup:
        sys.exit(cgroups.release_main())
    if hash_password:
        from dagd.http.auth import hash_password as make_hash

        if sys.stdin.isatty():
            secret = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        else:
            secret = sys.stdin.readline().rstrip("\n")
        if not secret:
            raise click.ClickException("an empty password cannot be hashed")
        click.echo(make_hash(secret))
        return
    setup_logging()
    try:
        opts = resolve_options(
            config_path,
            user=user,
            flags={
                "dags_dir": dags_dir,
                "state_dir": state_dir,
                "socket": socket_path,
                "max_concurrent_runs": max_concurrent_runs,
                "poll_sec": poll_sec,
                "stop_grace_sec": stop_grace_sec,
                "http_bind": http_bind,
            },
            no_http=no_http,
        )
    except SettingsError as exc:
        click.echo(f"dagd: {exc}", err=True)
        sys.exit(2)
    try:
        trio.run(main, opts)
    except StartupError as exc:
        log.error("%s", exc)
        if exc.code != 1:  # said once, by the log line above
            sys.exit(exc.code)
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # a bug: said at critical priority, in one journal entry, then exit 1
        log.critical("dagd stopped by an unexpected error: %s: %s", type(exc).__name__, exc, exc_info=exc)
        sys.exit(1)


def reattachable(store: Store, doc: dict[str, Any]) -> tuple[Dag, dict[str, Any]] | None:
    """A run a previous dagd left running that this one can go on with: a top-level run (a
    sub-DAG's child is lost with the step that waited for it), whose DAG file still loads and
    has no DAG-level container (that container ended with its dagd)."""
    if doc.get("status") != "running" or doc.get("parent_run") or not doc.get("file"):
        return None
    if runner_alive(doc.get("runner_pid")):
        return None  # `dagctl run` of another process, still going
    try:
        dag = load_file(doc["file"]).dag
    except (SpecError, OSError) as exc:
        log.error("run %s cannot be re-attached: its DAG file %s does not load: %s", doc["id"], doc["file"], exc)
        return None
    if "container" in dag.extra:
        log.warning("run %s cannot be re-attached: its DAG-level container ended with the previous dagd", doc["id"])
        return None
    full = store.run(doc["dag"], doc["id"])
    return (dag, full) if full is not None else None


async def leave_runs(svc: Service, store: Store, opts: Options, fds: dict[str, int]) -> None:
    """A restart: exit now and leave every run running for the next dagd, which re-attaches
    them. Nothing of the runs is touched; the store is left between two transactions."""
    log.info(
        "restarting: leaving %d running run(s) to the next dagd (on_restart: reattach): %s",
        len(svc.active),
        ", ".join(sorted(svc.active)[:20]),
    )
    with trio.move_on_after(5):
        await svc.quiesce()
    with contextlib.suppress(Exception):
        store.close()
    if os.path.exists(opts.socket) and not fds:
        os.unlink(opts.socket)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no atexit: the runs' cgroups stay, and no task of theirs is cancelled


def on_restart(value: str, source: str) -> str:
    """What becomes of runs a previous dagd left running: given, or by default `reattach` under
    systemd (runs live on across restarts there: KillMode=process) and `fail` elsewhere."""
    if not value:
        return "reattach" if os.environ.get("INVOCATION_ID") else "fail"
    if value not in ("reattach", "fail", "requeue"):
        raise SettingsError(f"{source}: {value!r} is not one of reattach, fail, requeue")
    return value


def resolve_options(config_path: str | None, *, user: bool, flags: dict[str, object], no_http: bool) -> Options:
    """Flags, then DAGD_* variables, then config.yaml, then defaults — every value checked."""
    from dagd.http.auth import Auth, AuthConfigError

    path = config_path
    if path is None:
        candidate = config.config_dir() / "config.yaml"
        path = str(candidate) if candidate.is_file() else None
    cfg, lines = read_config(path) if path else (FileSettings(), {})
    shown = path or "config.yaml"
    env = env_settings()

    def pick(key: str, default: object) -> object:
        if flags.get(key) is not None:
            return flags[key]
        if key in env:
            return env[key]
        value = getattr(cfg, key)
        return default if value is None else value

    bind = None if no_http else str(pick("http_bind", "127.0.0.1:8090"))
    if bind is not None:
        check_bind(bind, where("http_bind", flags, env, shown, lines))
    chain = str(pick("classic_chain", "replace"))
    check_chain_rule(chain, where("classic_chain", flags, env, shown, lines))
    if cfg.timezone is not None:
        check_timezone(cfg.timezone, f"{shown}:{lines.get('timezone', 0)}: timezone")
    try:
        Auth.from_config(cfg.http_auth, str(pick("api_token", "")) or None)
    except AuthConfigError as exc:
        raise SettingsError(f"{shown}:{lines.get('http_auth', 0)}: {exc}") from None
    return Options(
        dags_dir=str(pick("dags_dir", "") or config.dags_dir()),
        state_dir=str(pick("state_dir", "") or config.state_dir()),
        socket=str(pick("socket", "") or config.socket_path()),
        max_concurrent_runs=int(pick("max_concurrent_runs", 8)),  # type: ignore[call-overload]
        poll_sec=float(pick("poll_sec", 2.0)),  # type: ignore[arg-type]
        user=user or config.user_mode(),
        stop_grace_sec=float(pick("stop_grace_sec", 0.0)),  # type: ignore[arg-type]
        on_restart=on_restart(str(pick("on_restart", "")), where("on_restart", flags, env, shown, lines)),
        stop_runs_on_stop=cfg.stop_runs_on_stop,
        classic_chain=chain,
        timezone=cfg.timezone,
        http_bind=bind,
        api_token=str(pick("api_token", "")) or None,
        http_hosts=tuple(cfg.http_hosts),
        http_auth=cfg.http_auth,
        group=cfg.group,
        store=str(pick("store", "")) or None,
        node_id=str(pick("node_id", "")) or socket.gethostname().split(".")[0] or "dagd",
        node_labels=dict(cfg.node_labels),
    )


if __name__ == "__main__":
    cli()
