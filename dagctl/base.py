"""What every dagctl command shares: exit codes, loading a DAG, the store, the daemon."""

from __future__ import annotations

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


def load(path: str, *, strict: bool = False, dialect: str = "auto") -> Loaded:
    from dagd.spec import Dialect, load_file  # the spec (croniter, yaml) only for commands that read DAGs

    forced = None if dialect == "auto" else Dialect(dialect)
    return load_file(
        path, base_config=config.base_config(), strict=strict, dag_exists=dag_exists_near(path), dialect=forced
    )


def open_store() -> Store:
    from dagd.store.db import Store

    path = config.state_dir() / "dagd.db"
    if not path.exists():
        click.echo(f"dagctl: no run history yet ({path} does not exist)", err=True)
        raise ExitWith(1)
    return Store(str(path))


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
    store = open_store()
    try:
        doc = store.run(dag_name(target), run_id)
    finally:
        store.close()
    if doc is None:
        what = f"run {run_id} of {target}" if run_id else f"any run of {target}"
        click.echo(f"dagctl: no {what} in the history", err=True)
        raise ExitWith(1)
    result: dict[str, Any] = doc
    return result


def is_daemon(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
        return b"dagd.daemon" in argv or any(a.endswith(b"/dagd") or a == b"dagd" for a in argv[:2])
    except OSError:
        return False


def runs_in_process(target: str) -> bool:
    """A path to a file (not a bare name of the DAGs folder) runs in this process."""
    return ("/" in target or target.endswith((".yaml", ".yml"))) and Path(target).exists()


def daemon_client(required: bool = True) -> Any:
    from dagctl.client import connect

    client = connect(str(config.socket_path()))
    if client is None and required:
        click.echo(f"dagctl: no dagd answering at {config.socket_path()} (start it, or set DAGD_SOCKET)", err=True)
        raise ExitWith(1)
    return client


def rpc(client: Any, method: str, **params: Any) -> Any:
    from dagctl.client import RpcError

    try:
        return client.call(method, **params)
    except RpcError as exc:
        click.echo(f"dagctl: {exc.message}", err=True)
        raise ExitWith(1) from None
