"""The real dagd as a subprocess: notify socket, control socket, scheduler, queue, recovery."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import Result, run_dagctl


@dataclass
class Daemon:
    root: Path
    proc: subprocess.Popen[bytes]
    notify: socket.socket
    messages: list[str] = field(default_factory=list)
    socket_path: Path | None = None  # where the control socket is, when not root/dagd.sock

    @property
    def sock(self) -> Path:
        return self.socket_path or self.root / "dagd.sock"

    @property
    def env(self) -> dict[str, str]:
        return {
            "DAGD_SOCKET": str(self.sock),
            "DAGD_STATE_DIR": str(self.root / "state"),
            "DAGD_DAGS_DIR": str(self.root / "dags"),
        }

    def close(self) -> None:
        """Stop dagd (SIGTERM) and wait for it; close the notify socket."""
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.notify.close()

    def ctl(self, *args: str) -> Result:
        return run_dagctl(list(args), self.root, self.env)

    def wait_message(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in m for m in self.messages):
            assert time.monotonic() < deadline, (text, self.messages)
            self.notify.settimeout(max(0.01, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.notify.recv(4096).decode())

    def rpc(self, payload: bytes) -> list[dict]:  # type: ignore[type-arg]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.sock))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # dagd may stop reading early
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
            data = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := s.recv(65536):
                    data += chunk
        return [json.loads(line) for line in data.splitlines() if line.strip()]


def wait_until(check: Callable[[], object], timeout: float = 20, poll: float = 0.05) -> object:
    """Poll an observable state until it holds (a run's status, a file): a wait on the event
    itself, never on a guessed duration."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "the state never came"
        time.sleep(poll)
    return value


def run_ended(d: Daemon, name: str, run_id: str) -> dict | None:  # type: ignore[type-arg]
    """The run's document once it is in a final state (for wait_until), else None."""
    r = d.ctl("status", name, run_id, "--json")
    if r.code != 0:
        return None
    doc = json.loads(r.stdout)
    return doc if doc["status"] not in ("running", "queued", "not_started") else None


def http_answers(base: str) -> bool:
    """Whether dagd's HTTP server answers /api/v1/health (for wait_until)."""
    try:
        httpx.get(base + "/api/v1/health", timeout=2)
        return True
    except httpx.HTTPError:
        return False


def alive_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line holds `marker`."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmd and state not in (b"Z", b"X"):
            pids.append(int(entry.name))
    return pids


def gate_step(gate: Path) -> str:
    """A step command that runs until the test creates `gate`."""
    return f"while [ ! -e {gate} ]; do sleep 0.02; done"


def start_daemon(
    root: Path,
    extra_env: dict[str, str | None] | None = None,
    args: tuple[str, ...] = (),
    *,
    user: bool = True,
    ready: bool = True,
) -> Daemon:
    """dagd as a subprocess in `root` (dags/, state/, dagd.sock); waits for READY=1.

    extra_env overrides the environment; a None value removes the variable.
    """
    (root / "dags").mkdir(parents=True, exist_ok=True)
    notify_path = root / f"notify-{time.monotonic_ns()}.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    env: dict[str, str | None] = {
        "PATH": os.environ["PATH"],
        "HOME": str(root / ".home"),
        "DAGD_SOCKET": str(root / "dagd.sock"),
        "DAGD_STATE_DIR": str(root / "state"),
        "DAGD_DAGS_DIR": str(root / "dags"),
        "NOTIFY_SOCKET": str(notify_path),
        "TZ": "UTC",
        "DAGD_LOOP_WATCH_MS": "100",  # tests/conftest.py fails a test whose dagd held its loop longer
        **(extra_env or {}),
    }
    with open(root / "dagd.log", "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagd.daemon",
                *(["--user"] if user else []),
                "--poll",
                "0.3",
                *(args or ("--no-http",)),
            ],
            env={k: v for k, v in env.items() if v is not None},
            cwd=root,
            stderr=log,
        )
    d = Daemon(root, proc, notify)
    if env.get("DAGD_SOCKET"):
        d.socket_path = Path(str(env["DAGD_SOCKET"]))
    if ready:
        d.wait_message("READY=1")
    return d


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.yaml").write_text(
        "steps:\n  - id: a\n    run: echo hello\n  - {id: b, depends: a, run: echo world}\n"
    )
    d = start_daemon(tmp_path)
    yield d
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
    d.notify.close()


def test_ready_status_then_stopping_and_exit_0(daemon: Daemon) -> None:
    assert any("STATUS=1 DAGs, 0 running" in m for m in daemon.messages)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=30) == 0
    daemon.wait_message("STOPPING=1")
    assert not (daemon.root / "dagd.sock").exists()


def test_a_notify_socket_nobody_reads_never_holds_dagd(daemon: Daemon) -> None:
    """systemd busy, or a notify reader gone: its queue fills (net.unix.max_dgram_qlen) and a
    blocking send would freeze dagd's whole loop. Status lines are dropped instead; dagd serves,
    runs and stops on time."""
    addr = str(daemon.notify.getsockname())
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:  # until the kernel says the queue is full
                filler.sendto(b"X=1", addr)
    for _ in range(3):  # status changes, each a STATUS= line that cannot be queued
        r = daemon.ctl("run", "hello")
        assert r.code == 0, r.stderr
    assert daemon.ctl("list").code == 0
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0


def test_watchdog_pings_at_half_the_interval(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, {"WATCHDOG_USEC": "400000"})
    try:
        count = 0
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            d.notify.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                count += d.notify.recv(4096).decode().count("WATCHDOG=1")
        assert count >= 6  # ~every 0.2 s
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=30)


def test_run_through_the_daemon_and_look_at_it(daemon: Daemon) -> None:
    r = daemon.ctl("run", "hello")
    assert r.code == 0, r.stderr
    assert "run " in r.stderr and "succeeded" in r.stderr
    doc = json.loads(daemon.ctl("status", "hello", "--json").stdout)
    assert doc["status"] == "succeeded" and [s["status"] for s in doc["steps"]] == ["succeeded", "succeeded"]
    assert doc["runner_pid"] == daemon.proc.pid
    info = json.loads(daemon.ctl("daemon", "--json").stdout)
    assert info["pid"] == daemon.proc.pid and info["dags"] == 1


def test_list_reload_and_a_file_that_stops_validating(daemon: Daemon) -> None:
    (daemon.root / "dags" / "nightly.yaml").write_text('schedule: "30 2 * * *"\nsteps:\n  - run: echo nightly run\n')
    r = daemon.ctl("reload")
    assert r.code == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(daemon.ctl("list", "--json").stdout)}
    assert rows["nightly"]["schedule"] == ["30 2 * * *"] and rows["nightly"]["next_fire"].endswith("02:30:00+00:00")
    (daemon.root / "dags" / "nightly.yaml").write_text("steps: [\n")
    r = daemon.ctl("reload")
    assert r.code == 1 and "nightly.yaml" in r.stderr
    rows = {row["name"]: row for row in json.loads(daemon.ctl("list", "--json").stdout)}
    assert rows["nightly"]["schedule"] == ["30 2 * * *"]  # the last good version stays
    assert rows["nightly"]["error"] and daemon.proc.poll() is None


def test_bad_requests_get_errors_and_the_daemon_stays_up(daemon: Daemon) -> None:
    replies = daemon.rpc(
        b'{"jsonrpc": "2.0", "id": 1, "method": "nope"}\nnot json\n{"jsonrpc": "2.0", "id": 2, "method": "run.status", "params": []}\n{"jsonrpc": "2.0", "id": 3, "method": "run.start", "params": {}}\n'
    )
    assert [r["error"]["code"] for r in replies] == [-32601, -32700, -32602, -32602]
    # clients that hang up mid-request, and many at once
    for _ in range(50):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(daemon.root / "dagd.sock"))
            s.sendall(b'{"jsonrpc": "2.0", "id": 1, "meth')
    # 1000 held at once by one uid: the first PER_UID are served, the rest refused cleanly
    socks = []
    for _ in range(1000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(daemon.root / "dagd.sock"))
        s.sendall(b'{"jsonrpc": "2.0", "id": 7, "method": "daemon.status"}\n')
        socks.append(s)
    answers = []
    for s in socks:
        s.settimeout(10)
        answers.append(json.loads(s.makefile().readline()))
    served = [a for a in answers if "result" in a]
    assert len(served) == 128 and all(a["result"]["pid"] == daemon.proc.pid for a in served)
    assert {a["error"]["code"] for a in answers if "error" in a} == {-32005}
    for s in socks:
        s.close()
    assert daemon.rpc(b'{"jsonrpc": "2.0", "id": 8, "method": "daemon.status"}\n')[0]["result"]["pid"]
    assert daemon.proc.poll() is None


def test_queue_honours_max_active_runs_and_dequeue(daemon: Daemon) -> None:
    gate = daemon.root / "gate"
    (daemon.root / "dags" / "slow.yaml").write_text(f"max_active_runs: 1\nsteps:\n  - run: {gate_step(gate)}\n")
    daemon.ctl("reload")
    first = daemon.ctl("enqueue", "slow").stdout.strip()
    second = daemon.ctl("enqueue", "slow").stdout.strip()
    third = daemon.ctl("enqueue", "slow").stdout.strip()

    def statuses() -> dict[str, str]:
        return {r["id"]: r["status"] for r in json.loads(daemon.ctl("history", "slow", "--json").stdout)}

    wait_until(lambda: statuses().get(first) == "running")
    now = statuses()
    assert now[second] == "queued" and now[third] == "queued"  # max_active_runs: 1 holds them
    assert daemon.ctl("dequeue", "slow", third).code == 0
    gate.touch()
    deadline = time.monotonic() + 20
    while True:
        statuses = {r["id"]: r["status"] for r in json.loads(daemon.ctl("history", "slow", "--json").stdout)}
        if statuses[second] == "succeeded":
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)
    assert statuses[first] == "succeeded" and statuses[third] == "aborted"


def test_stop_through_the_daemon_kills_the_groups(daemon: Daemon) -> None:
    (daemon.root / "dags" / "long.yaml").write_text(
        f"working_dir: {daemon.root}\nsteps:\n  - run: 'sh -c \"echo $$ > child.pid; sleep 60\" & sleep 60'\n"
    )
    daemon.ctl("reload")
    daemon.ctl("enqueue", "long")
    deadline = time.monotonic() + 10
    while not (daemon.root / "child.pid").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    r = daemon.ctl("stop", "long")
    assert r.code == 0, r.stderr
    assert daemon.proc.poll() is None  # stopping a run never stops the daemon
    doc = json.loads(daemon.ctl("status", "long", "--json").stdout)
    assert doc["status"] == "aborted"
    assert not Path(f"/proc/{int((daemon.root / 'child.pid').read_text())}").exists() or _zombie(
        int((daemon.root / "child.pid").read_text())
    )


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_kill_9_of_dagd_leaves_no_orphans_and_no_run_stuck_running(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "long.yaml").write_text(
        f"working_dir: {tmp_path}\nsteps:\n  - run: 'sh -c \"echo $$ > child.pid; sleep 60\" & sleep 60'\n"
    )
    d = start_daemon(tmp_path)
    d.ctl("enqueue", "long")
    deadline = time.monotonic() + 10
    while not (tmp_path / "child.pid").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    d.proc.kill()
    d.proc.wait()
    d2 = start_daemon(tmp_path)
    try:
        doc = json.loads(d2.ctl("status", "long", "--json").stdout)
        assert doc["status"] == "failed" and "daemon restart" in doc["error"]
        assert _zombie(int((tmp_path / "child.pid").read_text()))
    finally:
        d2.proc.terminate()
        d2.proc.wait(timeout=30)


def test_suspend_and_resume(daemon: Daemon) -> None:
    assert daemon.ctl("suspend", "hello").code == 0
    rows = {r["name"]: r for r in json.loads(daemon.ctl("list", "--json").stdout)}
    assert rows["hello"]["suspended"] is True
    assert daemon.ctl("resume", "hello").code == 0
    rows = {r["name"]: r for r in json.loads(daemon.ctl("list", "--json").stdout)}
    assert rows["hello"]["suspended"] is False


def test_sighup_and_dagctl_reload_announce_reloading_then_ready(daemon: Daemon) -> None:
    (daemon.root / "dags" / "extra.yaml").write_text("steps:\n  - run: echo extra step\n")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_message("RELOADING=1")
    daemon.wait_message("STATUS=2 DAGs, 0 running, 0 queued")
    daemon.messages.clear()
    assert daemon.ctl("reload").code == 0
    daemon.wait_message("RELOADING=1")
    daemon.wait_message("READY=1")


def test_orphaned_daemons_of_steps_are_reaped(daemon: Daemon) -> None:
    (daemon.root / "dags" / "fork.yaml").write_text("steps:\n  - run: '(sleep 0.3 &) ; echo forked'\n")
    daemon.ctl("reload")
    for _ in range(20):
        assert daemon.ctl("run", "fork").code == 0
    time.sleep(1.5)
    zombies = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid_state(p) == (daemon.proc.pid, "Z")]
    assert zombies == []


def _ppid_state(p: Path) -> tuple[int, str]:
    try:
        rest = (p / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return (0, "")
    return int(rest[1]), rest[0]


def test_a_minute_schedule_fires_for_real(daemon: Daemon) -> None:
    (daemon.root / "dags" / "every.yaml").write_text('schedule: "* * * * *"\nsteps:\n  - run: echo tick\n')
    daemon.ctl("reload")
    deadline = time.monotonic() + 75
    while True:
        rows = json.loads(daemon.ctl("history", "every", "--json").stdout or "[]")
        if rows and rows[0]["status"] == "succeeded":
            break
        assert time.monotonic() < deadline, rows
        time.sleep(1)
    assert rows[0]["trigger"] == "scheduler" and rows[0]["id"].startswith("sched_")


def test_retry_through_the_daemon(daemon: Daemon) -> None:
    flag = daemon.root / "fixed"
    (daemon.root / "dags" / "flaky.yaml").write_text(
        f"steps:\n  - {{id: a, run: echo a}}\n  - {{id: b, depends: a, run: 'test -f {flag}'}}\n"
    )
    daemon.ctl("reload")
    assert daemon.ctl("run", "flaky").code == 1
    run_id = json.loads(daemon.ctl("status", "flaky", "--json").stdout)["id"]
    flag.write_text("")
    r = daemon.ctl("retry", "flaky", run_id)
    assert r.code == 0, r.stderr
    doc = json.loads(daemon.ctl("status", "flaky", "--json").stdout)
    assert doc["id"] == run_id and doc["status"] == "succeeded" and doc["trigger"] == "retry"


def _missed(tmp_path: Path, policy: str, minutes: int = 5) -> list[dict]:  # type: ignore[type-arg]
    """Start dagd as if it had been down for `minutes` minutes; the runs it then makes."""
    from dagd.store.db import Store

    (tmp_path / "dags").mkdir(parents=True)
    (tmp_path / "dags" / "tick.yaml").write_text(
        f'schedule: "* * * * *"\ncatchup_window: 10m\noverlap_policy: {policy}\nsteps:\n  - run: sleep 0.3\n'
    )
    (tmp_path / "state").mkdir()
    store = Store(str(tmp_path / "state" / "dagd.db"))
    store.set_watermark("tick", time.time() - minutes * 60 - 1)
    store.close()
    d = start_daemon(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            rows = json.loads(d.ctl("history", "tick", "--json").stdout or "[]")
            if rows and all(r["status"] not in ("queued", "running") for r in rows):
                return rows
            assert time.monotonic() < deadline, rows
            time.sleep(0.3)
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=30)


def test_catch_up_all_replays_every_missed_fire(tmp_path: Path) -> None:
    rows = _missed(tmp_path, "all")
    catchup = [r for r in rows if r["trigger"] == "catchup"]
    assert len(catchup) >= 4 and all(r["status"] == "succeeded" for r in catchup)
    assert len({r["id"] for r in rows}) == len(rows)  # one run per slot


def test_catch_up_skip_runs_one_and_latest_keeps_the_newest(tmp_path: Path) -> None:
    skip = _missed(tmp_path / "skip", "skip")
    assert [r["trigger"] for r in skip if r["status"] == "succeeded"] == ["catchup"]
    latest = _missed(tmp_path / "latest", "latest")
    done = [r for r in latest if r["status"] == "succeeded"]
    assert len(done) == 1 and done[0]["id"] == max(r["id"] for r in latest)


def test_catch_up_is_bounded_by_the_window(tmp_path: Path) -> None:
    rows = _missed(tmp_path, "all", minutes=30)
    assert 8 <= len([r for r in rows if r["trigger"] == "catchup"]) <= 11  # 10m window, not 30


def activated_env(root: Path, names: str) -> dict[str, str]:
    """The environment systemd gives a socket-activated dagd (LISTEN_PID is set by the launcher)."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "DAGD_STATE_DIR": str(root / "state"),
        "DAGD_DAGS_DIR": str(root / "dags"),
        "DAGD_SOCKET": str(root / "unused.sock"),
        "LISTEN_FDS": str(len(names.split(":"))),
        "LISTEN_FDNAMES": names,
    }


def test_journald_priorities_and_socket_activation(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    fd = listener.fileno()
    env = {**activated_env(tmp_path, "control"), "JOURNAL_STREAM": "8:1234"}
    # what systemd does: the socket as fd 3, LISTEN_PID naming the process that gets it
    launcher = (
        f"import os, sys; os.dup2({fd}, 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
        f"os.execv(sys.executable, [sys.executable, '-m', 'dagd.daemon', '--user', '--http-bind', '127.0.0.1:{_free_port()}'])"
    )
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", launcher], env=env, pass_fds=(fd,), stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(str(path))
                    s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "daemon.status"}\n')
                    reply = json.loads(s.makefile().readline())
                break
            except (OSError, ValueError):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert reply["result"]["pid"] == proc.pid
        assert not (tmp_path / "unused.sock").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        listener.close()
    lines = (tmp_path / "log").read_text().splitlines()
    assert lines and all(line.startswith("<") for line in lines)
    assert any(line.startswith("<6>dagd: dagd") and "ready" in line for line in lines)


def test_config_file_sets_the_daemon_up_and_rejects_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "mydags").mkdir()
    (tmp_path / "mydags" / "a.yaml").write_text("steps:\n  - run: sleep 1\n")
    (tmp_path / "mydags" / "b.yaml").write_text("steps:\n  - run: sleep 1\n")
    (tmp_path / "config.yaml").write_text(
        f"dags_dir: {tmp_path / 'mydags'}\nmax_concurrent_runs: 1\nstop_grace_sec: 20\n"
    )
    (tmp_path / "wrong.yaml").write_text("dag_folder: /tmp\n")
    r = subprocess.run(
        [sys.executable, "-m", "dagd.daemon", "--config", str(tmp_path / "wrong.yaml"), "--user", "--no-http"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0 and "dag_folder: unknown setting" in r.stderr
    env_extra: dict[str, str] = {}
    notify_root = tmp_path / "run"
    notify_root.mkdir()
    dd = _start_with_config(notify_root, tmp_path / "config.yaml", env_extra)
    try:
        assert {r["name"] for r in json.loads(dd.ctl("list", "--json").stdout)} == {"a", "b"}
        a = dd.ctl("enqueue", "a").stdout.strip()
        b = dd.ctl("enqueue", "b").stdout.strip()

        def hist_now() -> dict[str, str]:
            return {r["id"]: r["status"] for r in json.loads(dd.ctl("history", "--json").stdout)}

        wait_until(lambda: hist_now().get(a) == "running")
        assert hist_now()[b] == "queued"  # global limit 1
        dd.proc.send_signal(signal.SIGTERM)  # stop_grace_sec: the running run may finish
        assert dd.proc.wait(timeout=30) == 0
        hist = {r["id"]: r["status"] for r in json.loads(dd.ctl("history", "--json").stdout)}
        assert hist[a] == "succeeded"
    finally:
        if dd.proc.poll() is None:
            dd.proc.kill()


def _start_with_config(root: Path, cfg: Path, extra: dict[str, str | None]) -> Daemon:
    return start_daemon(root, {"DAGD_DAGS_DIR": None, **extra}, ("--config", str(cfg), "--no-http"))


def test_run_logs_over_rpc(daemon: Daemon) -> None:
    assert daemon.ctl("run", "hello").code == 0
    replies = daemon.rpc(
        b'{"jsonrpc": "2.0", "id": 1, "method": "run.logs", "params": {"name": "hello", "step": "a"}}\n'
    )
    assert replies[0]["result"]["steps"] == [{"step": "a", "status": "succeeded", "text": "hello\n"}]


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"), reason="needs root and /usr/bin/python3"
)
def test_other_users_are_refused_by_peer_credentials(tmp_path: Path) -> None:
    import tempfile

    public = Path(tempfile.mkdtemp(prefix="dagd-peer-"))
    try:
        public.chmod(0o755)
        d = start_daemon(tmp_path, {"DAGD_SOCKET": str(public / "dagd.sock")})
        try:
            os.chmod(public / "dagd.sock", 0o666)  # let the socket mode through; SO_PEERCRED must still refuse
            code = (
                "import socket; s = socket.socket(socket.AF_UNIX); s.connect({!r}); "
                's.sendall(b\'{{"jsonrpc": "2.0", "id": 1, "method": "daemon.status"}}\\n\'); '
                "print(s.makefile().readline())"
            ).format(str(public / "dagd.sock"))
            r = subprocess.run(
                ["/usr/bin/python3", "-c", code],
                user=65534,
                group=65534,
                capture_output=True,
                text=True,
                timeout=30,
                cwd="/",
            )
            assert r.stdout.strip(), (r.stderr, (tmp_path / "dagd.log").read_text()[-2000:])
            assert json.loads(r.stdout)["error"]["code"] == -32003, r.stderr
        finally:
            d.proc.terminate()
            d.proc.wait(timeout=30)
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_on_restart_requeue_runs_the_interrupted_run_again(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    marker = tmp_path / "attempts"
    (tmp_path / "dags" / "job.yaml").write_text(
        f"steps:\n  - run: 'echo x >> {marker}; test $(wc -l < {marker}) -ge 2 || sleep 60'\n"
    )
    (tmp_path / "config.yaml").write_text("on_restart: requeue\n")
    d = start_daemon(tmp_path)
    run_id = d.ctl("enqueue", "job").stdout.strip()
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    d.proc.kill()
    d.proc.wait()
    again = start_daemon(tmp_path, args=("--config", str(tmp_path / "config.yaml"), "--no-http"))
    proc = again.proc
    try:
        deadline = time.monotonic() + 20
        while True:
            rows = {r["id"]: r for r in json.loads(again.ctl("history", "job", "--json").stdout)}
            if rows.get(run_id + "_requeued", {}).get("status") == "succeeded":
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.2)
        assert rows[run_id]["status"] == "failed" and "daemon restart" in rows[run_id]["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_as_pid_1_of_a_namespace_dagd_leaves_no_zombies_after_1000_runs(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "fork.yaml").write_text("steps:\n  - run: '(sleep 0.2 &) ; true'\n")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DAGD_SOCKET": str(tmp_path / "dagd.sock"),
        "DAGD_STATE_DIR": str(tmp_path / "state"),
        "DAGD_DAGS_DIR": str(tmp_path / "dags"),
    }
    with open(tmp_path / "dagd.log", "ab") as log:
        proc = subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--fork",
                "--mount-proc",
                sys.executable,
                "-m",
                "dagd.daemon",
                "--user",
                "--no-http",
                "--max-concurrent-runs",
                "16",
            ],
            env=env,
            stderr=log,
        )
    try:
        d = Daemon(tmp_path, proc, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        deadline = time.monotonic() + 20
        while not (tmp_path / "dagd.sock").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        batch = b"".join(
            b'{"jsonrpc": "2.0", "id": %d, "method": "run.enqueue", "params": {"name": "fork"}}\n' % i
            for i in range(1000)
        )
        assert all("result" in r for r in d.rpc(batch))
        deadline = time.monotonic() + 240
        while True:
            done = d.rpc(
                b'{"jsonrpc": "2.0", "id": 1, "method": "run.history", "params": {"name": "fork", "limit": 2000, "status": "succeeded"}}\n'
            )
            if len(done[0]["result"]) == 1000:
                break
            assert time.monotonic() < deadline, len(done[0]["result"])
            time.sleep(1)
        time.sleep(2)  # the last double-forked sleepers end and are reaped
        init = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid_state(p)[0] == proc.pid]
        assert len(init) == 1  # unshare's child: dagd as PID 1 of the namespace
        dagd_pid = int(init[0].name)
        zombies = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid_state(p) == (dagd_pid, "Z")]
        assert zombies == []
    finally:
        # unshare does not forward signals: stop dagd (PID 1 inside) directly, then unshare ends
        for p in Path("/proc").iterdir():
            if p.name.isdigit() and _ppid_state(p)[0] == proc.pid:
                os.kill(int(p.name), signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_queued_runs_survive_a_restart(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "q.yaml").write_text("max_active_runs: 1\nsteps:\n  - run: sleep 1\n")
    d = start_daemon(tmp_path)
    first = d.ctl("enqueue", "q").stdout.strip()
    second = d.ctl("enqueue", "q").stdout.strip()
    wait_until(lambda: '"status": "running"' in d.ctl("status", "q", first, "--json").stdout)
    d.proc.terminate()  # the running one is aborted; the queued one must wait for the next dagd
    assert d.proc.wait(timeout=30) == 0
    d2 = start_daemon(tmp_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            rows = {r["id"]: r["status"] for r in json.loads(d2.ctl("history", "q", "--json").stdout)}
            if rows.get(second) == "succeeded":
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.2)
        assert rows[first] == "aborted"
    finally:
        d2.proc.terminate()
        d2.proc.wait(timeout=30)


def test_skip_if_successful_skips_a_fire_after_a_success_since_the_previous_one(tmp_path: Path) -> None:
    from dagd.engine.events import RunFinished, RunStarted
    from dagd.engine.status import RunStatus
    from dagd.store.db import Store

    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "once.yaml").write_text(
        'schedule: "* * * * *"\nskip_if_successful: true\nsteps:\n  - run: "true"\n'
    )
    (tmp_path / "state").mkdir()
    now = time.time()
    if now % 60 > 50:  # keep clear of the next minute boundary
        time.sleep(61 - now % 60)
        now = time.time()
    slot = now - now % 60  # the fire dagd will find due at start
    store = Store(str(tmp_path / "state" / "dagd.db"))
    store.set_watermark("once", slot - 1)
    store.record(RunStarted("manual_ok", "once", "once.yaml", {}, "manual", slot - 30, "", ""))
    store.record(RunFinished("manual_ok", "once", RunStatus.SUCCEEDED, slot - 29))
    store.close()
    d = start_daemon(tmp_path)
    try:
        time.sleep(2)
        ids = [r["id"] for r in json.loads(d.ctl("history", "once", "--json").stdout)]
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(slot))
        assert not any(i.startswith(f"sched_{stamp}") for i in ids) and "manual_ok" in ids
        assert "skipped (succeeded since the previous fire)" in (tmp_path / "dagd.log").read_text()
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mutating_calls_reach_journald_with_who_and_what(tmp_path: Path) -> None:
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # stands in for journald's socket
    journal.bind(str(tmp_path / "journal.sock"))
    journal.settimeout(10)
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.yaml").write_text("steps:\n  - run: echo hi\n")
    d = start_daemon(tmp_path, {"JOURNAL_STREAM": "8:1234", "DAGD_JOURNAL_SOCKET": str(tmp_path / "journal.sock")})
    try:
        assert d.ctl("suspend", "hello").code == 0
        records = []
        while not any(b"DAGD_ACTION=dag.suspend" in r for r in records):
            records.append(journal.recv(65536))
        fields = dict(
            line.split(b"=", 1) for line in next(r for r in records if b"DAGD_ACTION=dag.suspend" in r).splitlines()
        )
        assert fields[b"PRIORITY"] == b"5" and fields[b"SYSLOG_IDENTIFIER"] == b"dagd"
        assert fields[b"DAGD_DAG"] == b"hello" and fields[b"DAGD_UID"] == str(os.getuid()).encode()
        assert fields[b"DAGD_USER"] == pwd.getpwuid(os.getuid()).pw_name.encode()
        assert b"dag.suspend hello by uid=" in fields[b"MESSAGE"]
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
        d.notify.close()
        journal.close()


def test_two_files_with_one_dag_name_are_both_errors_until_one_is_renamed(daemon: Daemon) -> None:
    (daemon.root / "dags" / "a.yaml").write_text("name: nightly\nsteps:\n  - run: echo a\n")
    (daemon.root / "dags" / "b.yaml").write_text("name: nightly\nsteps:\n  - run: echo b\n")
    r = daemon.ctl("reload")
    assert r.code == 1
    assert "a.yaml: duplicate DAG name 'nightly': b.yaml declares it too" in r.stderr
    assert "b.yaml: duplicate DAG name 'nightly': a.yaml declares it too" in r.stderr
    rows = {row["name"]: row for row in json.loads(daemon.ctl("list", "--json").stdout)}
    assert "duplicate DAG name" in rows["a"]["error"] and "duplicate DAG name" in rows["b"]["error"]
    r = daemon.ctl("enqueue", "nightly")
    assert r.code == 1 and "duplicate DAG name 'nightly'" in r.stderr
    assert "duplicate DAG name 'nightly'" in (daemon.root / "dagd.log").read_text()
    (daemon.root / "dags" / "b.yaml").write_text("name: weekly\nsteps:\n  - run: echo b\n")
    assert daemon.ctl("reload").code == 0
    assert daemon.ctl("enqueue", "nightly").code == 0


def _wait_new_message(d: Daemon, text: str, since: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in m for m in d.messages[since:]):
        assert time.monotonic() < deadline, (text, d.messages[since:])
        d.notify.settimeout(max(0.01, deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            d.messages.append(d.notify.recv(4096).decode())


def test_status_follows_running_and_queued_counts(daemon: Daemon) -> None:
    gate = daemon.root / "gate"
    (daemon.root / "dags" / "wait.yaml").write_text(f"steps:\n  - run: while [ ! -e {gate} ]; do sleep 0.05; done\n")
    assert daemon.ctl("reload").code == 0
    since = len(daemon.messages)
    daemon.ctl("enqueue", "wait")
    _wait_new_message(daemon, "STATUS=2 DAGs, 1 running, 0 queued", since)
    since = len(daemon.messages)
    gate.touch()
    _wait_new_message(daemon, "STATUS=2 DAGs, 0 running, 0 queued", since)


def test_retention_deletes_daemon_runs_log_folders(daemon: Daemon) -> None:
    (daemon.root / "dags" / "keep.yaml").write_text("hist_retention_runs: 1\nsteps:\n  - run: echo kept\n")
    assert daemon.ctl("reload").code == 0
    for _ in range(3):
        assert daemon.ctl("run", "keep").code == 0
    deadline = time.monotonic() + 10
    while True:  # pruning follows the run's end: wait for it, not for a fixed time
        folders = sorted(f.name for f in (daemon.root / "state" / "logs" / "keep").iterdir())
        history = json.loads(daemon.ctl("history", "keep", "--json").stdout)
        if len(folders) == 1 and len(history) == 1:
            break
        assert time.monotonic() < deadline, (folders, history)
    assert folders == [history[0]["id"]]


def test_a_dag_that_never_ran_says_so(daemon: Daemon) -> None:
    r = daemon.ctl("status", "hello")
    assert r.code == 1 and r.stderr.strip() == "dagctl: no run of hello yet"


def test_a_reader_that_stalls_is_told_and_gets_eof(daemon: Daemon) -> None:
    steps = "".join(f"  - {{id: s{i}, run: 'true'}}\n" for i in range(600))  # 1200+ events, fast
    (daemon.root / "dags" / "many.yaml").write_text(f"type: graph\nmax_active_steps: 8\nsteps:\n{steps}")
    assert daemon.ctl("reload").code == 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: dagd's sends block soon
        s.connect(str(daemon.sock))
        s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "events.subscribe"}\n')
        reader = s.makefile("rb")
        assert json.loads(reader.readline())["result"] == {"subscribed": True}
        assert daemon.ctl("run", "many").code == 0  # the run ends while this reader reads nothing
        s.settimeout(10)
        lines = [json.loads(line) for line in reader]  # what was buffered, then the notice, then EOF
    assert lines[-1]["error"]["code"] == -32005 and "fell behind" in lines[-1]["error"]["message"]
    assert all(x.get("method") == "event" for x in lines[:-1]) and len(lines) - 1 < 1300
    assert daemon.proc.poll() is None
