"""sqlite.query / sqlite.import on real SQLite files and postgres.query / postgres.import against a
real PostgreSQL (Debian's server, started by tests/postgres.py on a Unix socket): Dagu's output
forms, params, several statements, transactions that roll back, imports with conflicts and dry
runs, the 1.x spellings — and a timeout or a stop cancelling the query on the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests import postgres
from tests.conftest import run_dagctl, run_steps


def _out(step: dict[str, Any]) -> str:
    return Path(step["stdout_path"]).read_text()


def test_sqlite_queries_as_dagu_writes_them(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    steps = run_steps(
        tmp_path,
        "q",
        f"""working_dir: {tmp_path}
steps:
  - id: init
    action: sqlite.query
    with:
      dsn: t.db
      transaction: true
      query: |
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT);
        INSERT INTO users (name, note) VALUES ('Alice', 'a;b'), ('Bob', NULL), ('Carol', '-- not a comment');
        CREATE TRIGGER stamp AFTER INSERT ON users BEGIN UPDATE users SET note = 'new' WHERE id = NEW.id AND NEW.note IS NULL; END;
  - id: jsonl
    depends: init
    action: sqlite.query
    with:
      dsn: file:t.db
      query: "SELECT name, id, note FROM users ORDER BY id"
  - id: json
    depends: init
    action: sqlite.query
    with: {{dsn: t.db, query: "SELECT id, name FROM users WHERE id = 1", output_format: json}}
  - id: csv
    depends: init
    action: sqlite.query
    with: {{dsn: t.db, query: "SELECT id, note FROM users ORDER BY id", output_format: csv, headers: true, null_string: "-", max_rows: 2}}
  - id: named
    depends: init
    action: sqlite.query
    with:
      dsn: t.db
      query: "SELECT name FROM users WHERE id >= :low AND name <> :skip ORDER BY id"
      params: {{low: 2, skip: Carol}}
    output: NAMED
  - id: rollback
    depends: init
    action: sqlite.query
    continue_on: failure
    with:
      dsn: t.db
      transaction: true
      query: |
        UPDATE users SET name = 'changed';
        SELECT * FROM no_such_table;
  - id: after
    depends: rollback
    action: sqlite.query
    with: {{dsn: t.db, query: "SELECT count(*) AS n FROM users WHERE name = 'changed'"}}
  - id: to_file
    depends: init
    action: sqlite.query
    with: {{dsn: t.db, query: "SELECT id FROM users ORDER BY id", output_file: out/ids.jsonl}}
  - name: legacy
    depends: init
    executor:
      type: sqlite
      config: {{dsn: t.db}}
    command: SELECT count(*) AS total FROM users
""",
        code=1,  # partially succeeded: one step failed and was continued past
    )
    assert _out(steps["jsonl"]) == (
        '{"id":1,"name":"Alice","note":"a;b"}\n{"id":2,"name":"Bob","note":null}\n'
        '{"id":3,"name":"Carol","note":"-- not a comment"}\n'
    )
    assert _out(steps["json"]) == '[\n  {\n    "id": 1,\n    "name": "Alice"\n  }\n]\n'
    assert _out(steps["csv"]) == "id,note\n1,a;b\n2,-\n"
    assert steps["named"]["output_value"] == '{"name":"Bob"}'
    assert steps["rollback"]["status"] == "failed" and "no such table" in steps["rollback"]["error"]
    assert _out(steps["after"]) == '{"n":0}\n'  # the transaction rolled back
    assert (tmp_path / "out" / "ids.jsonl").read_text() == '{"id":1}\n{"id":2}\n{"id":3}\n'
    assert _out(steps["to_file"]) == "wrote 3 row(s) to out/ids.jsonl\n"
    assert _out(steps["legacy"]) == '{"total":3}\n'
    assert db.exists()


def test_sqlite_import_csv_tsv_jsonl_conflicts_and_dry_runs(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id,name,city\n1,Ann,Oslo\n2,Bo,NULL\n3,Cy,Rome\n")
    (tmp_path / "more.tsv").write_text("id\tname\tcity\n3\tCyrus\tParis\n4\tDi\t\n")
    (tmp_path / "last.jsonl").write_text('{"id": 5, "name": "Ed", "city": "Lima"}\n{"id": 6, "name": "Flo"}\n')
    (tmp_path / "bad.csv").write_text("id,name,city\n7,Gil,Bonn\n8,broken\n")
    steps = run_steps(
        tmp_path,
        "imp",
        f"""working_dir: {tmp_path}
steps:
  - id: create
    action: sqlite.query
    with: {{dsn: p.db, query: "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, city TEXT)"}}
  - id: csv
    depends: create
    action: sqlite.import
    with: {{dsn: p.db, import: {{input_file: people.csv, table: people}}}}
  - id: tsv_replace
    depends: csv
    action: sqlite.import
    with: {{dsn: p.db, import: {{input_file: more.tsv, table: people, on_conflict: replace}}}}
  - id: jsonl_dry
    depends: tsv_replace
    action: sqlite.import
    with: {{dsn: p.db, import: {{input_file: last.jsonl, table: people, dry_run: true}}}}
  - id: jsonl_one
    depends: jsonl_dry
    executor:
      type: sqlite
      config: {{dsn: p.db, import: {{input_file: last.jsonl, table: people, max_rows: 1}}}}
  - id: bad
    depends: jsonl_one
    continue_on: failure
    action: sqlite.import
    with: {{dsn: p.db, import: {{input_file: bad.csv, table: people, batch_size: 1}}}}
  - id: dump
    depends: bad
    action: sqlite.query
    with: {{dsn: p.db, query: "SELECT id, name, city FROM people ORDER BY id", output_format: csv, null_string: "~"}}
""",
        code=1,
    )
    assert json.loads(_out(steps["csv"]))["rows_imported"] == 3
    summary = json.loads(_out(steps["jsonl_dry"]))
    assert summary["status"] == "dry_run" and summary["rows_read"] == 2 and summary["rows_imported"] == 0
    assert steps["bad"]["status"] == "failed" and "line 3 has 2 fields" in steps["bad"]["error"]
    # NULL and "" are nulls; replace took Cyrus over Cy; the dry run and the failed file left nothing
    assert _out(steps["dump"]) == "1,Ann,Oslo\n2,Bo,~\n3,Cyrus,Paris\n4,Di,~\n5,Ed,Lima\n"


def test_postgres_queries_params_types_transactions_and_import(tmp_path: Path, pg: postgres.Server) -> None:
    (tmp_path / "prices.csv").write_text("sku,price\nA1,10.50\nB2,3\n")
    (tmp_path / "update.csv").write_text("sku,price\nA1,11.00\nC3,7.25\n")
    steps = run_steps(
        tmp_path,
        "pg",
        f"""working_dir: {tmp_path}
env:
  - DSN: "{pg.dsn}"
steps:
  - id: init
    action: postgres.query
    with:
      dsn: ${{DSN}}
      query: |
        DROP TABLE IF EXISTS prices;
        CREATE TABLE prices (sku text PRIMARY KEY, price numeric(8,2), seen date DEFAULT '2026-01-02');
  - id: load
    depends: init
    action: postgres.import
    with:
      dsn: ${{DSN}}
      import: {{input_file: prices.csv, table: prices}}
  - id: upsert
    depends: load
    action: postgres.import
    with:
      dsn: ${{DSN}}
      import: {{input_file: update.csv, table: prices, on_conflict: replace, conflict_target: sku}}
  - id: positional
    depends: upsert
    action: postgres.query
    with:
      dsn: ${{DSN}}
      query: "SELECT sku, price, seen, '100%' AS pct, 2::int AS two FROM prices WHERE price > $1 ORDER BY sku"
      params: [5]
  - id: named
    depends: upsert
    action: postgres.query
    with:
      dsn: ${{DSN}}
      query: "SELECT count(*) AS n FROM prices WHERE sku = :sku"
      params: {{sku: C3}}
  - id: several
    depends: upsert
    action: postgres.query
    with:
      dsn: ${{DSN}}
      transaction: true
      isolation_level: serializable
      advisory_lock: nightly-prices
      query: "SELECT 1 AS a; SELECT 'x;y' AS b"
  - id: rollback
    depends: [positional, named, several]
    continue_on: failure
    action: postgres.query
    with:
      dsn: ${{DSN}}
      transaction: true
      query: "UPDATE prices SET price = 0; SELECT 1/0"
  - name: legacy
    depends: rollback
    executor:
      type: postgres
      config:
        dsn: ${{DSN}}
    command: SELECT sum(price) AS total FROM prices
""",
        code=1,
    )
    assert json.loads(_out(steps["load"]))["rows_imported"] == 2
    assert _out(steps["positional"]) == (
        '{"pct":"100%","price":11,"seen":"2026-01-02","sku":"A1","two":2}\n'
        '{"pct":"100%","price":7.25,"seen":"2026-01-02","sku":"C3","two":2}\n'
    )
    assert _out(steps["named"]) == '{"n":1}\n'
    assert _out(steps["several"]) == '{"a":1}\n{"b":"x;y"}\n'
    assert steps["rollback"]["status"] == "failed" and "division by zero" in steps["rollback"]["error"]
    assert _out(steps["legacy"]) == '{"total":21.25}\n'  # 11 + 3 + 7.25: the UPDATE rolled back
    assert pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").strip() == "0"


def test_a_timeout_and_a_step_timeout_cancel_the_query_on_the_server(tmp_path: Path, pg: postgres.Server) -> None:
    steps = run_steps(
        tmp_path,
        "slow",
        f"""steps:
  - id: own_timeout
    action: postgres.query
    continue_on: failure
    with: {{dsn: "{pg.dsn}", query: "SELECT pg_sleep(60) AS dagd_slow_one", timeout: 1}}
  - id: step_timeout
    depends: own_timeout
    action: postgres.query
    timeout_sec: 1
    with: {{dsn: "{pg.dsn}", query: "SELECT pg_sleep(61) AS dagd_slow_two"}}
""",
        code=1,
    )
    assert steps["own_timeout"]["status"] == "failed" and "timeout" in steps["own_timeout"]["error"]
    assert steps["step_timeout"]["status"] == "failed" and steps["step_timeout"]["exit_code"] == 124
    active = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%dagd_slow%' AND pid <> pg_backend_pid()")
    assert active.strip() == "0"


def test_validate_and_run_name_sql_mistakes(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        """steps:
  - id: unknown
    action: sqlite.query
    with: {dsn: ":memory:", query: "SELECT 1", outptu_format: csv}
  - id: noquery
    action: postgres.query
    with: {dsn: "postgresql:///x"}
"""
    )
    v = run_dagctl(["validate", "m.yaml"], tmp_path)
    assert v.code == 1 and "does not take outptu_format" in v.stderr and "needs a query" in v.stderr, v.stderr
    r = run_dagctl(["run", "m.yaml"], tmp_path)
    assert r.code != 0 and "outptu_format" in r.stderr and "Traceback" not in r.stderr, r.stderr
