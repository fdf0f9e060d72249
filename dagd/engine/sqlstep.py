"""`sqlite.query` / `postgres.query` and `sqlite.import` / `postgres.import` (Dagu 1.x `executor:
sqlite` / `postgres`, the SQL as `command:` or `script:`), through Python's sqlite3 and psycopg 3.

As Dagu: `with:` dsn, query (else the step's command or script), params (a map for `:name`, a list
for `$1`/`?`), transaction, isolation_level, advisory_lock (PostgreSQL), file_lock (SQLite),
timeout (seconds, default 60), output_format (jsonl — the default —, json, csv), headers,
null_string, max_rows, output_file; several statements in one query run in order, each result
printed. Rows are JSON objects with sorted keys (JSON: indented by two spaces). `import:` loads a
CSV, TSV or JSONL file into a table in one transaction, in batches, and prints a summary.

Both drivers block: the work runs in a worker thread; a stop or a timeout interrupts the query
from the loop (psycopg's cancel, sqlite3's interrupt) and rolls its transaction back."""

from __future__ import annotations

import contextlib
import csv
import datetime
import decimal
import fcntl
import io
import itertools
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

import trio

from dagd.engine.step import StepFailed, reject_unknown
from dagd.spec.executors import IMPORT_KEYS, SQL_KEYS

ACTIONS = frozenset({"sqlite.query", "sqlite.import", "postgres.query", "postgres.import"})
ISOLATION = {"default": None, "read_committed": "READ COMMITTED", "repeatable_read": "REPEATABLE READ"}
ISOLATION |= {"serializable": "SERIALIZABLE"}


class Interrupt:
    """What the loop calls to stop the worker's query (set by the worker once it is connected)."""

    def __init__(self) -> None:
        self.fire: Callable[[], None] | None = None
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        if self.fire is not None:
            with contextlib.suppress(Exception):
                self.fire()


def _norm(config: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).replace("-", "_"): v for k, v in config.items()}


def plan(action: str, config: Mapping[str, Any], commands: tuple[str, ...], script: str | None) -> dict[str, Any]:
    """The step's settings, checked: the engine, the SQL, the import."""
    engine = action.split(".")[0]
    cfg = _norm(config)
    if action.endswith(".import") and "import" not in cfg:  # `with:` may hold the import's own keys
        cfg["import"] = {k: cfg.pop(k) for k in list(cfg) if k in IMPORT_KEYS - {"max_rows"}}
    reject_unknown(action, cfg, SQL_KEYS[f"{engine}.query"])
    if not cfg.get("dsn") or not isinstance(cfg["dsn"], str):
        raise StepFailed(f"{action} needs with.dsn")
    fmt = str(cfg.get("output_format") or "jsonl")
    if fmt not in ("jsonl", "json", "csv"):
        raise StepFailed(f"{action}: output_format is jsonl, json or csv, got {fmt!r}")
    timeout = cfg.get("timeout", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise StepFailed(f"{action}: timeout is a number of seconds")
    level = str(cfg.get("isolation_level") or "default")
    if level not in ISOLATION:
        raise StepFailed(f"{action}: isolation_level is one of {', '.join(ISOLATION)}, got {level!r}")
    imp = cfg.get("import")
    query = cfg.get("query")
    if query is None and commands:
        query = "\n".join(commands)
    if query is None and script and script.strip():
        query = script
    if imp is None and (not isinstance(query, str) or not query.strip()):
        raise StepFailed(f"{action} needs a query (with.query, or the step's command or script)")
    if imp is not None:
        if not isinstance(imp, Mapping):
            raise StepFailed(f"{action}: import is a mapping (input_file, table, format …)")
        extra = sorted(str(k) for k in imp if str(k) not in IMPORT_KEYS)
        if extra:
            raise StepFailed(f"{action}: import does not take {', '.join(extra)}")
        if not imp.get("input_file") or not imp.get("table"):
            raise StepFailed(f"{action}: import needs input_file and table")
        if str(imp.get("on_conflict") or "error") not in ("error", "ignore", "replace"):
            raise StepFailed(f"{action}: import.on_conflict is error, ignore or replace")
    return {**cfg, "engine": engine, "query": query, "output_format": fmt, "timeout": float(timeout), "level": level}


# ---- SQL text --------------------------------------------------------------------------------


def _scan(sql: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, code?) spans: code, or a string / quoted name / comment / dollar-quoted body."""
    i, n, start = 0, len(sql), 0
    while i < n:
        c = sql[i]
        end = -1
        if c in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            end = min(j + 1, n)
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            end = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            end = n if j < 0 else j + 2
        elif c == "$":
            m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
            if m:
                j = sql.find(m.group(0), i + len(m.group(0)))
                end = n if j < 0 else j + len(m.group(0))
        if end >= 0:
            if start < i:
                yield start, i, True
            yield i, end, False
            i = start = end
        else:
            i += 1
    if start < n:
        yield start, n, True


def statements(sql: str, engine: str) -> list[str]:
    """The statements of a query, in order (`;` outside strings and comments; for SQLite, a
    trigger's body stays whole: a statement ends where sqlite3 says it is complete)."""
    cuts = [0]
    for a, b, code in _scan(sql):
        if code:
            cuts += [k + 1 for k in range(a, b) if sql[k] == ";"]
    cuts.append(len(sql))
    out: list[str] = []
    pending = ""
    for a, b in itertools.pairwise(cuts):
        pending += sql[a:b]
        if engine == "sqlite" and b < len(sql) and not sqlite3.complete_statement(pending):
            continue
        if _has_code(pending):
            out.append(pending.strip())
        pending = ""
    if pending and _has_code(pending):
        out.append(pending.strip())
    return out


def _has_code(text: str) -> bool:
    return any(code and text[a:b].strip(" \t\r\n;") for a, b, code in _scan(text))


def _pg_params(sql: str, params: Any) -> tuple[str, Any]:
    """Dagu's placeholders (`:name` with a map, `$1` with a list) as psycopg's (`%(name)s`, `%s`);
    a literal % in code is doubled."""
    out: list[str] = []
    ordered: list[Any] = []
    for a, b, code in _scan(sql):
        part = sql[a:b]
        if not code:
            out.append(part.replace("%", "%%") if params is not None else part)
            continue
        if params is None:
            out.append(part)
            continue
        part = part.replace("%", "%%")
        if isinstance(params, Mapping):
            part = re.sub(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)", r"%(\1)s", part)
        else:

            def pos(m: re.Match[str]) -> str:
                k = int(m.group(1)) - 1
                if not 0 <= k < len(params):
                    raise StepFailed(f"postgres: ${k + 1} has no value in params ({len(params)} given)")
                ordered.append(params[k])
                return "%s"

            part = re.sub(r"\$(\d+)", pos, part)
        out.append(part)
    return "".join(out), (params if isinstance(params, Mapping) else ordered) if params is not None else None


# ---- results ---------------------------------------------------------------------------------


def _value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() and v.is_finite() else float(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        raw = bytes(v)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return raw.hex()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    return str(v)


class Writer:
    """Rows in Dagu's formats, written as they come."""

    def __init__(self, out: BinaryIO, fmt: str, headers: bool, null: str, limit: int) -> None:
        self.out, self.fmt, self.headers, self.null, self.limit = out, fmt, headers, null, limit
        self.count = 0
        self.json_rows: list[dict[str, Any]] = []

    def result(self, columns: list[str], rows: Iterable[Sequence[Any]]) -> None:
        text = io.StringIO()
        sheet = csv.writer(text, lineterminator="\n")
        if self.fmt == "csv" and self.headers:
            sheet.writerow(columns)
        for row in rows:
            if self.limit and self.count >= self.limit:
                break
            self.count += 1
            if self.fmt == "csv":
                sheet.writerow([self.null if v is None else _csv_text(_value(v)) for v in row])
            else:
                record = {c: _value(v) for c, v in zip(columns, row, strict=False)}
                if self.fmt == "json":
                    self.json_rows.append(record)
                else:
                    text.write(json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
            if text.tell() > 65536:
                self.out.write(text.getvalue().encode())
                text.seek(0)
                text.truncate()
        self.out.write(text.getvalue().encode())

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write((json.dumps(self.json_rows, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode())
        self.out.flush()


def _csv_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


# ---- connections -----------------------------------------------------------------------------


def _sqlite_connect(dsn: str, cwd: str, timeout: float) -> sqlite3.Connection:
    if dsn == ":memory:" or dsn.startswith("file::memory:"):
        target, uri = dsn, dsn.startswith("file:")
    elif dsn.startswith("file:"):
        path, _, query = dsn[5:].partition("?")
        path = path if os.path.isabs(path) else os.path.join(cwd, path)
        target, uri = "file:" + path + ("?" + query if query else ""), True
    else:
        target, uri = (dsn if os.path.isabs(dsn) else os.path.join(cwd, dsn)), False
    db = sqlite3.connect(target, uri=uri, timeout=5.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def _pg_connect(dsn: str, timeout: float) -> Any:
    try:
        import psycopg
    except ImportError as exc:  # psycopg's pure-Python build needs the system's libpq
        raise StepFailed(f"postgres steps need libpq on this host (apt install libpq5): {exc}") from None
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout or 10)))
    if timeout:
        conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
    return conn


def _errors() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [sqlite3.Error]
    with contextlib.suppress(ImportError):
        import psycopg

        kinds.append(psycopg.Error)
    return tuple(kinds)


# ---- the work (in a worker thread) ------------------------------------------------------------


def _query(cfg: Mapping[str, Any], cwd: str, out: BinaryIO, stop: Interrupt) -> None:
    engine = cfg["engine"]
    target = out
    sink: BinaryIO | None = None
    if cfg.get("output_file"):
        path = str(cfg["output_file"])
        path = path if os.path.isabs(path) else os.path.join(cwd, path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        sink = target = open(path, "wb")  # noqa: SIM115 - closed below
    writer = Writer(
        target,
        cfg["output_format"],
        bool(cfg.get("headers")),
        str(cfg.get("null_string", "null")),
        int(cfg.get("max_rows") or 0),
    )
    params = cfg.get("params")
    if params is not None and not isinstance(params, (Mapping, list, tuple)):
        raise StepFailed(f"{engine}: params is a map (for :name) or a list (for $1 / ?)")
    try:
        with _locks(cfg, cwd, engine):
            if engine == "sqlite":
                _sqlite_query(cfg, cwd, writer, params, stop)
            else:
                _pg_query(cfg, writer, params, stop)
        writer.close()
    finally:
        if sink is not None:
            sink.close()
            if cfg.get("output_file"):
                out.write(f"wrote {writer.count} row(s) to {cfg['output_file']}\n".encode())


@contextlib.contextmanager
def _locks(cfg: Mapping[str, Any], cwd: str, engine: str) -> Iterator[None]:
    if engine == "sqlite" and cfg.get("file_lock") and cfg["dsn"] != ":memory:":
        dsn = str(cfg["dsn"]).removeprefix("file:").partition("?")[0]
        path = (dsn if os.path.isabs(dsn) else os.path.join(cwd, dsn)) + ".lock"
        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        yield


def _sqlite_query(cfg: Mapping[str, Any], cwd: str, writer: Writer, params: Any, stop: Interrupt) -> None:
    db = _sqlite_connect(str(cfg["dsn"]), cwd, cfg["timeout"])
    stop.fire = db.interrupt
    try:
        if stop.fired:
            raise StepFailed("stopped")
        if cfg.get("transaction"):
            db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in statements(str(cfg["query"]), "sqlite"):
                if params is None or (isinstance(params, (list, tuple)) and "?" not in stmt):
                    cur = db.execute(stmt)
                else:
                    cur = db.execute(stmt, params)
                if cur.description:
                    writer.result([c[0] for c in cur.description], cur)
            if cfg.get("transaction"):
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
    finally:
        db.close()


def _pg_query(cfg: Mapping[str, Any], writer: Writer, params: Any, stop: Interrupt) -> None:
    conn = _pg_connect(str(cfg["dsn"]), cfg["timeout"])
    stop.fire = conn.cancel_safe if hasattr(conn, "cancel_safe") else conn.cancel
    try:
        if stop.fired:
            raise StepFailed("stopped")
        lock = cfg.get("advisory_lock")
        if lock:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (str(lock),))
        try:
            if cfg.get("transaction"):
                level = ISOLATION[cfg["level"]]
                conn.execute("BEGIN" + (f" ISOLATION LEVEL {level}" if level else ""))
            try:
                with conn.cursor() as cur:
                    if params is None:
                        cur.execute(str(cfg["query"]).encode())  # several statements: the simple protocol
                    else:
                        sql, values = _pg_params(str(cfg["query"]), params)
                        cur.execute(sql.encode(), values)
                    while True:
                        if cur.description:
                            writer.result([c.name for c in cur.description], cur)
                        if not cur.nextset():
                            break
                if cfg.get("transaction"):
                    conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")
                raise
        finally:
            if lock:
                with contextlib.suppress(Exception):
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (str(lock),))
    finally:
        conn.close()


# ---- import ----------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _rows(imp: Mapping[str, Any], path: str) -> tuple[list[str], Iterator[list[Any]]]:
    fmt = str(imp.get("format") or "")
    if not fmt:
        ext = os.path.splitext(path)[1].lower()
        fmt = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(ext, "")
        if not fmt:
            raise StepFailed(
                f"import: cannot tell the format of {path} from its name: set import.format (csv, tsv, jsonl)"
            )
    if fmt not in ("csv", "tsv", "jsonl"):
        raise StepFailed(f"import.format is csv, tsv or jsonl, got {fmt!r}")
    given = [str(c) for c in imp.get("columns") or []]
    listed = imp.get("null_values")
    nulls = {str(v) for v in (listed if isinstance(listed, list) else ["", "NULL", "null", "\\N"])}
    fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed by the generator
    if fmt == "jsonl":
        first: list[dict[str, Any]] = []
        lines = (line for line in fh if line.strip())
        for line in lines:
            first.append(_object(line))
            break
        columns = given or (list(first[0]) if first else [])

        def gen_json() -> Iterator[list[Any]]:
            with fh:
                for obj in [*first, *(_object(line) for line in lines)]:
                    yield [_cell(obj.get(c), nulls) for c in columns]

        return columns, gen_json()
    delim = str(imp.get("delimiter") or ("\t" if fmt == "tsv" else ","))
    reader = csv.reader(fh, delimiter=delim)
    header = imp.get("has_header", True)
    head = next(reader, None) if header else None
    columns = given or (list(head) if head else [])
    if not columns:
        fh.close()
        raise StepFailed("import: no columns (the file has no header row: set import.columns)")

    def gen_csv() -> Iterator[list[Any]]:
        with fh:
            for record in reader:
                if not record:
                    continue
                if len(record) != len(columns):
                    raise StepFailed(
                        f"import: line {reader.line_num} has {len(record)} fields, the table's columns are {len(columns)}"
                    )
                yield [None if v in nulls else v for v in record]

    return columns, gen_csv()


def _object(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise StepFailed(f"import: a JSONL line is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise StepFailed("import: each JSONL line is a JSON object")
    return value


def _cell(v: Any, nulls: set[str]) -> Any:
    if isinstance(v, str) and v in nulls:
        return None
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return v


def _import(cfg: Mapping[str, Any], cwd: str, out: BinaryIO, stop: Interrupt) -> None:
    imp = cfg["import"]
    engine = cfg["engine"]
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    path = str(imp["input_file"])
    path = path if os.path.isabs(path) else os.path.join(cwd, path)
    if not os.path.isfile(path):
        raise StepFailed(f"import: input_file {path} does not exist")
    columns, rows = _rows(imp, path)
    table = _quote(str(imp["table"]))
    names = ", ".join(_quote(c) for c in columns)
    conflict = str(imp.get("on_conflict") or "error")
    skip, limit = int(imp.get("skip_rows") or 0), int(imp.get("max_rows") or 0)
    batch_size = max(1, int(imp.get("batch_size") or 1000))
    dry = bool(imp.get("dry_run"))
    mark = "?" if engine == "sqlite" else "%s"
    verb = "INSERT"
    tail = ""
    if engine == "sqlite":
        verb = {"error": "INSERT", "ignore": "INSERT OR IGNORE", "replace": "INSERT OR REPLACE"}[conflict]
    elif conflict == "ignore" or (conflict == "replace" and not imp.get("conflict_target")):
        tail = " ON CONFLICT DO NOTHING"
    elif conflict == "replace":
        target = imp["conflict_target"]
        keys = [target] if isinstance(target, str) else list(target)
        updates = ", ".join(f"{_quote(c)} = EXCLUDED.{_quote(c)}" for c in columns if c not in keys)
        tail = f" ON CONFLICT ({', '.join(_quote(k) for k in keys)}) DO " + (
            f"UPDATE SET {updates}" if updates else "NOTHING"
        )
    counts = {"read": 0, "imported": 0, "skipped": 0, "batches": 0}

    def batches() -> Iterator[list[list[Any]]]:
        batch: list[list[Any]] = []
        for row in rows:
            counts["read"] += 1
            if counts["read"] <= skip:
                counts["skipped"] += 1
                continue
            if limit and counts["imported"] + len(batch) >= limit:
                break
            batch.append(row)
            if len(batch) >= batch_size:
                yield batch
                counts["imported"] += len(batch)
                batch = []
        if batch:
            yield batch
            counts["imported"] += len(batch)

    def statement(n: int) -> str:
        one = "(" + ", ".join([mark] * len(columns)) + ")"
        return f"{verb} INTO {table} ({names}) VALUES " + ", ".join([one] * n) + tail

    if engine == "sqlite":
        db = _sqlite_connect(str(cfg["dsn"]), cwd, cfg["timeout"])
        stop.fire = db.interrupt
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for batch in batches():
                    counts["batches"] += 1
                    if not dry:
                        db.execute(statement(len(batch)), [v for row in batch for v in row])
                db.execute("ROLLBACK" if dry else "COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        finally:
            db.close()
    else:
        conn = _pg_connect(str(cfg["dsn"]), cfg["timeout"])
        stop.fire = conn.cancel_safe if hasattr(conn, "cancel_safe") else conn.cancel
        try:
            with conn.transaction(force_rollback=dry), conn.cursor() as cur:
                for batch in batches():
                    counts["batches"] += 1
                    cur.execute(statement(len(batch)).encode(), [v for row in batch for v in row])
        finally:
            conn.close()
    summary = {
        "table": str(imp["table"]),
        "status": "dry_run" if dry else "completed",
        "rows_read": counts["read"],
        "rows_imported": 0 if dry else counts["imported"],
        "rows_skipped": counts["skipped"],
        "batch_count": counts["batches"],
        "started_at": started.isoformat(),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "duration_ms": int((time.monotonic() - t0) * 1000),
    }
    out.write((json.dumps(summary, indent=2) + "\n").encode())


# ---- on the loop -----------------------------------------------------------------------------


async def run(cfg: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    """The step's work in a worker thread; the query is interrupted when the step is stopped or
    its `timeout` passes (the step's own timeout_sec applies too, around this)."""
    stop = Interrupt()
    work = _import if cfg.get("import") is not None else _query

    def job() -> None:
        try:
            work(cfg, cwd, out, stop)
        except StepFailed:
            raise
        except _errors() as exc:
            if stop.fired:
                raise StepFailed("the query was interrupted") from None
            raise StepFailed(f"{cfg['engine']}: {str(exc).strip()}") from None

    try:
        with trio.fail_after(cfg["timeout"]) if cfg["timeout"] else contextlib.nullcontext():
            await trio.to_thread.run_sync(job, abandon_on_cancel=True)
    except trio.TooSlowError:
        stop()
        raise StepFailed(f"{cfg['engine']}: the query took longer than its timeout of {cfg['timeout']:g}s") from None
    except trio.Cancelled:
        stop()
        raise
