"""Several dagd nodes on one PostgreSQL (Debian's server, tests/postgres.py), as processes: each
queued run is started by exactly one node; `dagctl nodes` and /api/v1/workers show them all; a
run is stopped from another node; and when a node is killed with SIGKILL, another node records
its run failed once the lease runs out — and, with on_restart: requeue, runs it again."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

from tests import postgres
from tests.integration.test_daemon import Daemon, start_daemon, wait_until

DAGS = {
    "mark.yaml": 'steps:\n  - id: mark\n    run: echo "$DAG_RUN_ID" >> {shared}/marks.txt\n',
    "long.yaml": "steps:\n  - id: wait\n    run: sh -c 'sleep 300' {marker}\n",
    "placed.yaml": "worker_selector: {{zone: node-c}}\nsteps:\n  - id: where\n    run: echo placed\n",
    "single.yaml": "max_active_runs: 1\nsteps:\n  - id: alone\n    run: mkdir {shared}/alone || exit 9; sleep 0.3; rmdir {shared}/alone\n",
}


def _nodes(tmp_path: Path, dsn: str, names: list[str], marker: str, requeue: bool = False) -> list[Daemon]:
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    out = []
    for name in names:
        root = tmp_path / name
        (root / "dags").mkdir(parents=True)
        for file, text in DAGS.items():
            (root / "dags" / file).write_text(text.format(shared=shared, marker=marker))
        config = root / "config.yaml"
        config.write_text(f"on_restart: {'requeue' if requeue else 'fail'}\nnode_labels: {{zone: {name}}}\n")
        out.append(
            start_daemon(
                root,
                {"DAGD_STORE": dsn, "DAGD_NODE_ID": name},
                ("--no-http", "--config", str(config)),
            )
        )
    return out


def _db(dsn: str) -> str:
    return dsn.split("///")[1].split("?")[0]


def _running_on(pg: postgres.Server, db: str, run_id: str) -> str:
    """The node that runs run_id, once it runs."""
    node = wait_until(
        lambda: pg.psql(f"SELECT node FROM dag_runs WHERE id = '{run_id}' AND status = 'running'", database=db).strip(),
        timeout=30,
    )
    return str(node)


def _alive(marker: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        out.append(pid)
            except OSError:
                pass
    return out


def test_each_queued_run_starts_on_exactly_one_node_and_every_node_is_listed(
    tmp_path: Path, pg: postgres.Server
) -> None:
    dsn = pg.fresh(f"t_{uuid.uuid4().hex[:10]}")
    nodes = _nodes(tmp_path, dsn, ["node-a", "node-b", "node-c"], "unused")
    try:
        a = nodes[0]
        ids = []
        for i in range(24):  # queued through all three nodes' sockets, taken by whichever is free
            ids.append(nodes[i % 3].ctl("enqueue", "mark").stdout.strip())
        wait_until(
            lambda: (
                pg.psql("SELECT count(*) FROM dag_runs WHERE status = 'succeeded'", database=_db(dsn)).strip() == "24"
            ),
            timeout=90,
        )
        marks = (tmp_path / "shared" / "marks.txt").read_text().split()
        assert sorted(marks) == sorted(ids)  # each run once: no run twice, none lost
        listed = json.loads(a.ctl("nodes", "--json").stdout)
        assert [n["id"] for n in listed] == ["node-a", "node-b", "node-c"]
        assert listed[1]["labels"] == {"zone": "node-b"}
        ran = pg.psql("SELECT DISTINCT node FROM dag_runs", database=_db(dsn)).split()
        assert set(ran) <= {"node-a", "node-b", "node-c"} and ran
        # worker_selector: queued through node-a, run by the node whose labels match — woken by
        # the store's NOTIFY, not its next poll
        started = time.monotonic()
        placed = a.ctl("enqueue", "placed").stdout.strip()
        where = wait_until(
            lambda: pg.psql(
                f"SELECT node FROM dag_runs WHERE id = '{placed}' AND status = 'succeeded'", database=_db(dsn)
            ).strip(),
            timeout=30,
        )
        assert where == "node-c"
        assert time.monotonic() - started < 4.5, time.monotonic() - started  # (polling alone: up to 5 s)
        # max_active_runs: 1 holds across nodes: six runs queued through all three, one at a time
        singles = [nodes[i % 3].ctl("enqueue", "single").stdout.strip() for i in range(6)]
        done = wait_until(
            lambda: (
                pg.psql(
                    "SELECT string_agg(status, ',') FROM dag_runs WHERE dag = 'single' AND status NOT IN ('queued', 'running')",
                    database=_db(dsn),
                )
                .strip()
                .count(",")
                == 5
                and "x"
            ),
            timeout=90,
        )
        assert done
        statuses = pg.psql("SELECT status FROM dag_runs WHERE dag = 'single'", database=_db(dsn)).split()
        assert statuses == ["succeeded"] * 6, (statuses, singles)  # an overlap would have exited 9
        # its logs from another node: as node-c stored them (its own files gone, as on another machine)
        shutil.rmtree(tmp_path / "node-c" / "state" / "logs" / "placed")
        shown = a.ctl("logs", "placed", placed)
        assert shown.code == 0 and "placed" in shown.stdout, (shown.stdout, shown.stderr)
    finally:
        for d in nodes:
            d.close()


def test_a_run_stopped_from_another_node_and_a_killed_nodes_run_taken_over(tmp_path: Path, pg: postgres.Server) -> None:
    dsn = pg.fresh(f"t_{uuid.uuid4().hex[:10]}")
    marker = f"dagd-node-{uuid.uuid4().hex[:8]}"
    nodes = _nodes(tmp_path, dsn, ["node-a", "node-b"], marker, requeue=True)
    killed: Daemon | None = None
    try:
        a, b = nodes
        db = _db(dsn)
        first = b.ctl("enqueue", "long").stdout.strip()
        owner = _running_on(pg, db, first)
        other = a if owner == "node-b" else b
        stopped = other.ctl("stop", "long", first)  # the run is on the other node: asked through the store
        assert stopped.code == 0, stopped.stderr
        wait_until(
            lambda: pg.psql(f"SELECT status FROM dag_runs WHERE id = '{first}'", database=db).strip() == "aborted",
            timeout=30,
        )
        # a node killed mid-run: the survivor records the run failed when its lease runs out, and
        # (on_restart: requeue) runs it again
        second = a.ctl("enqueue", "long").stdout.strip()
        owner = _running_on(pg, db, second)
        killed = a if owner == "node-a" else b
        survivor = b if killed is a else a
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.wait()
        row = wait_until(
            lambda: pg.psql(
                f"SELECT status, error, node FROM dag_runs WHERE id = '{second}' AND status <> 'running'", database=db
            ).strip(),
            timeout=45,
        )
        status, error, taker = str(row).split("|")
        assert status == "failed" and "stopped renewing its lease" in error and taker != owner, row
        again = wait_until(
            lambda: pg.psql(
                f"SELECT node FROM dag_runs WHERE id = '{second}_requeued' AND status = 'running'", database=db
            ).strip(),
            timeout=30,
        )
        assert again == ("node-b" if killed is a else "node-a")
        survivor.ctl("stop", "long", f"{second}_requeued")
    finally:
        for d in nodes:
            if d is not killed:
                d.close()
        if killed is not None:
            killed.notify.close()
        for pid in _alive(marker):  # what the killed node's run left on this host
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


def test_a_frozen_node_loses_its_run_and_its_late_result_is_not_recorded(tmp_path: Path, pg: postgres.Server) -> None:
    dsn = pg.fresh(f"t_{uuid.uuid4().hex[:10]}")
    marker = f"dagd-frozen-{uuid.uuid4().hex[:8]}"
    nodes = _nodes(tmp_path, dsn, ["node-a", "node-b"], marker)
    frozen: Daemon | None = None
    try:
        a, b = nodes
        db = _db(dsn)
        rid = a.ctl("enqueue", "long").stdout.strip()
        owner = _running_on(pg, db, rid)
        frozen = a if owner == "node-a" else b
        frozen.proc.send_signal(signal.SIGSTOP)  # a frozen machine: it stops renewing its lease
        row = wait_until(
            lambda: pg.psql(
                f"SELECT status, node FROM dag_runs WHERE id = '{rid}' AND status <> 'running'", database=db
            ).strip(),
            timeout=45,
        )
        assert str(row).split("|")[0] == "failed" and str(row).split("|")[1] != owner, row
        frozen.proc.send_signal(signal.SIGCONT)  # it wakes: finds the run taken over, ends it
        wait_until(lambda: not _alive(marker), timeout=30)
        after = pg.psql(f"SELECT status, error FROM dag_runs WHERE id = '{rid}'", database=db).strip()
        assert after.startswith("failed|") and "stopped renewing its lease" in after, after  # not its late 'aborted'
        log = (tmp_path / owner / "dagd.log").read_text()
        assert "this node lost its lease" in log and "a late result of this node is not recorded" in log
    finally:
        if frozen is not None:
            frozen.proc.send_signal(signal.SIGCONT)
        for d in nodes:
            d.close()
        for pid in _alive(marker):
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


def test_step_state_is_shared_by_the_nodes_of_a_store(tmp_path: Path, pg: postgres.Server) -> None:
    dsn = pg.fresh(f"t_{uuid.uuid4().hex[:10]}")
    nodes = _nodes(tmp_path, dsn, ["node-a", "node-b"], "unused")
    try:
        a, b = nodes
        for n in nodes:
            (n.root / "dags" / "put.yaml").write_text(
                "worker_selector: {zone: node-a}\nsteps:\n  - action: state.set\n"
                "    with: {key: cursor, value: {page: 7}, scope: global}\n"
            )
            (n.root / "dags" / "get.yaml").write_text(
                "worker_selector: {zone: node-b}\nsteps:\n  - id: read\n    action: state.list\n"
                "    with: {scope: global, prefix: cur, include_values: true}\n"
            )
        b.ctl("reload")
        a.ctl("reload")
        db = _db(dsn)
        put = a.ctl("enqueue", "put").stdout.strip()
        wait_until(
            lambda: pg.psql(f"SELECT status FROM dag_runs WHERE id = '{put}'", database=db).strip() == "succeeded",
            timeout=30,
        )
        got = b.ctl("enqueue", "get").stdout.strip()
        wait_until(
            lambda: pg.psql(f"SELECT status FROM dag_runs WHERE id = '{got}'", database=db).strip() == "succeeded",
            timeout=30,
        )
        assert pg.psql(f"SELECT node FROM dag_runs WHERE id = '{got}'", database=db).strip() == "node-b"
        shown = json.loads(b.ctl("logs", "get", got).stdout.split("\n", 1)[1])
        assert shown["entries"][0]["key"] == "cursor" and shown["entries"][0]["value"] == {"page": 7}
    finally:
        for d in nodes:
            d.close()
