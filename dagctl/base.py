"""What every dagctl command shares: exit codes, loading a DAG, the store, the daemon."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dagd import config

if TYPE_CHECKING:
    from dagd.spec.load import Loaded
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


def dag_exists_near(file: str) -> Any:
    here = Path(file).resolve().parent

    def exists(name: str) -> bool:
        return config.resolve_dag_file(name, here) is not None

    return exists


NAME_KEY = re.compile(r"^name\s*:", re.MULTILINE)  # a top-level `name:` key

DIALECT = click.option(
    "--dialect",
    type=click.Choice(["auto", "current", "classic"]),
    default="auto",
    show_default=True,
    help="Read the file as Dagu >= 2.7 (current) or Dagu 1.x (classic) instead of detecting it.",
)


CLASSIC_CHAIN = click.option(
    "--classic-chain",
    type=click.Choice(["replace", "additive"]),
    default=None,
    envvar="DAGD_CLASSIC_CHAIN",
    help="In Dagu 1.x chain DAGs, a step's own depends replace the previous step (Dagu 1.17-1.21, "
    "the default) or add to it (1.22+). Default: config.yaml's classic_chain, else replace.",
)
chain_choice: str | None = None  # --classic-chain / DAGD_CLASSIC_CHAIN, set by the group


def chain_rule() -> str:
    """--classic-chain, DAGD_CLASSIC_CHAIN, config.yaml's classic_chain (as dagd reads it), replace."""
    if chain_choice:
        return chain_choice
    path = config.config_dir() / "config.yaml"
    if path.is_file() and os.access(path, os.R_OK):
        from dagd.settings import configured_chain_rule

        return configured_chain_rule(str(path)) or "replace"
    return "replace"


def load(path: str, *, strict: bool = False, exact: bool = False, dialect: str = "auto") -> Loaded:
    from dagd.spec import Dialect, load_file  # the spec (croniter, yaml) only for commands that read DAGs
    from dagd.spec.load import set_chain_rule
    from dagd.spec.model import ChainRule

    set_chain_rule(ChainRule(chain_rule()))  # sub-DAGs an in-process run loads read the same way
    forced = None if dialect == "auto" else Dialect(dialect)
    return load_file(
        path,
        base_config=config.base_config(),
        strict=strict,
        exact=exact,
        dag_exists=dag_exists_near(path),
        dialect=forced,
    )


def open_store() -> Store:
    import sqlite3

    from dagd.store.db import Store

    url = os.environ.get("DAGD_STORE")
    if url:  # dagd's PostgreSQL store, read directly when no daemon answers
        try:
            return Store(url)
        except sqlite3.Error as exc:
            click.echo(f"dagctl: cannot read the run store {Store.describe(url)}: {exc}", err=True)
            raise ExitWith(1) from None
    path = config.state_dir() / "dagd.db"
    try:
        exists = path.exists()
        if exists:
            return Store(str(path))
    except PermissionError:
        click.echo(f"dagctl: permission denied reading {path}: {DENIED_HINT}", err=True)
        raise ExitWith(1) from None
    except (OSError, sqlite3.Error) as exc:
        click.echo(f"dagctl: cannot read the run history {path}: {exc}", err=True)
        raise ExitWith(1) from None
    click.echo(f"dagctl: no run history yet ({path} does not exist)", err=True)
    raise ExitWith(1)


def dag_name(target: str) -> str:
    """A DAG name from a name or a file path (the file stem, or its `name:` when it sets one)."""
    path = config.resolve_dag_file(target)
    if path is None:
        return target
    try:  # most files do not set `name:`: then the stem is the name, without parsing the DAG
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return path.stem
    if not NAME_KEY.search(text):
        return path.stem
    from dagd.spec import SpecError

    try:
        return load(str(path)).dag.name
    except SpecError:
        return path.stem


def run_doc(target: str, run_id: str | None) -> dict[str, Any]:
    """A run's document: from the daemon when one answers (its history may be one this user
    cannot read), else from the local store."""
    import sqlite3

    from dagctl.client import RpcError

    name = dag_name(target)
    client = daemon_client(required=False)
    if client is not None:
        try:
            with client:
                result: dict[str, Any] = client.call("run.status", name=name, run_id=run_id)
                return result
        except RpcError as exc:
            if exc.code == -32004:
                click.echo(f"dagctl: {_no_run(target, run_id)}", err=True)
            else:
                click.echo(f"dagctl: {exc.message}" + (f" ({DENIED_HINT})" if exc.code == -32003 else ""), err=True)
            raise ExitWith(1) from None
    store = open_store()
    try:
        doc = store.run(name, run_id)
    except sqlite3.Error as exc:
        click.echo(f"dagctl: cannot read the run history: {exc}", err=True)
        raise ExitWith(1) from None
    finally:
        store.close()
    if doc is None:
        click.echo(f"dagctl: {_no_run(target, run_id)}", err=True)
        raise ExitWith(1)
    return dict(doc)


def _no_run(target: str, run_id: str | None) -> str:
    return f"no run {run_id} of {target} in the history" if run_id else f"no run of {target} yet"


def is_daemon(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
        return b"dagd.daemon" in argv or any(a.endswith(b"/dagd") or a == b"dagd" for a in argv[:2])
    except OSError:
        return False


def system_daemon_installed() -> bool:
    """Whether this host has the dagd package's system service (root's named runs belong there)."""
    if os.geteuid() != 0 or os.environ.get("DAGD_SOCKET") or os.environ.get("DAGD_STATE_DIR"):
        return False
    return any(
        Path(d, "dagd.service").exists()
        for d in ("/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system")
    )


def runs_in_process(target: str) -> bool:
    """A path to a file (not a bare name of the DAGs folder) runs in this process."""
    return ("/" in target or target.endswith((".yaml", ".yml"))) and Path(target).exists()


DENIED_HINT = "ask an administrator to add you to group dagd"


def find_daemon() -> tuple[Any, str | None]:
    """(a client of the first daemon that answers, None) or (None, why none does). The user's
    own daemon comes first, then the system one; a socket we may not use says so."""
    from dagctl.client import Client, DaemonUnavailable, PermissionDenied

    problems = []
    for path in config.socket_candidates():
        try:
            return Client(str(path)), None
        except PermissionDenied as exc:
            problems.append(f"permission denied on {path} ({exc}): {DENIED_HINT}")
        except DaemonUnavailable as exc:
            if path.exists() or len(config.socket_candidates()) == 1:
                problems.append(str(exc))
    if not problems:
        where = " or ".join(str(p) for p in config.socket_candidates())
        problems.append(f"no dagd answering at {where} (start it, or set DAGD_SOCKET)")
    denied = [p for p in problems if p.startswith("permission denied")]
    return None, (denied or problems)[0]


def daemon_client(required: bool = True) -> Any:
    client, problem = find_daemon()
    if client is None and (required or (problem or "").startswith("permission denied")):
        click.echo(f"dagctl: {problem}", err=True)
        raise ExitWith(1)
    return client


def rpc(client: Any, method: str, **params: Any) -> Any:
    from dagctl.client import RpcError

    try:
        return client.call(method, **params)
    except RpcError as exc:
        hint = f" ({DENIED_HINT})" if exc.code == -32003 else ""
        click.echo(f"dagctl: {exc.message}{hint}", err=True)
        raise ExitWith(1) from None
