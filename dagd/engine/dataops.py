"""`artifact.write` / `read` / `list` (the run's artifacts folder), `data.convert` / `data.pick`
(JSON, YAML, CSV, TSV, text) and `state.get` / `set` / `delete` / `list` / `diff` (values kept
across runs, versioned) — done in a worker thread, one JSON result line each, as Dagu writes them.

State lives in `<state dir>/step-state.db` (SQLite, WAL; apart from dagd.db, which only dagd's
service layer touches), keyed by scope: `dag` (this DAG's name — the default), `root_dag` (the
root run's DAG), `global`, or `custom` with a `namespace`. Each value has a version, bumped on every
change, and a SHA-256 of its canonical JSON: `expected_version` makes a set or diff conditional,
`create_only` refuses to replace."""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import re
import sqlite3
from collections.abc import Mapping
from typing import Any, BinaryIO

import yaml

from dagd.engine import actions
from dagd.engine.step import StepFailed, reject_unknown
from dagd.spec.executors import ARTIFACT_KEYS, DATA_KEYS, STATE_KEYS

FORMATS = ("json", "yaml", "csv", "tsv", "text")


def _emit(out: BinaryIO, result: Mapping[str, Any]) -> None:
    out.write((json.dumps(result, separators=(",", ":"), ensure_ascii=False) + "\n").encode())


# ---- artifact.* ------------------------------------------------------------------------------


def artifact(action: str, config: Mapping[str, Any], artifacts_dir: str | None, out: BinaryIO) -> None:
    reject_unknown(action, config, ARTIFACT_KEYS)
    if artifacts_dir is None:
        raise StepFailed(f"{action}: this DAG's artifacts are disabled (artifacts: {{enabled: false}})")
    op = action.partition(".")[2]
    rel = str(config.get("path") or ("." if op == "list" else ""))
    if not rel:
        raise StepFailed(f"{action} needs with.path (relative to the run's artifacts folder)")
    root = os.path.realpath(artifacts_dir)
    full = os.path.realpath(os.path.join(root, rel))
    if os.path.isabs(rel) or (full != root and not full.startswith(root + os.sep)):
        raise StepFailed(f"{action}: path {rel!r} must stay inside the run's artifacts folder")
    settings = {**config, "path": full}
    if op == "write":
        settings.setdefault("create_dirs", True)
    elif op not in ("read", "list"):
        raise StepFailed(f"step type {action} is not supported by dagd yet")
    actions.run_action(f"file.{op}", settings, root, out)


# ---- data.* ----------------------------------------------------------------------------------


def _delimiter(config: Mapping[str, Any], fmt: str) -> str:
    d = config.get("delimiter")
    return str(d) if d else ("\t" if fmt == "tsv" else ",")


def _read(action: str, config: Mapping[str, Any], cwd: str) -> Any:
    fmt = str(config.get("from") or "")
    if fmt not in FORMATS:
        raise StepFailed(f"{action}: from is one of {', '.join(FORMATS)}, got {fmt!r}")
    if ("data" in config) == ("input" in config):
        raise StepFailed(f"{action} takes exactly one of data (inline) or input (a file)")
    if "data" in config:
        raw = config["data"]
        if not isinstance(raw, str):  # already structured (YAML in the DAG file)
            return raw
        text = raw
    else:
        path = str(config["input"])
        with open(path if os.path.isabs(path) else os.path.join(cwd, path), encoding="utf-8") as fh:
            text = fh.read()
    try:
        if fmt == "json":
            return json.loads(text)
        if fmt == "yaml":
            return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise StepFailed(f"{action}: the input is not {fmt.upper()}: {exc}") from None
    if fmt == "text":
        return text
    rows = list(csv.reader(io.StringIO(text), delimiter=_delimiter(config, fmt)))
    columns = [str(c) for c in config.get("columns") or []]
    if config.get("has_header", True) and rows:
        header, rows = rows[0], rows[1:]
        columns = columns or header
    if not columns:
        columns = [f"column{i + 1}" for i in range(max((len(r) for r in rows), default=0))]
    return [dict(zip(columns, r, strict=False)) for r in rows if r]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _write(action: str, config: Mapping[str, Any], fmt: str, value: Any, out: BinaryIO) -> None:
    if fmt == "json":
        text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "yaml":
        text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    elif fmt == "text":
        if isinstance(value, list):
            text = "".join(_cell(v) + "\n" for v in value)
        else:
            text = _cell(value) + ("" if isinstance(value, str) and value.endswith("\n") else "\n")
    else:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(i, Mapping) for i in items):
            raise StepFailed(f"{action}: {fmt} output needs a list of objects (rows)")
        columns = [str(c) for c in config.get("columns") or []]
        for item in items:
            columns += [str(k) for k in item if str(k) not in columns]
        buf = io.StringIO()
        sheet = csv.writer(buf, delimiter=_delimiter(config, fmt), lineterminator="\n")
        if config.get("headers", True):
            sheet.writerow(columns)
        sheet.writerows([_cell(i.get(c)) for c in columns] for i in items)
        text = buf.getvalue()
    out.write(text.encode())


_STEP = re.compile(r'\.([A-Za-z_][A-Za-z0-9_-]*)|\["((?:[^"\\]|\\.)*)"\]|\[(-?\d+)\]|\[\]')


def select(value: Any, path: str, action: str) -> Any:
    """A jq-style path: `.a.b`, `.["odd key"]`, `.items[0]`, `.items[-1]`, `.items[].name`."""
    path = path.strip()
    if path in ("", "."):
        return value
    pos = 1 if path.startswith(".") and path[1:2] in ("[",) else 0
    results = [value]
    spread = False
    while pos < len(path):
        m = _STEP.match(path, pos)
        if not m:
            raise StepFailed(f"{action}: cannot read the path {path!r} at {path[pos:]!r}")
        pos = m.end()
        nxt = []
        for v in results:
            if m.group(1) is not None or m.group(2) is not None:
                key = m.group(1) if m.group(1) is not None else json.loads(f'"{m.group(2)}"')
                nxt.append(v.get(key) if isinstance(v, Mapping) else None)
            elif m.group(3) is not None:
                i = int(m.group(3))
                nxt.append(v[i] if isinstance(v, list) and -len(v) <= i < len(v) else None)
            else:
                if not isinstance(v, list):
                    raise StepFailed(f"{action}: {path!r}: [] needs a list")
                nxt.extend(v)
                spread = True
        results = nxt
    return results if spread else results[0]


def data(action: str, config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    reject_unknown(action, config, DATA_KEYS)
    value = _read(action, config, cwd)
    if action == "data.convert":
        to = str(config.get("to") or "")
        if to not in FORMATS:
            raise StepFailed(f"{action}: to is one of {', '.join(FORMATS)}, got {to!r}")
        _write(action, config, to, value, out)
        return
    if action != "data.pick":
        raise StepFailed(f"step type {action} is not supported by dagd yet")
    if not config.get("select"):
        raise StepFailed("data.pick needs select (a jq-style path such as .items[0].name)")
    if config.get("raw") and config.get("to"):
        raise StepFailed("data.pick takes raw or to, not both")
    picked = select(value, str(config["select"]), action)
    if config.get("raw"):
        _write(action, config, "text", picked, out)
    else:
        _write(action, config, str(config.get("to") or "json"), picked, out)


# ---- state.* ---------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _db(state_dir: str, shared: str | None) -> Any:
    """The state table: in the daemon's PostgreSQL store when it has one (every node sees the
    same values), else <state dir>/step-state.db."""
    if shared:
        from dagd.store.db import _Postgres

        db: Any = _Postgres(shared)
    else:
        os.makedirs(state_dir, exist_ok=True)
        db = sqlite3.connect(os.path.join(state_dir, "step-state.db"), timeout=10.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=10000")
    db.execute(
        "CREATE TABLE IF NOT EXISTS step_state (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
        " version INTEGER NOT NULL, hash TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " PRIMARY KEY (namespace, key))"
    )
    return db


def state(
    action: str,
    config: Mapping[str, Any],
    state_dir: str,
    dag_name: str,
    root_name: str,
    out: BinaryIO,
    shared: str | None = None,
) -> None:
    reject_unknown(action, config, STATE_KEYS)
    scope = str(config.get("scope") or "dag")
    namespaces = {"dag": dag_name, "root_dag": root_name, "global": "global"}
    if scope == "custom":
        if not config.get("namespace"):
            raise StepFailed(f"{action}: scope custom needs a namespace")
        namespace = str(config["namespace"])
    elif scope in namespaces:
        namespace = str(config.get("namespace") or namespaces[scope])
    else:
        raise StepFailed(f"{action}: scope is dag, root_dag, global or custom, got {scope!r}")
    op = action.partition(".")[2]
    key = config.get("key")
    if op in ("get", "set", "delete", "diff") and not key:
        raise StepFailed(f"{action} needs key")
    if op in ("set", "diff") and "value" not in config:
        raise StepFailed(f"{action} needs value")
    head = {"operation": op, "scope": scope, "namespace": namespace}
    now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    db = _db(state_dir, shared)
    try:
        db.execute("BEGIN" if shared else "BEGIN IMMEDIATE")
        row = None
        if key:
            row = db.execute(
                "SELECT value, version, hash, created_at, updated_at FROM step_state WHERE namespace = ? AND key = ?",
                (namespace, str(key)),
            ).fetchone()
        if op == "get":
            if row is None:
                if config.get("required"):
                    raise StepFailed(f"state.get: {namespace}/{key} is not set (required: true)")
                result = {**head, "key": key, "found": False}
                if "default" in config:
                    result["value"] = config["default"]
            else:
                result = {
                    **head,
                    "key": key,
                    "found": True,
                    "version": row[1],
                    "hash": row[2],
                    "value": json.loads(row[0]),
                }
        elif op in ("set", "diff"):
            text = _canonical(config["value"])
            digest = hashlib.sha256(text.encode()).hexdigest()
            expected = config.get("expected_version")
            current = row[1] if row else 0
            if expected is not None and int(expected) != current:
                raise StepFailed(f"{action}: {namespace}/{key} is at version {current}, not {expected}")
            if op == "set" and row is not None and config.get("create_only"):
                raise StepFailed(f"state.set: {namespace}/{key} exists (create_only: true)")
            changed = row is None or row[2] != digest
            write = op == "set" or (changed and config.get("update", True) is not False)
            version = current + 1 if write and changed else current
            if write and changed:
                db.execute(
                    "INSERT INTO step_state VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, key) DO UPDATE SET"
                    " value = excluded.value, version = excluded.version, hash = excluded.hash,"
                    " updated_at = excluded.updated_at",
                    (namespace, str(key), text, version, digest, now, now),
                )
            if op == "set":
                result = {**head, "key": key, "version": version, "hash": digest, "created": row is None}
            else:
                result = {**head, "key": key, "changed": changed, "version": version, "hash": digest}
                if row is not None:
                    result["previous"] = json.loads(row[0])
                result["value"] = config["value"]
        elif op == "delete":
            db.execute("DELETE FROM step_state WHERE namespace = ? AND key = ?", (namespace, str(key)))
            result = {**head, "key": key, "deleted": row is not None}
        elif op == "list":
            limit = int(config.get("limit") or 0)
            prefix = str(config.get("prefix") or "")
            rows = db.execute(
                "SELECT key, value, version, hash, created_at, updated_at FROM step_state WHERE namespace = ?"
                " AND substr(key, 1, ?) = ? ORDER BY key" + (" LIMIT ?" if limit else ""),
                (namespace, len(prefix), prefix, *([limit] if limit else [])),
            ).fetchall()
            entries = []
            for k, v, ver, h, c, u in rows:
                entry: dict[str, Any] = {"scope": scope, "namespace": namespace, "key": k, "version": ver, "hash": h}
                entry |= {"createdAt": c, "updatedAt": u}
                if config.get("include_values"):
                    entry["value"] = json.loads(v)
                entries.append(entry)
            result = {**head, "entries": entries}
        else:
            raise StepFailed(f"step type {action} is not supported by dagd yet")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.close()
    _emit(out, result)
