"""dagd's benchmarks: every figure is a ratio to a baseline measured on this machine in the same
run (absolute times drift on shared machines). `make bench` runs them all and rewrites
bench/RESULTS.md; `bench/run.py NAME…` runs some.

Each benchmark repeats its measurement and reports min / median / max; the ratio is taken on
the medians.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SHELL = "/bin/sh"


@dataclass
class Figure:
    name: str
    unit: str
    samples: list[float]
    baseline_name: str = ""
    baseline: list[float] = field(default_factory=list)
    target: str = ""
    higher_is_better: bool = False
    note: str = ""
    max_ratio: float | None = None  # the target, as checks: ratio <= max_ratio (>= when higher is better)
    max_value: float | None = None  # median <= max_value

    def met(self) -> bool | None:
        checks: list[bool] = []
        if self.max_ratio is not None and self.ratio is not None:
            checks.append(self.ratio >= self.max_ratio if self.higher_is_better else self.ratio <= self.max_ratio)
        if self.max_value is not None:
            checks.append(self.median <= self.max_value)
        return all(checks) if checks else None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        b = statistics.median(self.baseline)
        return self.median / b if b else None

    def line(self) -> str:
        s = self.samples
        out = (
            f"{self.name}: {fmt(min(s))} / {fmt(self.median)} / {fmt(max(s))} {self.unit} (min/median/max of {len(s)})"
        )
        if self.baseline:
            b = self.baseline
            out += f"; baseline {self.baseline_name}: {fmt(statistics.median(b))} {self.unit}"
            out += f"; ratio {self.ratio:.2f}x"
        if self.target:
            out += f"; target {self.target}"
        return out


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    base: str
    root: Path
    env: dict[str, str]

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_sec(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def daemon(root: Path, *extra: str, poll: str = "2") -> Iterator[Daemon]:
    (root / "dags").mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "SHELL": SHELL,
        "TZ": "UTC",
        "DAGD_STATE_DIR": str(root / "state"),
        "DAGD_DAGS_DIR": str(root / "dags"),
        "DAGD_SOCKET": str(root / "dagd.sock"),
        **{
            k: v for k, v in os.environ.items() if k in ("DAGD_LOOP_WATCH_MS", "DAGD_CGROUPS", "DAGD_ON_RESTART")
        },  # to profile, to compare
    }
    with open(root / "dagd.log", "ab") as log:
        proc = subprocess.Popen(
            [PY, "-m", "dagd.daemon", "--user", "--poll", poll, "--http-bind", f"127.0.0.1:{port}", *extra],
            env=env,
            stderr=log,
        )
    d = Daemon(proc, f"http://127.0.0.1:{port}", root, env)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(d.base + "/api/v1/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"dagd did not start: {(root / 'dagd.log').read_text()[-2000:]}")
        time.sleep(0.05)
    try:
        yield d
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_loaded(d: Daemon, count: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        r = httpx.get(d.base + "/api/v1/dags?perPage=1", timeout=30).json()
        if r["pagination"]["totalRecords"] >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {r['pagination']['totalRecords']} of {count} DAGs loaded")
        time.sleep(0.2)


def write_dags(root: Path, n: int, prefix: str, text: Callable[[int], str], width: int = 4) -> None:
    """n DAG files <prefix>0000.yaml … in root/dags."""
    (root / "dags").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / "dags" / f"{prefix}{i:0{width}d}.yaml").write_text(text(i))


def daily_two_steps(i: int) -> str:
    """A daily schedule spread over the day, two steps: the shape of a typical crontab job."""
    return f"schedule: '{i % 60} {i % 24} * * *'\nsteps:\n  - id: a\n    run: 'true'\n  - {{id: b, depends: a, run: 'true'}}\n"


def run_sync(d: Daemon, name: str, timeout: int = 600) -> dict[str, object]:
    r = httpx.post(f"{d.base}/api/v1/dags/{name}/start-sync", json={"timeout": timeout}, timeout=timeout + 30)
    r.raise_for_status()
    run: dict[str, object] = r.json()["dagRun"]
    if run["statusLabel"] != "succeeded":
        raise RuntimeError(f"{name} ended {run['statusLabel']}: {run.get('error')}")
    return run


def spawn_loop(n: int, command: str) -> float:
    """n commands through the shell, back to back, from a tight loop: the machine's own cost."""
    t = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn(SHELL, [SHELL, "-c", command], os.environ)
        os.waitpid(pid, 0)
    return time.perf_counter() - t


# ---- 1. per-step overhead ------------------------------------------------------------------


def bench_steps(work: Path, reps: int) -> list[Figure]:
    n = 1000
    steps = "\n".join(f"  - id: s{i}\n    run: 'true'" for i in range(n))
    ours, base = [], []
    with daemon(work / "steps") as d:
        (d.root / "dags" / "chain.yaml").write_text(f"type: chain\nhist_retention_days: 1\nsteps:\n{steps}\n")
        wait_loaded(d, 1)
        contained = containment(d)
        for _ in range(reps):
            base.append(spawn_loop(n, "true"))
            t = time.perf_counter()
            run_sync(d, "chain")
            ours.append(time.perf_counter() - t)
    return [
        Figure(
            "1. 1000-step chain of `true` through dagd",
            "s",
            ours,
            "the same 1000 commands via posix_spawn(sh -c) in a loop",
            base,
            "<= 1.5x",
            max_ratio=1.5,
            note=f"per step: {statistics.median(ours) / n * 1000:.2f} ms vs {statistics.median(base) / n * 1000:.2f} ms;"
            f" containment: {contained}",
        )
    ]


def containment(d: Daemon) -> str:
    """How dagd contains runs on this machine (cgroups and how steps join them, or process groups)."""
    r = subprocess.run(
        [PY, "-m", "dagctl", "daemon", "--json"], env={**os.environ, **d.env}, capture_output=True, text=True
    )
    return str(json.loads(r.stdout)["containment"]) if r.returncode == 0 else "unknown"


# ---- 1b. side by side with Dagu ------------------------------------------------------------

# Dagu 1.x as published on the npm registry, cached: the same oracle the differential tests run
sys.path.insert(0, str(ROOT))
from tests.dagu_oracle import DAGU_VERSION, dagu_binary  # noqa: E402


def chain_yaml(n: int) -> str:
    """n steps of `true`, each depending on the one before (a form both Dagu and dagd read)."""
    steps = "".join(
        f'  - name: s{i}\n    command: "true"\n' + (f"    depends: [s{i - 1}]\n" if i else "") for i in range(n)
    )
    return f"steps:\n{steps}"


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def bench_dagu(work: Path, reps: int) -> list[Figure]:
    dagu = dagu_binary()
    root = work / "dagu"
    (root / "home").mkdir(parents=True)
    for n in (10, 400):
        (root / f"c{n}.yaml").write_text(chain_yaml(n))
    dagu_env = {**os.environ, "DAGU_HOME": str(root / "home")}
    local_env = {**os.environ, "DAGD_STATE_DIR": str(root / "local-state")}
    times: dict[str, list[float]] = {}
    with daemon(work / "dagu-daemon") as d:
        for n in (10, 400):
            (d.root / "dags" / f"c{n}.yaml").write_text(chain_yaml(n))
        wait_loaded(d, 2)
        daemon_env = {**os.environ, **d.env}
        for _ in range(max(reps, 5)):
            for n in (10, 400):
                times.setdefault(f"dagu{n}", []).append(timed([str(dagu), "start", f"c{n}.yaml"], dagu_env, root))
                times.setdefault(f"local{n}", []).append(
                    timed([PY, "-m", "dagctl", "run", f"c{n}.yaml"], local_env, root)
                )
                times.setdefault(f"daemon{n}", []).append(timed([PY, "-m", "dagctl", "run", f"c{n}"], daemon_env, root))
            times.setdefault("bare400", []).append(spawn_loop(390, "true"))

    def marginal(who: str) -> list[float]:
        return [(b - a) / 390 * 1000 for a, b in zip(times[f"{who}10"], times[f"{who}400"], strict=True)]

    bare = [t / 390 * 1000 for t in times["bare400"]]
    return [
        Figure("1c. a 10-step DAG, `dagctl run NAME` through dagd", "s", times["daemon10"], f"`dagu start` (Dagu {DAGU_VERSION})",
               times["dagu10"], "<= 1x", max_ratio=1.0),
        Figure("1d. a 10-step DAG, `dagctl run FILE` without a daemon", "s", times["local10"], f"`dagu start` (Dagu {DAGU_VERSION})",
               times["dagu10"], "<= 1x", max_ratio=1.0),
        Figure("1e. marginal cost of a step (400- vs 10-step chain), dagd", "ms", marginal("daemon"),
               "the same commands spawned bare", bare, "", note=f"Dagu {DAGU_VERSION}: {statistics.median(marginal('dagu')):.2f} ms;"
               f" dagctl run without a daemon: {statistics.median(marginal('local')):.2f} ms"),
        Figure(f"1f. marginal cost of a step (400- vs 10-step chain), Dagu {DAGU_VERSION}", "ms", marginal("dagu"),
               "the same commands spawned bare", bare, "(a peer, for comparison)"),
    ]  # fmt: skip


# ---- 2. fan-out ----------------------------------------------------------------------------


def bench_fanout(work: Path, reps: int) -> list[Figure]:
    n = 1000
    steps = "\n".join(f"  - id: s{i}\n    run: sleep 0.01" for i in range(n))
    ours, base = [], []
    with daemon(work / "fanout") as d:
        (d.root / "dags" / "fan.yaml").write_text(f"type: graph\nmax_active_steps: 8\nsteps:\n{steps}\n")
        wait_loaded(d, 1)
        for _ in range(reps):
            t = time.perf_counter()
            subprocess.run(
                ["xargs", "-P8", "-n1", "-d", "\\n", SHELL, "-c"],
                input="\n".join(["sleep 0.01"] * n),
                text=True,
                check=True,
            )
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            run_sync(d, "fan")
            ours.append(time.perf_counter() - t)
    return [
        Figure(
            "2. 1000 independent `sleep 0.01` steps, 8 at a time",
            "s",
            ours,
            "xargs -P8 sh -c 'sleep 0.01'",
            base,
            "<= 1.2x",
            max_ratio=1.2,
        )
    ]


# ---- 3. scheduler --------------------------------------------------------------------------


def bench_scheduler(work: Path, reps: int) -> list[Figure]:
    n = 1000
    root = work / "sched"
    write_dags(root, n, "tick", lambda i: "schedule: '* * * * *'\nsteps:\n  - id: go\n    run: 'true'\n")
    lags: list[float] = []
    p50s: list[float] = []
    p99s: list[float] = []
    idle: list[float] = []
    with daemon(root, "--max-concurrent-runs", "1000") as d:
        wait_loaded(d, n)
        db = d.root / "state" / "dagd.db"
        for _ in range(reps):
            now = time.time()
            boundary = (int(now // 60) + 1) * 60
            if boundary - now < 5:  # too close: dagd may still be settling; take the next one
                boundary += 60
            time.sleep(max(0.0, boundary - time.time()) + 0.1)
            deadline = time.time() + 55
            rows: list[tuple[float]] = []
            while time.time() < deadline:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    rows = conn.execute(
                        "SELECT s.started_at FROM dag_step_results s JOIN dag_runs r ON r.id = s.run_id"
                        " WHERE r.trigger IN ('scheduler', 'catchup') AND r.id LIKE ? AND s.started_at IS NOT NULL",
                        (f"sched_{time.strftime('%Y%m%dT%H%M', time.gmtime(boundary))}%",),
                    ).fetchall()
                if len(rows) >= n:
                    break
                time.sleep(0.5)
            if len(rows) < n:
                raise RuntimeError(f"only {len(rows)} of {n} scheduled steps started within the minute")
            minute = sorted(r[0] - boundary for r in rows)
            lags += minute
            p50s.append(minute[len(minute) // 2] * 1000)
            p99s.append(minute[int(len(minute) * 0.99) - 1] * 1000)
        # idle: suspend every DAG so no minute fires, then watch dagd's CPU for 20 s
        for i in range(n):
            httpx.post(f"{d.base}/api/v1/dags/tick{i:04d}/suspend", json={"suspend": True})
        time.sleep(3)
        for _ in range(reps):
            c0, t0 = d.cpu_sec(), time.monotonic()
            time.sleep(20)
            idle.append(100 * (d.cpu_sec() - c0) / (time.monotonic() - t0))
    return [
        Figure("3a. lag from the minute to each of 1000 steps' start, p50", "ms", p50s, target="(p99 is the target)"),
        Figure(
            "3b. lag from the minute to each of 1000 steps' start, p99",
            "ms",
            p99s,
            target="<= 100 ms",
            max_value=100,
            note=f"slowest of {len(lags)}: {max(lags) * 1000:.0f} ms",
        ),
        Figure("3c. dagd CPU while idle with 1000 DAGs loaded", "% of one core", idle, target="<= 1 %", max_value=1.0),
    ]


# ---- 4. CLI --------------------------------------------------------------------------------


def bench_cli(work: Path, reps: int) -> list[Figure]:
    ours, base = [], []
    with daemon(work / "cli") as d:
        (d.root / "dags" / "hello.yaml").write_text("steps:\n  - id: hi\n    run: echo hi\n")
        wait_loaded(d, 1)
        run_sync(d, "hello")
        env = {**os.environ, **d.env}
        for _ in range(max(reps, 10)):
            t = time.perf_counter()
            subprocess.run([PY, "-c", "pass"], check=True)
            base.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            subprocess.run([PY, "-m", "dagctl", "status", "hello"], env=env, check=True, stdout=subprocess.DEVNULL)
            ours.append((time.perf_counter() - t) * 1000)
    return [
        Figure(
            "4. `dagctl status NAME` against a running dagd, wall time",
            "ms",
            ours,
            "`python -c pass` on the same interpreter",
            base,
            "<= 3x and <= 60 ms",
            max_ratio=3,
            max_value=60,
        )
    ]


# ---- 5. memory and log throughput ----------------------------------------------------------


def bench_memory(work: Path, reps: int) -> list[Figure]:
    n = 1000
    root = work / "mem"
    write_dags(root, n, "job", daily_two_steps)
    size = 1 << 30
    (root / "dags" / "firehose.yaml").write_text(f"steps:\n  - id: out\n    run: head -c {size} /dev/zero\n")
    idle, growth, ours, base = [], [], [], []
    with daemon(root) as d:
        wait_loaded(d, n + 1)
        time.sleep(3)
        for rep in range(reps):
            idle.append(d.rss_kb() / 1024)

            def baseline(out: Path = work / "cat.out") -> None:
                t = time.perf_counter()
                subprocess.run([SHELL, "-c", f"head -c {size} /dev/zero > {out}"], check=True)
                base.append(size / (time.perf_counter() - t) / 1e6)
                out.unlink()

            if rep % 2:  # alternate the order: the second writer meets the first one's dirty pages
                baseline()
            before = d.rss_kb()
            peak = before
            t = time.perf_counter()
            r = httpx.post(f"{d.base}/api/v1/dags/firehose/start", json={}).json()["dagRunId"]
            while True:
                peak = max(peak, d.rss_kb())
                doc = httpx.get(f"{d.base}/api/v1/dag-runs/firehose/{r}").json()
                if doc.get("dagRunDetails", {}).get("statusLabel") in ("succeeded", "failed", "aborted"):
                    break
                time.sleep(0.05)
            ours.append(size / (time.perf_counter() - t) / 1e6)
            growth.append((peak - before) / 1024)
            for log in (d.root / "state").rglob("*.out"):  # 1 GiB per repetition: do not keep it
                log.unlink()
            if not rep % 2:
                baseline()
    return [
        Figure("5a. dagd RSS idle with 1000 DAGs loaded", "MiB", idle, target="<= 60 MiB", max_value=60),
        Figure(
            "5b. dagd RSS growth while a step writes 1 GiB to stdout", "MiB", growth, target="<= 10 MiB", max_value=10
        ),
        Figure(
            "5c. step log write throughput (1 GiB to stdout, through dagd)",
            "MB/s",
            ours,
            "the same `head -c 1G` redirected to a file",
            base,
            ">= 0.5x",
            higher_is_better=True,
            max_ratio=0.5,
        ),
    ]


# ---- 6. history ----------------------------------------------------------------------------


def fill_history(db: Path, runs: int, steps_per_run: int) -> list[tuple[str, str]]:
    """runs x steps_per_run rows in dagd's own schema (created by dagd), 100 DAGs."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous=OFF")
    t0 = time.time() - runs * 60
    ids = []
    with conn:
        for chunk in range(0, runs, 10_000):
            run_rows, step_rows, last = [], [], {}
            for i in range(chunk, min(runs, chunk + 10_000)):
                dag = f"hist{i % 100:03d}"
                rid = f"r{i:07d}"
                start = t0 + i * 60
                status = "succeeded" if i % 10 else "failed"
                run_rows.append(
                    (rid, dag, f"/x/{dag}.yaml", status, 4 if i % 10 else 2, "schedule", "{}", start, start + 5)
                )
                last[dag] = rid
                ids.append((dag, rid))
                for k in range(steps_per_run):
                    step_rows.append((rid, f"step{k}", status, 4, 1, 0, start + k * 0.5, start + k * 0.5 + 0.4, 0.4))
            conn.executemany(
                "INSERT INTO dag_runs (id, dag, file, status, status_code, trigger, params, started_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                run_rows,
            )
            conn.executemany(
                "INSERT INTO dag_step_results (run_id, step, status, status_code, attempt, exit_code, started_at,"
                " finished_at, duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                step_rows,
            )
            conn.executemany("INSERT OR REPLACE INTO dag_last_run (dag, run_id) VALUES (?, ?)", list(last.items()))
    conn.close()
    return ids


def p99(samples: list[float]) -> float:
    s = sorted(samples)
    return s[max(0, int(len(s) * 0.99) - 1)]


def bench_history(work: Path, reps: int) -> list[Figure]:
    from dagctl.client import Client

    root = work / "hist"
    steps = "steps:\n" + "".join(f"  - id: step{k}\n    run: 'true'\n" for k in range(10))
    write_dags(root, 100, "hist", lambda i: steps, width=3)
    with daemon(root) as d:  # creates the schema
        pass
    ids = fill_history(root / "state" / "dagd.db", 100_000, 10)
    figures = []
    with daemon(root) as d:
        wait_loaded(d, 100)
        client = Client(str(root / "dagd.sock"))
        http = httpx.Client(base_url=d.base)  # one keep-alive connection, as a script or the UI uses
        rng = random.Random(7)
        calls: dict[str, Callable[[], object]] = {
            "RPC dag.list (100 DAGs)": lambda: client.call("dag.list"),
            "RPC run.status (a random run)": lambda: client.call(
                "run.status", name=(x := rng.choice(ids))[0], run_id=x[1]
            ),
            "RPC run.history (a DAG, 20 runs)": lambda: client.call("run.history", name=rng.choice(ids)[0], limit=20),
            "HTTP GET /dags (100 DAGs)": lambda: http.get("/api/v1/dags?perPage=100").raise_for_status(),
            "HTTP GET /dag-runs/{name}/{id}": lambda: http.get(
                f"/api/v1/dag-runs/{(x := rng.choice(ids))[0]}/{x[1]}"
            ).raise_for_status(),
            "HTTP GET /dag-runs?name= (20 runs)": lambda: http.get(
                f"/api/v1/dag-runs?name={rng.choice(ids)[0]}&limit=20"
            ).raise_for_status(),
        }
        for label, call in calls.items():
            per_rep = []
            for _ in range(reps):
                times = []
                for _ in range(200):
                    t = time.perf_counter()
                    call()
                    times.append((time.perf_counter() - t) * 1000)
                per_rep.append(p99(times))
            figures.append(
                Figure(
                    f"6. {label}, p99 of 200 calls, 100k runs / 1M step rows",
                    "ms",
                    per_rep,
                    target="<= 20 ms",
                    max_value=20,
                )
            )
        client.close()
        http.close()
    return figures


# ---- 7. HTTP throughput --------------------------------------------------------------------


def wrk(url: str, seconds: int = 5) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", url], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def bench_http(work: Path, reps: int) -> list[Figure]:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is missing (make bench installs Debian's wrk)")
    root = work / "http"
    write_dags(root, 1000, "job", daily_two_steps)
    with daemon(root) as d:
        wait_loaded(d, 1000)
        run = run_sync(d, "job0000")
        health, dags, status = [], [], []
        for _ in range(reps):
            health.append(wrk(d.base + "/api/v1/health"))
            dags.append(wrk(d.base + "/api/v1/dags?perPage=1000"))
            status.append(wrk(f"{d.base}/api/v1/dag-runs/job0000/{run['dagRunId']}"))
    base = "GET /api/v1/health on the same server (its cheapest route)"
    return [
        Figure(
            "7a. GET /api/v1/dags?perPage=1000 with 1000 DAGs (wrk -t2 -c16, 5 s)",
            "req/s",
            dags,
            base,
            health,
            higher_is_better=True,
        ),
        Figure(
            "7b. GET /api/v1/dag-runs/{name}/{id} (wrk -t2 -c16, 5 s)",
            "req/s",
            status,
            base,
            health,
            higher_is_better=True,
        ),
    ]


def health_latencies(base: str, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=30) as c:
        for _ in range(n):
            began = time.perf_counter()
            c.get(base + "/api/v1/health")
            out.append((time.perf_counter() - began) * 1000)
    return out


def bench_loop(work: Path, reps: int) -> list[Figure]:
    """The event loop never waits on work: /health latency while four 4 MB validations and reads
    of a 1 GiB step log run, against /health on the same idle daemon. The load comes from curl
    processes, so the measuring client shares no interpreter lock with it."""
    root = work / "loop"
    (root / "dags").mkdir(parents=True, exist_ok=True)
    (root / "dags" / "big.yaml").write_text("steps:\n  - run: yes 0123456789abcdef | head -c 1073741824\n")
    spec = "steps:\n" + "".join(f"  - id: s{i}\n    run: echo {'x' * 60} {i}\n" for i in range(48_000))
    body = root / "validate.json"
    body.write_text(json.dumps({"spec": spec}))
    assert body.stat().st_size > 4_000_000
    idle, busy = [], []
    with daemon(root) as d:
        wait_loaded(d, 1)
        run = run_sync(d, "big")
        log_url = f"{d.base}/api/v1/dag-runs/big/{run['dagRunId']}/log"
        validate = f"curl -s -o /dev/null -H 'content-type: application/json' --data-binary @{body} {d.base}/api/v1/dags/validate"
        idle = [p99(health_latencies(d.base, 200)) for _ in range(reps)]
        for _ in range(reps):
            load = [
                subprocess.Popen(["sh", "-c", f"while :; do {validate}; done"], start_new_session=True)
                for _ in range(4)
            ]
            load.append(
                subprocess.Popen(
                    ["sh", "-c", f"while :; do curl -s -o /dev/null {log_url}; done"], start_new_session=True
                )
            )
            try:
                time.sleep(1.0)  # let the load build up before measuring
                busy.append(p99(health_latencies(d.base, 200)))
            finally:
                for p in load:
                    os.killpg(p.pid, signal.SIGKILL)  # the loop and its curl
                    p.wait()
    return [
        Figure(
            "8. GET /api/v1/health p99 while 4 x 4 MB validations and a 1 GiB log read run",
            "ms",
            busy,
            "the same p99 with dagd idle",
            idle,
            target="p99 <= 50 ms",
            max_value=50.0,
        )
    ]


# ---- 9. several nodes on one PostgreSQL ------------------------------------------------------


def bench_scaleout(work: Path, reps: int) -> list[Figure]:
    """Scheduled fires through 1, 2 and 3 dagd nodes on one PostgreSQL (tests/chaos.py: a shared
    fast schedule clock, more fires than the nodes can run, so the figure is their capacity); then
    10 000 fires across 3 nodes with nodes killed (SIGKILL) and frozen (SIGSTOP) at random."""
    from tests import chaos, postgres

    if postgres.bindir() is None:
        raise RuntimeError("PostgreSQL's server is not installed (make test installs it)")
    figures: list[Figure] = []
    command = f"echo sched_x 1 >> {work}/spawned.txt"
    spawns = [400 / spawn_loop(400, command) for _ in range(reps)]
    servers = postgres.serve()
    try:
        server = next(servers)
        rates: dict[int, list[float]] = {}
        for n in (1, 2, 3):
            rates[n] = []
            for rep in range(reps):
                o = chaos.run(work / f"scale{n}-{rep}", server, nodes=n, dags=20, minutes=60, scale=600.0)
                if o.problems():
                    raise RuntimeError(f"{n} nodes: {o.problems()}")
                rates[n].append(o.fires_per_sec)
        figures.append(
            Figure(
                "9a. scheduled fires run to their result, 1 node on PostgreSQL (1200 fires due within 6 s)",
                "fires/s",
                rates[1],
                "the same step command spawned bare in a loop",
                spawns,
                higher_is_better=True,
            )
        )
        for n in (2, 3):
            figures.append(
                Figure(
                    f"9{'bc'[n - 2]}. the same through {n} nodes on one PostgreSQL",
                    "fires/s",
                    rates[n],
                    "1 node",
                    rates[1],
                    higher_is_better=True,
                    note="all nodes share this machine's cores and its PostgreSQL",
                )
            )
        figures += _shared_logs(work, server, reps)
        names = ["n1", "n2", "n3"]
        plan = chaos.random_plan(names, 120.0, every=10.0, seed=16)
        o = chaos.run(
            work / "chaos",
            server,
            nodes=3,
            dags=56,
            minutes=180,
            scale=90.0,
            plan=plan,
            capacity=32,
            step_sec=0.5,
            timeout=1800,
        )
        kills = sum(1 for f in o.faults if f.kind == "kill")
        stops = len(o.faults) - kills
        what = f"{o.expected} fires of 56 DAGs through 3 nodes, {kills} x kill -9 and {stops} x SIGSTOP (26-34 s) at random"
        problems = o.problems()
        figures += [
            Figure(
                f"9d. {what}: slots missed or fired twice, results recorded twice",
                "slots",
                [float(len(o.missed) + len(o.extra) + len(o.not_one_success))],
                target="0",
                max_value=0,
                note="; ".join(problems) or f"{o.re_executed} steps ran again after their node lost them",
            ),
            Figure(
                f"9e. {what}: a faulted node's run re-queued after the fault, slowest of {len(o.recovery)}",
                "s",
                [max(o.recovery) if o.recovery else 0.0],
                target="<= 30 s",
                max_value=30,
                note=f"{len(o.unrecovered)} never re-queued",
            ),
            Figure(
                f"9f. {what}: fires run to their result",
                "fires/s",
                [o.fires_per_sec],
                higher_is_better=True,
            ),
        ]
    finally:
        servers.close()
    return figures


def _shared_logs(work: Path, server: object, reps: int) -> list[Figure]:
    """What sharing a finished run's step log through PostgreSQL costs (dagd.service._share_logs:
    its last 4 MiB masked, zlib-compressed, one INSERT), and reading it on another node, against
    copying and reading the same file on the local disk."""
    import zlib

    from dagd.masking import masked_slice
    from dagd.store import logfiles
    from dagd.store.db import Store
    from tests import postgres

    assert isinstance(server, postgres.Server)
    path = work / "step.log"
    with open(path, "w") as fh:
        for i in range(60_000):  # ≈ 4 MiB of a typical step log
            fh.write(f"2026-11-30T10:{i // 1000 % 60:02d}:{i % 60:02d}Z INFO processed item {i} of batch {i // 500}\n")
    store = Store(server.fresh("bench_logs"))
    put, get, copy, read = [], [], [], []
    try:
        for rep in range(max(reps, 5)):
            store.enqueue(f"r{rep}", "logs", "/logs.yaml", [], "manual", None)  # (a run to own the logs)
            t = time.perf_counter()
            raw = logfiles.read_tail(str(path), logfiles.TAIL)
            masked, _ = masked_slice(raw, ["s3cr3t"], final=True)
            store.put_logs(f"r{rep}", [(str(path), zlib.compress(masked, 6), path.stat().st_size)])
            put.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            stored = store.stored_log(f"r{rep}", str(path))
            assert stored is not None and len(zlib.decompress(stored[0])) == len(masked)
            get.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            shutil.copyfile(path, work / "step.copy")
            copy.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            assert len(logfiles.read_tail(str(work / "step.copy"), logfiles.TAIL)) == len(raw)
            read.append((time.perf_counter() - t) * 1000)
    finally:
        store.close()
    size = path.stat().st_size / 2**20
    return [
        Figure(
            f"9g. a finished run's {size:.1f} MiB step log shared through PostgreSQL (masked, zlib, INSERT)",
            "ms",
            put,
            "copying the file on the local disk",
            copy,
        ),
        Figure(
            "9h. that log read on another node (SELECT, inflate)",
            "ms",
            get,
            "reading the local file",
            read,
        ),
    ]


def bench_restarts(work: Path, reps: int) -> list[Figure]:
    """Runs that outlive dagd (issue 18): what the step wrapper and the attempt record cost per
    step, and 1000 runs through a restart of dagd.service every 30 s on a booted machine
    (tests/soak.py)."""
    from tests import soak

    n = 1000
    steps = "\n".join(f"  - id: s{i}\n    run: 'true'" for i in range(n))
    took: dict[str, list[float]] = {}
    for mode in ("fail", "reattach"):
        os.environ["DAGD_ON_RESTART"] = mode
        try:
            with daemon(work / f"restarts-{mode}") as d:
                (d.root / "dags" / "chain.yaml").write_text(f"type: chain\nhist_retention_days: 1\nsteps:\n{steps}\n")
                wait_loaded(d, 1)
                took[mode] = []
                for _ in range(reps):
                    t = time.perf_counter()
                    run_sync(d, "chain")
                    took[mode].append(time.perf_counter() - t)
        finally:
            del os.environ["DAGD_ON_RESTART"]
    per = (statistics.median(took["reattach"]) - statistics.median(took["fail"])) / n * 1000
    from tests.packaging.conftest import build
    from tests.packaging.test_systemd_boot import boot

    deb = build("deb", work / "deb")
    (work / "machine").mkdir()
    with boot(deb, work / "machine") as m:  # dagd.service of the .deb on a booted Debian 12
        o = soak.run(soak.MachineHost(m), 1000, 30.0, max_concurrent=8, timeout=3600)
    bad = o.lost + len(o.duplicated) + len(o.missing) + len(o.orphaned)
    return [
        Figure(
            "10a. 1000-step chain of `true`, runs kept across restarts (on_restart: reattach: a sh wrapper and a record per step)",
            "s",
            took["reattach"],
            "the same chain with on_restart: fail",
            took["fail"],
            note=f"{per:+.2f} ms a step",
        ),
        Figure(
            f"10b. 1000 runs of 3 DAGs through {o.restarts} x `systemctl restart dagd` and {o.kills} x kill -9"
            " (every 30 s; the .deb on a booted Debian 12): runs lost + steps run twice or never + processes orphaned",
            "runs",
            [float(bad)],
            target="0",
            max_value=0,
            note=f"{o.seconds:.0f} s; {dict(o.statuses)}; re-attached {o.reattached} times"
            + (f"; twice: {o.duplicated[:3]}; never: {o.missing[:3]}; orphans: {o.orphaned[:3]}" if bad else ""),
        ),
    ]


BENCHES: dict[str, Callable[[Path, int], list[Figure]]] = {
    "steps": bench_steps,
    "dagu": bench_dagu,
    "fanout": bench_fanout,
    "scheduler": bench_scheduler,
    "cli": bench_cli,
    "memory": bench_memory,
    "history": bench_history,
    "http": bench_http,
    "loop": bench_loop,
    "scaleout": bench_scaleout,
    "restarts": bench_restarts,
}


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{platform.node()}: {os.cpu_count()} x {cpu}, {mem} GiB, Linux {platform.release()}, Python {platform.python_version()}"


BEGIN, END = "<!-- figures:begin (bench/run.py writes this part) -->", "<!-- figures:end -->"


def results_block(out: dict[str, object], figures: list[Figure]) -> str:
    rows = [
        f"Measured {out['date']} on {out['machine']}; `make bench` took {out['seconds']} s.",
        "",
        "| benchmark | min | median | max | unit | baseline (median) | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        base = f"{fmt(statistics.median(f.baseline))} ({f.baseline_name})" if f.baseline else "—"
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "—"
        met = {True: "yes", False: "**no**", None: "—"}[f.met()]
        name = f.name + (f" — {f.note}" if f.note else "")
        rows.append(
            f"| {name} | {fmt(min(f.samples))} | {fmt(f.median)} | {fmt(max(f.samples))} | {f.unit} | {base} | {ratio} | {f.target or '—'} | {met} |"
        )
    return "\n".join(rows)


def write_results(out: dict[str, object], figures: list[Figure]) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else f"# dagd benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{results_block(out, figures)}\n{END}{tail}")


def main() -> None:
    names = sys.argv[1:] or list(BENCHES)
    reps = int(os.environ.get("BENCH_REPS", "3"))
    figures: list[Figure] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dagd-bench-") as tmp:
        for name in names:
            t = time.monotonic()
            got = BENCHES[name](Path(tmp), reps)
            for f in got:
                print(f.line() + (f"  [{f.note}]" if f.note else ""), flush=True)
            print(f"   ({name}: {time.monotonic() - t:.0f} s)", flush=True)
            figures += got
    out = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "seconds": round(time.monotonic() - started),
        "figures": [f.__dict__ | {"median": f.median, "ratio": f.ratio} for f in figures],
    }
    (ROOT / "bench" / "last.json").write_text(json.dumps(out, indent=2))
    if not sys.argv[1:]:  # a full run rewrites the figures in RESULTS.md
        write_results(out, figures)
    print(
        f"all done in {out['seconds']} s; figures in bench/last.json"
        + ("" if sys.argv[1:] else " and bench/RESULTS.md")
    )


if __name__ == "__main__":
    main()
