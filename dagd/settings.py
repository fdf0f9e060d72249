"""dagd's settings: one typed schema for config.yaml, the environment (DAGD_*) and the flags.

Every value is checked, none converted: `max_concurrent_runs: true` or `http_hosts: name` are
errors that name the file, line and key, what is wrong and what is allowed (exit 2), never a
value silently turned into something else, and never a traceback.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from dagd.spec.yamlnode import Node, YamlProblem, compose_documents

BIND = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):([0-9]{1,5})")


class SettingsError(Exception):
    """A setting that is wrong: the message says where, what and what is allowed."""


class FileSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """config.yaml: every key optional; a flag or DAGD_* variable wins over it."""

    dags_dir: str | None = None
    state_dir: str | None = None
    socket: str | None = None
    max_concurrent_runs: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    poll_sec: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None
    stop_grace_sec: Annotated[float, msgspec.Meta(ge=0, le=86_400)] | None = None
    on_restart: Literal["reattach", "fail", "requeue"] | None = None
    stop_runs_on_stop: bool = True
    classic_chain: Literal["replace", "additive"] | None = None
    timezone: str | None = None
    http_bind: str | None = None
    api_token: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    http_auth: dict[str, Any] | None = None
    http_hosts: list[Annotated[str, msgspec.Meta(min_length=1)]] = []
    group: Annotated[str, msgspec.Meta(min_length=1)] = "dagd"
    store: Annotated[str, msgspec.Meta(pattern=r"^postgres(ql)?://")] | None = None
    node_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")] | None = None
    node_labels: dict[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,63}$")], str] = {}


KEYS = tuple(FileSettings.__struct_fields__)


@dataclass
class Options:
    dags_dir: str
    state_dir: str
    socket: str
    max_concurrent_runs: int = 8
    poll_sec: float = 2.0
    user: bool = False
    stop_grace_sec: float = 0.0  # on SIGTERM: wait this long for running runs before aborting them
    on_restart: str = "fail"  # runs a previous dagd left running: "reattach", "fail" or "requeue"
    stop_runs_on_stop: bool = True  # `systemctl stop dagd` aborts the runs (False: they go on, re-attached at start)
    classic_chain: str = "replace"  # an explicit depends in a Dagu 1.x chain DAG: "replace" or "additive"
    timezone: str | None = None  # the zone of schedules without CRON_TZ= (default: the system's)
    http_bind: str | None = "127.0.0.1:8090"  # None: no HTTP server
    api_token: str | None = None  # a bearer token for the HTTP API (one more of http_auth.tokens)
    http_auth: dict[str, object] | None = None  # users (basic, scrypt hashes) and bearer tokens
    http_hosts: tuple[str, ...] = ()  # extra Host names the HTTP API answers to
    group: str = "dagd"  # system mode: members of this group may use dagd (socket and HTTP)
    store: str | None = None  # a postgresql:// URL; None: SQLite, <state_dir>/dagd.db
    node_id: str = ""  # this dagd among the nodes of one store (default: the host name)
    node_labels: dict[str, str] | None = None  # what this node offers (worker_selector matches them)


def read_config(path: str) -> tuple[FileSettings, dict[str, int]]:
    """config.yaml checked against the schema; (settings, line of each key)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(1024 * 1024 + 1)
        text = raw.decode("utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not a UTF-8 text file") from None
    if len(raw) > 1024 * 1024:
        raise SettingsError(f"{path}: larger than 1 MiB; is this dagd's config.yaml?")
    try:
        docs = compose_documents(text)
    except YamlProblem as p:
        raise SettingsError(f"{path}:{p.line}: {p.message}") from None
    root: Node | None = docs[0] if docs else None
    if root is None:
        return FileSettings(), {}
    if root.kind != "map" or len(docs) > 1:
        raise SettingsError(
            f"{path}:{root.line}: config.yaml must be one mapping of settings (keys: {', '.join(KEYS)})"
        )
    lines = {k: n.line for k, n in root.keys.items()}
    try:
        return msgspec.convert(root.plain(), FileSettings), lines
    except msgspec.ValidationError as exc:
        raise SettingsError(_located(str(exc), path, lines)) from None


def _located(message: str, path: str, lines: dict[str, int]) -> str:
    """msgspec's "Expected `int`, got `bool` - at `$.key`" as `path:LINE: key: …`."""
    unknown = re.match(r"Object contains unknown field `([^`]*)`", message)
    if unknown:
        key = unknown.group(1)
        return f"{path}:{lines.get(key, 0)}: {key}: unknown setting (allowed: {', '.join(KEYS)})"
    text, _, where = message.partition(" - at `$.")
    key = where.rstrip("`").split(".", 1)[0].split("[", 1)[0]
    what = text.replace("`", "").replace(" | null", "")
    allowed = {
        "on_restart": " (allowed: reattach, fail, requeue)",
        "classic_chain": " (allowed: replace, additive)",
        "http_hosts": " (a list of host names, e.g. [dagd.example.com])",
        "max_concurrent_runs": " (a whole number, 1 or more)",
    }.get(key, "")
    return f"{path}:{lines.get(key, 0)}: {key or '(top)'}: {what}{allowed}"


def check_bind(value: str, source: str) -> str:
    m = BIND.fullmatch(value)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise SettingsError(f"{source}: {value!r} is not HOST:PORT (e.g. 127.0.0.1:8090, [::1]:8090)")
    return value


CHAIN_RULES = ("replace", "additive")


def check_chain_rule(value: str, source: str) -> str:
    if value not in CHAIN_RULES:
        raise SettingsError(f"{source}: {value!r} is not a chain rule (replace: Dagu 1.17-1.21, additive: Dagu 1.22+)")
    return value


def configured_chain_rule(path: str) -> str | None:
    """config.yaml's classic_chain for dagctl, which reads it to agree with the daemon; a file it
    cannot read or parse is left to the daemon to report."""
    try:
        return read_config(path)[0].classic_chain
    except SettingsError:
        return None


def check_timezone(value: str, source: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"{source}: unknown time zone {value!r} (an IANA name such as UTC or Europe/Berlin)"
        ) from None
    return value


def env_settings() -> dict[str, str]:
    """The DAGD_* variables that stand for settings."""
    names = {
        "DAGD_DAGS_DIR": "dags_dir",
        "DAGD_STATE_DIR": "state_dir",
        "DAGD_SOCKET": "socket",
        "DAGD_HTTP_BIND": "http_bind",
        "DAGD_API_TOKEN": "api_token",
        "DAGD_CLASSIC_CHAIN": "classic_chain",
        "DAGD_STORE": "store",
        "DAGD_NODE_ID": "node_id",
        "DAGD_ON_RESTART": "on_restart",
    }
    return {key: os.environ[var] for var, key in names.items() if os.environ.get(var)}


def where(key: str, flags: dict[str, object], env: dict[str, str], path: str, lines: dict[str, int]) -> str:
    """Which source a setting came from, for an error message."""
    if flags.get(key) is not None:
        return "--" + key.replace("_", "-")
    if key in env:
        return "$DAGD_" + key.upper()
    return f"{path}:{lines.get(key, 0)}: {key}"
