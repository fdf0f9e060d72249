"""Many runs through many restarts of dagd (on_restart: reattach): the harness of the restart soak
in tests/integration/test_reattach.py (a short one) and of `make bench` (1000 runs, a restart
every 30 s).

Every run of three DAGs — short, long, and one whose middle step fails once and is retried — is
queued at once; while they run, dagd is restarted over and over, a clean restart (`dagctl
prepare-stop --keep-runs`, SIGTERM) and a SIGKILL by turns. Each step appends `<run id> <step>` to
one file when it is done. What is checked, from the store, that file and /proc:
- lost: every run ends succeeded (a run failed "lost during restart" or aborted counts here);
- duplicated: each step of each run appended its line exactly once (a step adopted, never rerun);
- orphaned: no process of any run is left once all have ended.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.test_daemon import Daemon, alive_with, start_daemon

STEPS = ("a", "b", "c")


def _dag(root: Path, kind: str) -> str:
    marks, tries = root / "marks", root / "tries"
    middle = {
        "short": "sleep 0.3",
        "long": "sleep 2.5",
        "retried": f'echo x >> {tries}/$DAG_RUN_ID; [ "$(wc -l < {tries}/$DAG_RUN_ID)" -ge 2 ] || exit 1; sleep 0.5',
    }[kind]
    retry = "    retry_policy: {limit: 2, interval_sec: 1}\n" if kind == "retried" else ""
    return (
        "max_active_runs: 1000\n"
        "steps:\n"
        f'  - id: a\n    run: echo "$DAG_RUN_ID a" >> {marks} # soak-marker\n'
        f'  - id: b\n    depends: a\n    run: {middle}; echo "$DAG_RUN_ID b" >> {marks} # soak-marker\n{retry}'
        f'  - id: c\n    depends: b\n    run: echo "$DAG_RUN_ID c" >> {marks} # soak-marker\n'
    )


@dataclass
class Soak:
    runs: int
    restarts: int = 0
    kills: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    duplicated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    orphaned: list[int] = field(default_factory=list)
    reattached: int = 0  # runs a new dagd went on with (from its log)

    @property
    def lost(self) -> int:
        return self.runs - self.statuses.get("succeeded", 0)


def _enqueue_all(d: Daemon, runs: int) -> list[str]:
    kinds = ("short", "long", "retried")
    ids: list[str] = []
    for start in range(0, runs, 100):  # one connection per 100 requests
        batch = range(start, min(runs, start + 100))
        lines = [
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "run.enqueue",
                    "params": {"name": kinds[i % 3], "params": [], "run_id": f"soak{i:05d}"},
                }
            )
            for i in batch
        ]
        replies = d.rpc(("\n".join(lines) + "\n").encode())
        assert all("result" in r for r in replies) and len(replies) == len(lines), replies[:3]
        ids += [r["result"]["run_id"] for r in replies]
    return ids


def _statuses(d: Daemon, ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("short", "long", "retried"):
        r = d.ctl("history", name, "--json", "--limit", str(len(ids) + 10))
        for row in json.loads(r.stdout or "[]"):
            out[row["id"]] = row["status"]
    return out


def run(root: Path, runs: int, restart_every: float, *, max_concurrent: int = 32, timeout: float = 1800) -> Soak:
    """Queue `runs` runs and restart dagd every `restart_every` seconds until all have ended."""
    (root / "tries").mkdir(parents=True, exist_ok=True)
    (root / "dags").mkdir(parents=True, exist_ok=True)
    for kind in ("short", "long", "retried"):
        (root / "dags" / f"{kind}.yaml").write_text(_dag(root, kind))
    env = {"DAGD_ON_RESTART": "reattach", "DAGD_LOOP_WATCH_MS": None}
    args = ("--no-http", "--max-concurrent-runs", str(max_concurrent))
    result = Soak(runs)
    started = time.monotonic()
    d = start_daemon(root, env, args)
    try:
        ids = _enqueue_all(d, runs)
        clean = True
        while True:
            deadline = time.monotonic() + restart_every
            done = False
            while time.monotonic() < deadline:
                statuses = _statuses(d, ids)
                if len(statuses) == runs and all(s not in ("running", "queued") for s in statuses.values()):
                    done = True
                    break
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
            if done:
                break
            assert time.monotonic() - started < timeout, "the soak did not finish"
            if clean:  # a restart, as systemd's ExecStop= announces it
                r = d.ctl("prepare-stop", "--keep-runs")
                assert r.code == 0, r.stderr
                d.proc.send_signal(signal.SIGTERM)
                assert d.proc.wait(timeout=60) == 0
                result.restarts += 1
            else:
                d.proc.kill()
                d.proc.wait(timeout=30)
                result.kills += 1
            d.notify.close()
            clean = not clean
            d = start_daemon(root, env, args)
        result.seconds = time.monotonic() - started
        result.statuses = Counter(_statuses(d, ids).values())
        lines = Counter((root / "marks").read_text().splitlines()) if (root / "marks").exists() else Counter()
        for rid in ids:
            for step in STEPS:
                n = lines.get(f"{rid} {step}", 0)
                if n > 1:
                    result.duplicated.append(f"{rid} {step} ×{n}")
                elif n == 0:
                    result.missing.append(f"{rid} {step}")
        result.orphaned = alive_with("soak-marker")
        log_text = (root / "dagd.log").read_text(errors="replace")
        result.reattached = log_text.count("re-attached after a restart")
        return result
    finally:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            d.proc.wait(timeout=60)
        d.notify.close()
