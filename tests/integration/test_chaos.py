"""The chaos test, short version (`make bench` runs 10 000 fires): three dagd nodes on one real
PostgreSQL fire 8 DAGs every minute for 40 minutes of a shared fast clock — 320 slots in 20 real
seconds — while one node is killed with SIGKILL (and started again) and another is frozen with
SIGSTOP for longer than a lease (and thawed). Every slot fires exactly once, every slot has
exactly one recorded success, and every run the faulted nodes held is re-queued within 30 s."""

from __future__ import annotations

import json
from pathlib import Path

from tests import chaos, postgres


def test_three_nodes_fire_every_slot_once_through_kill_9_and_sigstop(tmp_path: Path, pg: postgres.Server) -> None:
    plan = [(3.0, "kill", "n1", 3.0), (6.0, "stop", "n2", 28.0)]
    o = chaos.run(
        tmp_path, pg, nodes=3, dags=8, minutes=40, scale=120.0, plan=plan, capacity=32, step_sec=1.0, busy_first=True
    )
    report = json.dumps(chaos.summary(o))
    assert o.problems() == [], report
    assert o.fired == o.expected == 320 and not o.missed and not o.extra, report
    assert [(f.kind, f.node) for f in o.faults] == [("kill", "n1"), ("stop", "n2")], report
    # the runs in flight on the hit nodes (each step lingers 1 s; each fault waits for one): all
    # ended and run again
    assert all(f.held for f in o.faults), report
    assert len(o.recovery) == sum(len(f.held) for f in o.faults) and max(o.recovery) <= 30.0, report
    assert o.requeued >= len(o.recovery), report
    # the frozen node's runs were taken over by lease: after it, not before (it renewed until frozen)
    frozen = [r for f in o.faults if f.kind == "stop" for r in f.held]
    assert frozen, report
    assert o.attempts["2"] >= 1, report  # re-run steps see DAG_RUN_ATTEMPT=2
