"""Many runs through many restarts of dagd (on_restart: reattach): the harness of the restart soak
in tests/integration/test_reattach.py (a short one, a dagd process here) and of `make bench`
(1000 runs, a restart every 30 s, dagd.service of the .deb on a booted Debian: `MachineHost`).

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
import shlex
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.integration.test_daemon import Daemon, alive_with, start_daemon

STEPS = ("a", "b", "c")


def _dag(root: Path, kind: str) -> str:
    marks, tries = root / "marks", root / "tries"  # (paths on the host that runs dagd)
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


def _requests(runs: int) -> list[bytes]:
    """run.enqueue requests for every run, 100 to a connection (JSON-RPC lines)."""
    kinds = ("short", "long", "retried")
    out = []
    for start in range(0, runs, 100):
        lines = [
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "run.enqueue",
                    "params": {"name": kinds[i % 3], "params": [], "run_id": f"soak{i:05d}"},
                }
            )
            for i in range(start, min(runs, start + 100))
        ]
        out.append(("\n".join(lines) + "\n").encode())
    return out


class Host(Protocol):
    """Where dagd runs for the soak: a process here, or dagd.service on a booted machine."""

    root: Path  # the soak's folder on that host
    dags: Path  # dagd's DAGs folder there

    def start(self, max_concurrent: int) -> None: ...
    def enqueue(self, payload: bytes) -> list[dict[str, Any]]: ...
    def history(self, name: str, limit: int) -> list[dict[str, Any]]: ...
    def restart(self) -> None: ...  # a clean restart: runs left to the next dagd
    def kill(self) -> None: ...  # SIGKILL, then dagd again
    def read(self, path: Path) -> str: ...
    def write(self, path: Path, text: str) -> None: ...
    def orphans(self, marker: str) -> list[int]: ...
    def log(self) -> str: ...
    def stop(self) -> None: ...


class LocalHost:
    """dagd as a process of this machine (tests/integration/test_daemon.start_daemon)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dags = root / "dags"
        self.d: Daemon | None = None
        self.args: tuple[str, ...] = ()

    def _start(self) -> None:
        self.d = start_daemon(self.root, {"DAGD_ON_RESTART": "reattach", "DAGD_LOOP_WATCH_MS": None}, self.args)

    def start(self, max_concurrent: int) -> None:
        self.args = ("--no-http", "--max-concurrent-runs", str(max_concurrent))
        self._start()

    def enqueue(self, payload: bytes) -> list[dict[str, Any]]:
        assert self.d is not None
        return self.d.rpc(payload)

    def history(self, name: str, limit: int) -> list[dict[str, Any]]:
        assert self.d is not None
        rows: list[dict[str, Any]] = json.loads(
            self.d.ctl("history", name, "--json", "--limit", str(limit)).stdout or "[]"
        )
        return rows

    def restart(self) -> None:
        assert self.d is not None
        r = self.d.ctl("prepare-stop", "--keep-runs")  # as systemd's ExecStop= announces a restart
        assert r.code == 0, r.stderr
        self.d.proc.send_signal(signal.SIGTERM)
        assert self.d.proc.wait(timeout=60) == 0
        self.d.notify.close()
        self._start()

    def kill(self) -> None:
        assert self.d is not None
        self.d.proc.kill()
        self.d.proc.wait(timeout=30)
        self.d.notify.close()
        self._start()

    def read(self, path: Path) -> str:
        return path.read_text() if path.exists() else ""

    def write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def orphans(self, marker: str) -> list[int]:
        return alive_with(marker)

    def log(self) -> str:
        return (self.root / "dagd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.d is None:
            return
        if self.d.proc.poll() is None:
            self.d.proc.send_signal(signal.SIGTERM)
            self.d.proc.wait(timeout=60)
        self.d.notify.close()


class MachineHost:
    """dagd.service of the installed .deb on a booted machine (tests/packaging/test_systemd_boot:
    its `Machine`): restarts are `systemctl restart dagd`, kills `kill -9` of its main pid."""

    def __init__(self, machine: Any, root: Path = Path("/tmp/soak")) -> None:
        self.m = machine
        self.root = root
        self.dags = Path("/etc/dagd/dags")

    def start(self, max_concurrent: int) -> None:
        self.m.sh(f"mkdir -p {self.root}/tries && chmod -R 0777 {self.root}")
        self.m.sh(f"echo 'max_concurrent_runs: {max_concurrent}' >> /etc/dagd/config.yaml && systemctl restart dagd")
        self._wait_up()

    def _wait_up(self, other_than: str = "") -> None:
        deadline = time.monotonic() + 120
        while True:
            pid = self.m.sh("systemctl show -P MainPID dagd", check=False).stdout.strip()
            if pid not in ("", "0", other_than) and self.m.sh("dagctl daemon", check=False).returncode == 0:
                return
            assert time.monotonic() < deadline, self.m.sh(
                "journalctl -u dagd --no-pager | tail -30", check=False
            ).stdout
            time.sleep(0.2)

    def enqueue(self, payload: bytes) -> list[dict[str, Any]]:
        script = (
            "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect('/run/dagd/dagd.sock');"
            " s.sendall(sys.stdin.buffer.read()); s.shutdown(socket.SHUT_WR); d = b''\n"
            "while (c := s.recv(65536)): d += c\nsys.stdout.write(d.decode())"
        )
        out = self.m.sh(f"python3 -c {shlex.quote(script)} <<'EOF'\n{payload.decode()}EOF").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def history(self, name: str, limit: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(
            self.m.sh(f"dagctl history {name} --json --limit {limit}", check=False).stdout or "[]"
        )
        return rows

    def restart(self) -> None:
        pid = self.m.sh("systemctl show -P MainPID dagd").stdout.strip()
        self.m.sh("systemctl restart dagd")
        self._wait_up(pid)

    def kill(self) -> None:
        pid = self.m.sh("systemctl show -P MainPID dagd").stdout.strip()
        self.m.sh(f"kill -9 {pid}")
        self._wait_up(pid)

    def read(self, path: Path) -> str:
        return str(self.m.sh(f"cat {path} 2>/dev/null", check=False).stdout)

    def write(self, path: Path, text: str) -> None:
        self.m.sh(f"mkdir -p {path.parent} && cat > {path} <<'EOF'\n{text}EOF")

    def orphans(self, marker: str) -> list[int]:
        out = self.m.sh(f"pgrep -f {shlex.quote(marker)} || true", check=False).stdout
        alive = []
        for pid in out.split():
            state = self.m.sh(f"ps -o stat= -p {pid}", check=False).stdout.strip()
            if state and not state.startswith("Z"):
                alive.append(int(pid))
        return alive

    def log(self) -> str:
        return str(self.m.sh("journalctl -u dagd --no-pager", check=False).stdout)

    def stop(self) -> None:
        return None


def run(host: Host, runs: int, restart_every: float, *, max_concurrent: int = 32, timeout: float = 1800) -> Soak:
    """Queue `runs` runs on `host` and restart dagd every `restart_every` seconds (a clean restart
    and a SIGKILL by turns) until all have ended; what became of them."""
    for kind in ("short", "long", "retried"):
        host.write(host.dags / f"{kind}.yaml", _dag(host.root, kind))
    host.write(host.root / "tries" / ".keep", "")
    result = Soak(runs)
    started = time.monotonic()
    host.start(max_concurrent)
    try:
        ids: list[str] = []
        for payload in _requests(runs):
            replies = host.enqueue(payload)
            assert replies and all("result" in r for r in replies), replies[:3]
            ids += [r["result"]["run_id"] for r in replies]
        clean = True
        while True:
            deadline = time.monotonic() + restart_every
            statuses: dict[str, str] = {}
            while time.monotonic() < deadline:
                statuses = {
                    r["id"]: r["status"] for k in ("short", "long", "retried") for r in host.history(k, runs + 10)
                }
                if all(statuses.get(i, "queued") not in ("running", "queued") for i in ids):
                    break
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
            else:
                assert time.monotonic() - started < timeout, "the soak did not finish"
                if clean:
                    host.restart()
                    result.restarts += 1
                else:
                    host.kill()
                    result.kills += 1
                clean = not clean
                continue
            break
        result.seconds = time.monotonic() - started
        result.statuses = Counter(statuses[i] for i in ids)
        lines = Counter(host.read(host.root / "marks").splitlines())
        for rid in ids:
            for step in STEPS:
                n = lines.get(f"{rid} {step}", 0)
                if n > 1:
                    result.duplicated.append(f"{rid} {step} ×{n}")
                elif n == 0:
                    result.missing.append(f"{rid} {step}")
        result.orphaned = host.orphans("soak-marker")
        result.reattached = host.log().count("re-attached after a restart")
        return result
    finally:
        host.stop()
