"""Scheduled fires across several dagd nodes on one PostgreSQL, with nodes killed (SIGKILL, then
started again) and frozen (SIGSTOP, then SIGCONT) at random: the harness of the chaos test
(tests/integration/test_chaos.py, a short run) and of `make bench` (10 000 fires; fires/s with
1, 2 and 3 nodes).

The nodes share a fast schedule clock (DAGD_SCHEDULER_CLOCK, dagd.firing.scaled_clock): DAGs that
fire every minute of the first hours of 1 January 2031 fire, in real time, many times a second.
What is checked, from the store and from the file every step appends to:
- every (DAG, minute) slot fired exactly once: one `sched_…` run each, none missing, none extra;
- every slot has exactly one successful result among its run and its re-queued runs (a frozen
  node's late result, recorded over a run another node took over, would make it two);
- every run a faulted node held was ended and re-queued, and how long after the fault.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests import postgres
from tests.integration.test_daemon import Daemon, start_daemon

V0 = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)  # the first slot, on the nodes' shared clock
SCHED = re.compile(r"^sched_(\d{8}T\d{6}Z)_([0-9a-f]{12})((?:_requeued)*)$")


@dataclass
class Fault:
    kind: str  # "kill" (SIGKILL, started again `down` seconds later) or "stop" (SIGSTOP for `down` s)
    node: str
    at: float  # time.time() when the signal was sent
    down: float
    held: list[str] = field(default_factory=list)  # the runs the node held at that moment


@dataclass
class Outcome:
    nodes: int
    expected: int  # slots that should fire
    fired: int  # slots with a run
    missed: list[str]
    extra: list[str]  # runs of slots outside the schedule
    not_one_success: dict[str, int]  # slot -> successful results among its runs, when not 1
    executions: int  # step executions recorded in the shared file
    re_executed: int  # slots whose step ran more than once (a lease lost mid-run)
    requeued: int
    faults: list[Fault]
    recovery: list[float]  # per run held by a faulted node: seconds from the fault to its re-queue
    unrecovered: list[str]  # runs a faulted node held that were never re-queued
    seconds: float  # from the first slot to the last result
    attempts: Counter[str] = field(default_factory=Counter)

    @property
    def fires_per_sec(self) -> float:
        return self.fired / self.seconds if self.seconds > 0 else 0.0

    def problems(self) -> list[str]:
        out = []
        if self.missed:
            out.append(f"{len(self.missed)} slots missed, e.g. {self.missed[:3]}")
        if self.extra:
            out.append(f"{len(self.extra)} runs outside the schedule, e.g. {self.extra[:3]}")
        if self.not_one_success:
            out.append(f"slots without exactly one success: {dict(list(self.not_one_success.items())[:5])}")
        if self.unrecovered:
            out.append(f"runs of faulted nodes never re-queued: {self.unrecovered[:5]}")
        late = [r for r in self.recovery if r > 30]
        if late:
            out.append(f"{len(late)} runs re-queued more than 30 s after their node's fault: {sorted(late)[-3:]}")
        return out


def _schedule(minutes: int) -> str:
    if minutes <= 60:
        return f"0-{minutes - 1} 0 1 1 *"
    assert minutes % 60 == 0, "whole hours past the first one"
    return f"* 0-{minutes // 60 - 1} 1 1 *"


def _dag(shared: Path, minutes: int, step_sec: float) -> str:
    linger = f"; sleep {step_sec}" if step_sec else ""  # runs in flight when a node is hit
    return (
        f'schedule: "{_schedule(minutes)}"\n'
        "overlap_policy: all\n"  # every slot runs, however far behind the nodes are
        "max_active_runs: 1000\n"  # (Dagu's default, 1, would queue each DAG's runs one by one)
        "catchup_window: 24h\n"  # a slot the nodes reach late still fires (as catchup)
        "steps:\n"
        f'  - id: mark\n    run: echo "$DAG_RUN_ID $DAG_RUN_ATTEMPT" >> {shared}/executions.txt{linger}\n'
    )


class Cluster:
    def __init__(self, work: Path, dsn: str, nodes: int, clock: str, capacity: int) -> None:
        self.work, self.dsn, self.clock, self.capacity = work, dsn, clock, capacity
        self.names = [f"n{i + 1}" for i in range(nodes)]
        self.daemons: dict[str, Daemon] = {}
        self.lock = threading.Lock()

    def start(self, name: str) -> None:
        root = self.work / name
        root.mkdir(exist_ok=True)
        config = root / "config.yaml"
        config.write_text(f"on_restart: requeue\nmax_concurrent_runs: {self.capacity}\n")
        d = start_daemon(
            root,
            {
                "DAGD_STORE": self.dsn,
                "DAGD_NODE_ID": name,
                "DAGD_DAGS_DIR": str(self.work / "dags"),
                "DAGD_SCHEDULER_CLOCK": self.clock,
                "DAGD_LOOP_WATCH_MS": None,  # a frozen node's loop is held by SIGSTOP, not by dagd
            },
            ("--no-http", "--config", str(config)),
        )
        with self.lock:
            self.daemons[name] = d

    def held(self, name: str) -> list[str]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT id FROM dag_runs WHERE node = %s AND status IN ('running', 'queued')"
                " AND id NOT IN (SELECT run_id FROM run_queue)",
                (name,),
            ).fetchall()
        return [r[0] for r in rows]

    def kill(self, name: str, down: float) -> Fault:
        d = self.daemons[name]
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.notify.close()
        fault = Fault("kill", name, time.time(), down, self.held(name))
        return fault

    def freeze(self, name: str, down: float) -> Fault:
        self.daemons[name].proc.send_signal(signal.SIGSTOP)
        return Fault("stop", name, time.time(), down, self.held(name))

    def thaw(self, name: str) -> None:
        self.daemons[name].proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        for d in self.daemons.values():
            with contextlib.suppress(OSError):
                d.proc.send_signal(signal.SIGCONT)
        for d in self.daemons.values():
            if d.proc.poll() is None:
                d.close()
            else:
                with contextlib.suppress(OSError):
                    d.notify.close()


def _inject(
    cluster: Cluster,
    plan: list[tuple[float, str, str, float]],
    faults: list[Fault],
    stop: threading.Event,
    busy_first: bool,
) -> None:
    """Carry out `plan`: (seconds after the start, kind, node, seconds down), in order; with
    `busy_first`, each fault waits (up to 15 s) until its node holds a run."""
    started = time.monotonic()
    revive: list[tuple[float, Fault]] = []
    pending = sorted(plan)
    while (pending or revive) and not stop.is_set():
        now = time.monotonic() - started
        for due, fault in [r for r in revive if r[0] <= now]:
            revive.remove((due, fault))
            if fault.kind == "kill":
                cluster.start(fault.node)
            else:
                cluster.thaw(fault.node)
        while pending and pending[0][0] <= now:
            _, kind, node, down = pending.pop(0)
            until = time.monotonic() + 15
            while busy_first and not cluster.held(node) and time.monotonic() < until and not stop.is_set():
                stop.wait(0.05)  # (the store has no event for "this node took a run")
            fault = cluster.kill(node, down) if kind == "kill" else cluster.freeze(node, down)
            faults.append(fault)
            revive.append((now + down, fault))
        nxt = min([p[0] for p in pending[:1]] + [r[0] for r in revive], default=now)
        stop.wait(max(0.0, min(0.2, nxt - now)))  # a timer between faults; nothing waits on it


def random_plan(nodes: list[str], seconds: float, every: float, seed: int) -> list[tuple[float, str, str, float]]:
    """Faults every `every` seconds or so, never more than all nodes but one down at a time."""
    rng = random.Random(seed)
    plan: list[tuple[float, str, str, float]] = []
    t = every / 2
    busy: dict[str, float] = {}
    while t < seconds:
        free = [n for n in nodes if busy.get(n, 0.0) <= t]
        if len(free) >= 2:  # one node at least is never hit
            node = rng.choice(free)
            kind = rng.choice(["kill", "stop"])
            down = rng.uniform(1.0, 5.0) if kind == "kill" else rng.uniform(26.0, 34.0)
            plan.append((t, kind, node, down))
            busy[node] = t + down + 2.0
        t += rng.uniform(every / 2, every * 1.5)
    return plan


def run(
    work: Path,
    server: postgres.Server,
    *,
    nodes: int,
    dags: int,
    minutes: int,
    scale: float,
    plan: list[tuple[float, str, str, float]] = (),  # type: ignore[assignment]
    capacity: int = 16,
    step_sec: float = 0.0,
    busy_first: bool = False,
    lead: float = 12.0,
    timeout: float = 600.0,
) -> Outcome:
    """Start `nodes` dagd nodes on a fresh database of `server` with `dags` DAGs that fire every
    minute for `minutes` minutes of the shared clock (`scale` of its seconds per real second),
    carry out the fault `plan`, wait for every slot's result, and check them."""
    work.mkdir(parents=True, exist_ok=True)
    dsn = server.fresh(f"chaos_{os.getpid()}_{time.monotonic_ns() % 10**9}")
    shared = work / "shared"
    shared.mkdir(exist_ok=True)
    (work / "dags").mkdir(exist_ok=True)
    tags = {}
    for i in range(dags):
        name = f"fire{i:03d}"
        (work / "dags" / f"{name}.yaml").write_text(_dag(shared, minutes, step_sec))
        tags[hashlib.sha256(name.encode()).hexdigest()[:12]] = name
    real0 = time.time() + lead  # the nodes see the DAGs before the first slot: none is before their time
    cluster = Cluster(work, dsn, nodes, f"{real0},{V0.timestamp()},{scale}", capacity)
    faults: list[Fault] = []
    stop = threading.Event()
    try:
        starters = [threading.Thread(target=cluster.start, args=(n,)) for n in cluster.names]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if len(cluster.daemons) != nodes:
            raise RuntimeError("a node did not start")
        if time.time() >= real0:
            raise RuntimeError(f"the nodes took more than {lead} s to start: raise `lead`")
        while time.time() < real0:  # the fault plan counts from the first slot
            time.sleep(min(0.1, real0 - time.time()))
        injector = threading.Thread(target=_inject, args=(cluster, list(plan), faults, stop, busy_first))
        injector.start()
        expected = dags * minutes
        deadline = time.monotonic() + timeout
        last = None
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'succeeded'),"
                    " count(*) FILTER (WHERE status IN ('queued', 'running')), max(finished_at)"
                    " FROM dag_runs"
                ).fetchone()
                assert row is not None
                done, open_runs, last = row
                if done >= expected and open_runs == 0 and not injector.is_alive():
                    break
                stop.wait(0.25)  # polling the store: the cluster's progress has no event to wait on
        stop.set()
        injector.join()
        return _check(dsn, shared, tags, minutes, nodes, faults, real0, last)
    finally:
        stop.set()
        cluster.close()


def _check(
    dsn: str,
    shared: Path,
    tags: dict[str, str],
    minutes: int,
    nodes: int,
    faults: list[Fault],
    real0: float,
    last: float | None,
) -> Outcome:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT id, status, queued_at, error FROM dag_runs").fetchall()
    slots = {
        f"{(V0 + dt.timedelta(minutes=m)).strftime('%Y%m%dT%H%M%SZ')}_{tag}" for tag in tags for m in range(minutes)
    }
    fired: set[str] = set()
    extra, successes = [], Counter[str]()
    queued_at = {r[0]: r[2] for r in rows}
    requeued = 0
    for rid, status, _, _ in rows:
        m = SCHED.match(rid)
        if m is None or m.group(2) not in tags:
            extra.append(rid)
            continue
        slot = f"{m.group(1)}_{m.group(2)}"
        if slot not in slots:
            extra.append(rid)
            continue
        if m.group(3):
            requeued += 1
        else:
            fired.add(slot)
        if status == "succeeded":
            successes[slot] += 1
    ran = Counter[str]()
    attempts = Counter[str]()
    path = shared / "executions.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        rid, _, attempt = line.partition(" ")
        m = SCHED.match(rid)
        if m:
            ran[f"{m.group(1)}_{m.group(2)}"] += 1
            attempts[attempt] += 1
    recovery, unrecovered = [], []
    for fault in faults:
        for rid in fault.held:
            again = queued_at.get(f"{rid}_requeued")
            if again is None:
                unrecovered.append(rid)
            else:
                recovery.append(max(0.0, again - fault.at))
    return Outcome(
        nodes=nodes,
        expected=len(slots),
        fired=len(fired),
        missed=sorted(slots - fired),
        extra=extra,
        not_one_success={s: successes[s] for s in slots if successes[s] != 1},
        executions=sum(ran.values()),
        re_executed=sum(1 for n in ran.values() if n > 1),
        requeued=requeued,
        faults=faults,
        recovery=recovery,
        unrecovered=unrecovered,
        seconds=(last or real0) - real0,
        attempts=attempts,
    )


def summary(o: Outcome) -> dict[str, Any]:
    return {
        "nodes": o.nodes,
        "slots": o.expected,
        "fired": o.fired,
        "missed": len(o.missed),
        "extra": len(o.extra),
        "slots_without_one_success": len(o.not_one_success),
        "executions": o.executions,
        "re_executed": o.re_executed,
        "requeued": o.requeued,
        "faults": [f"{f.kind} {f.node} ({len(f.held)} runs held)" for f in o.faults],
        "recovery_max_sec": round(max(o.recovery), 1) if o.recovery else None,
        "seconds": round(o.seconds, 1),
        "fires_per_sec": round(o.fires_per_sec, 1),
        "attempts": dict(o.attempts),
    }
