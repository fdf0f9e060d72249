"""Paths: system vs user mode, environment overrides, and an existing Dagu install.

Read-only helpers with no heavy imports: dagctl calls them on every start.
"""

from __future__ import annotations

import os
from pathlib import Path


def _env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def user_mode() -> bool:
    """XDG paths for anyone but root, unless DAGD_SYSTEM=1 (the dagd.service unit runs dagd as the
    unprivileged `dagd` user with the system paths)."""
    if os.environ.get("DAGD_SYSTEM") == "1":
        return False
    return os.geteuid() != 0


def config_dir() -> Path:
    home = _env("DAGD_HOME")
    if home:
        return Path(home)
    if not user_mode():
        return Path("/etc/dagd")
    xdg = _env("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "dagd"


def dags_dir() -> Path:
    """Where named DAGs live: DAGD_DAGS_DIR, then <config>/dags, then an existing Dagu's."""
    explicit = _env("DAGD_DAGS_DIR", "DAGU_DAGS_DIR", "DAGU_DAGS")
    if explicit:
        return Path(explicit)
    ours = config_dir() / "dags"
    if _exists(ours, dir=True):
        return ours
    dagu_home = _env("DAGU_HOME")
    for candidate in (
        Path(dagu_home) / "dags" if dagu_home else None,
        Path.home() / ".config" / "dagu" / "dags",
        Path.home() / ".dagu" / "dags",
    ):
        if candidate is not None and _exists(candidate, dir=True):
            return candidate
    return ours


def base_config() -> str | None:
    """The base config merged under every DAG (Dagu's base.yaml), if any exists."""
    explicit = _env("DAGD_BASE_CONFIG", "DAGU_BASE_CONFIG")
    if explicit:
        return explicit
    dagu_home = _env("DAGU_HOME")
    for candidate in (
        config_dir() / "base.yaml",
        Path(dagu_home) / "base.yaml" if dagu_home else None,
        Path(_env("XDG_CONFIG_HOME") or str(Path.home() / ".config")) / "dagu" / "base.yaml",
    ):
        if candidate is not None and _exists(candidate, dir=False):
            return str(candidate)
    return None


def _exists(path: Path, *, dir: bool) -> bool:
    """is_dir/is_file that reads an unreadable place (another user's HOME) as absent."""
    try:
        return path.is_dir() if dir else path.is_file()
    except OSError:
        return False


def default_shell() -> str | None:
    return _env("DAGD_DEFAULT_SHELL", "DAGU_DEFAULT_SHELL")


def resolve_dag_file(name_or_path: str, base_dir: Path | None = None) -> Path | None:
    """A DAG file for a path or a name, as Dagu resolves it (.yaml appended when missing)."""
    raw = os.path.expanduser(name_or_path)
    candidates = [Path(raw)]
    for root in (base_dir, dags_dir()):
        if root is not None and not os.path.isabs(raw):
            candidates.append(root / raw)
    for c in candidates:
        for path in (c, c.with_name(c.name + ".yaml"), c.with_name(c.name + ".yml")):
            if path.is_file():
                return path
    return None


SYSTEM_STATE_DIR = Path("/var/lib/dagd")


def state_dir() -> Path:
    """History database and logs: DAGD_STATE_DIR, /var/lib/dagd (root) or $XDG_STATE_HOME/dagd."""
    explicit = _env("DAGD_STATE_DIR")
    if explicit:
        return Path(explicit)
    home = _env("DAGD_HOME")
    if home:
        return Path(home) / "state"
    if not user_mode():
        return SYSTEM_STATE_DIR
    xdg = _env("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "dagd"


SYSTEM_SOCKET = Path("/run/dagd/dagd.sock")


def socket_candidates() -> list[Path]:
    """Where dagctl looks for a daemon, in order: DAGD_SOCKET alone when set; else the user's own
    daemon, then the system daemon (which members of group dagd may use)."""
    explicit = _env("DAGD_SOCKET")
    if explicit:
        return [Path(explicit)]
    mine = socket_path()
    return [mine] if mine == SYSTEM_SOCKET else [mine, SYSTEM_SOCKET]


def socket_path() -> Path:
    """The control socket: DAGD_SOCKET, /run/dagd/dagd.sock (root) or $XDG_RUNTIME_DIR/dagd/dagd.sock."""
    explicit = _env("DAGD_SOCKET")
    if explicit:
        return Path(explicit)
    if not user_mode():
        return Path("/run/dagd/dagd.sock")
    runtime = _env("XDG_RUNTIME_DIR") or f"/tmp/dagd-{os.geteuid()}"
    return Path(runtime) / "dagd" / "dagd.sock"
