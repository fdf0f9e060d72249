"""The installed .deb under a real systemd: a Debian 12 root (mmdebstrap, minbase) booted with
systemd-nspawn, driven with nsenter. The hardened unit, the trust boundary as a stranger (bob)
and a member of group dagd (alice) would meet it, what jobs may still do, and the audit trail in
journald. (This machine's PID 1 is not systemd: hence --keep-unit and --register=no.)

The root file system is built once and kept as a tarball in /var/cache/dagd-test (≈ 25 s to
build, 3 s to unpack); each run boots a fresh copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.conftest import build, sh

SUITE = "bookworm"
# libpq5: what `apt install ./dagd.deb` adds as a Recommends (PostgreSQL stores); the machine has
# no network to fetch it, so the root file system brings it
PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "adduser", "curl", "procps", "ca-certificates", "libpq5"]
CACHE = Path("/var/cache/dagd-test")
BASE = "http://127.0.0.1:8090"


@dataclass
class Machine:
    nspawn: subprocess.Popen[bytes]
    leader: int

    def sh(
        self, script: str, user: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """A shell command inside the booted machine, as root or as `user`."""
        inner = ["runuser", "-u", user, "--", "/bin/sh", "-c", script] if user else ["/bin/sh", "-c", script]
        p = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "--", *inner],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )
        if check and p.returncode != 0:
            raise AssertionError(f"{script!r} as {user or 'root'}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def curl(self, user: str, method: str, path: str, body: str | None = None, *headers: str) -> tuple[int, str]:
        args = f"curl -s -o /tmp/curl-out.$$ -w '%{{http_code}}' -X {method} "
        args += " ".join(f"-H '{h}'" for h in headers)
        if body is not None:
            args += f" -H 'content-type: application/json' --data-binary '{body}'"
        p = self.sh(f"{args} '{BASE}{path}'; echo; cat /tmp/curl-out.$$; rm -f /tmp/curl-out.$$", user)
        code, _, text = p.stdout.partition("\n")
        return int(code), text


def _root_tarball() -> Path:
    key = hashlib.sha256(" ".join([SUITE, *PACKAGES]).encode()).hexdigest()[:12]
    tarball = CACHE / f"{SUITE}-minbase-{key}.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        sh("mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, partial, timeout=900)
        partial.rename(tarball)
    return tarball


def _leader(nspawn_pid: int) -> int | None:
    """The container's PID 1 as the host sees it: the child of systemd-nspawn."""
    for task in Path(f"/proc/{nspawn_pid}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    return None


@pytest.fixture(scope="module")
def machine(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    with boot(deb, tmp_path_factory.mktemp("machine")) as m:
        yield m


@contextlib.contextmanager
def boot(deb: Path, where: Path, binds: tuple[str, ...] = (), config: str = "") -> Iterator[Machine]:
    """A fresh machine booted, the .deb installed and dagd started (`config` appended to
    /etc/dagd/config.yaml first); `binds`: systemd-nspawn --bind= arguments."""
    for tool in ("systemd-nspawn", "mmdebstrap", "nsenter"):
        assert shutil.which(tool), f"{tool} is missing (make test installs it)"
    root = where / "root"
    root.mkdir()
    with tarfile.open(_root_tarball()) as tar:
        tar.extractall(root, numeric_owner=True, filter="fully_trusted")
    shutil.copy(deb, root / "root" / "dagd.deb")
    nspawn = subprocess.Popen(
        [
            "systemd-nspawn",
            "-D",
            str(root),
            "--boot",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--console=passive",
            f"--machine=dagdtest{os.getpid()}{where.name[-6:]}",
            *(f"--bind={b}" for b in binds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        leader = None
        while leader is None:
            assert nspawn.poll() is None and time.monotonic() < deadline, "systemd-nspawn did not start"
            leader = _leader(nspawn.pid)
            time.sleep(0.1)
        m = Machine(nspawn, leader)
        while m.sh("systemctl is-system-running --wait", check=False, timeout=90).stdout.strip() not in (
            "running",
            "degraded",
        ):
            assert time.monotonic() < deadline, "the machine did not finish booting"
        m.sh("dpkg -i /root/dagd.deb")
        if config:  # as the README says: add to config.yaml, then restart (the package started it)
            m.sh(f"cat >> /etc/dagd/config.yaml <<'EOF'\n{config}EOF")
            m.sh("systemctl enable dagd && systemctl restart dagd")
        m.sh("systemctl enable --now dagd")
        m.sh("useradd -m -G dagd alice && useradd -m bob")
        deadline = time.monotonic() + 30
        while m.sh("curl -s -o /dev/null -w '%{http_code}' " + BASE + "/api/v1/health", check=False).stdout != "200":
            assert time.monotonic() < deadline, m.sh("journalctl -u dagd --no-pager", check=False).stdout
            time.sleep(0.2)
        yield m
    finally:
        nspawn.send_signal(signal.SIGTERM)  # the container powers off
        try:
            nspawn.wait(timeout=30)
        except subprocess.TimeoutExpired:
            nspawn.kill()
            nspawn.wait()


def test_the_installed_unit_runs_hardened(machine: Machine) -> None:
    assert machine.sh("systemctl is-active dagd").stdout.strip() == "active"
    score = machine.sh("systemd-analyze security dagd --no-pager").stdout
    level = float(score.rsplit("Overall exposure level for dagd.service:", 1)[1].split()[0])
    assert level < 5.0, score
    assert machine.sh("stat -c %U /etc/dagd/config.yaml").stdout.strip() == "root"
    # ProtectSystem=strict: even a folder dagd owns is read-only for it outside ReadWritePaths
    machine.sh(
        "install -d -o dagd /srv/dagd-owned /etc/dagd/owned && cat > /etc/dagd/dags/confined.yaml <<'EOF'\n"
        "steps:\n  - run: touch /srv/dagd-owned/x 2>/dev/null || touch /etc/dagd/owned/x 2>/dev/null || echo confined\n"
        "EOF\ndagctl reload"
    )
    machine.sh("dagctl run confined")
    assert machine.sh("dagctl logs confined").stdout.strip().endswith("<==\nconfined")
    assert machine.sh("ls /srv/dagd-owned /etc/dagd/owned").stdout.split() == ["/etc/dagd/owned:", "/srv/dagd-owned:"]
    machine.sh("rm /etc/dagd/dags/confined.yaml && dagctl reload")


def test_a_stranger_gets_no_further_than_health(machine: Machine) -> None:
    pwn = json.dumps({"name": "pwn", "spec": "steps:\n  - run: id > /tmp/bob-was-here\n"}).replace("\n", "\\n")
    for method, path, body in (
        ("GET", "/api/v1/dags", None),
        ("POST", "/api/v1/dags", pwn),
        ("PUT", "/api/v1/dags/example/spec", '{"spec": "steps:\\n  - run: id\\n"}'),
        ("POST", "/api/v1/dags/example/start", "{}"),
        ("GET", "/api/v1/events", None),
        ("GET", "/api/v1/dag-runs", None),
        ("GET", "/", None),
    ):
        code, text = machine.curl("bob", method, path, body)
        assert code == 401 and "dagctl ui" in text, (method, path, code, text)
    assert machine.curl("bob", "GET", "/api/v1/health")[0] == 200
    assert machine.sh("test -e /tmp/bob-was-here", check=False).returncode != 0
    assert "run: echo" in machine.sh("cat /etc/dagd/dags/example.yaml").stdout
    for command in ("dagctl list", "dagctl status example", "dagctl history", "dagctl run example"):
        p = machine.sh(command, "bob", check=False)
        assert p.returncode == 1, (command, p.stdout, p.stderr)
        assert "permission denied" in p.stderr and "group dagd" in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_member_drives_dagd_and_hands_out_a_login_link(machine: Machine) -> None:
    assert "example" in machine.sh("dagctl list", "alice").stdout
    p = machine.sh("dagctl run example", "alice")
    assert "succeeded" in p.stderr
    assert "succeeded" in machine.sh("dagctl status example", "alice").stdout
    assert machine.curl("alice", "GET", "/api/v1/dags")[0] == 200
    link = machine.sh("dagctl ui --no-open", "alice").stdout.strip()
    assert link.startswith(BASE + "/login?token=")
    p = machine.sh(f"curl -s -i '{link}'", "bob")
    assert " 303" in p.stdout.splitlines()[0]
    cookie = next(
        line.split(":", 1)[1].split(";", 1)[0].strip()
        for line in p.stdout.splitlines()
        if line.lower().startswith("set-cookie")
    )
    assert machine.curl("bob", "GET", "/api/v1/dags", None, f"Cookie: {cookie}")[0] == 200


def test_jobs_still_do_what_jobs_do(machine: Machine) -> None:
    machine.sh(
        "cat > /etc/dagd/dags/legit.yaml <<'EOF'\n"
        "steps:\n"
        "  - id: tmp\n    run: echo hi > /tmp/dagd-legit && cat /tmp/dagd-legit\n"
        "  - id: state\n    run: echo x > /var/lib/dagd/legit && cat /var/lib/dagd/legit\n"
        "  - id: net\n    run: curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8090/api/v1/health\n"
        "  - id: ps\n    run: pgrep -u root -x systemd\n"
        "  - id: home\n    run: ls /home/alice\n"
        "EOF\n"
        "dagctl reload"
    )
    p = machine.sh("dagctl run legit", check=False)
    assert p.returncode == 0, p.stderr
    assert machine.sh("cat /tmp/dagd-legit").stdout.strip() == "hi"
    # the web UI may edit the DAGs folder (ReadWritePaths), config.yaml stays read-only
    code, text = machine.curl("alice", "PUT", "/api/v1/dags/legit/spec", '{"spec": "steps:\\n  - run: echo edited\\n"}')
    assert code == 200, text
    assert "echo edited" in machine.sh("cat /etc/dagd/dags/legit.yaml").stdout


def test_every_mutating_call_is_in_the_journal_with_who(machine: Machine) -> None:
    machine.sh("dagctl suspend example && dagctl resume example", "alice")
    entries = [json.loads(line) for line in machine.sh("journalctl -u dagd -o json --no-pager").stdout.splitlines()]
    audited = [e for e in entries if e.get("DAGD_ACTION") == "dag.suspend"]
    assert audited and audited[-1]["DAGD_USER"] == "alice" and audited[-1]["DAGD_DAG"] == "example"
    assert audited[-1]["PRIORITY"] == "5"
    assert any(
        e.get("DAGD_USER") == "alice" and "PUT /api/v1/dags/legit/spec -> 200" in e.get("MESSAGE", "") for e in entries
    )
    refused = [
        e for e in entries if e.get("PRIORITY") == "4" and "POST /api/v1/dags from 127.0.0.1 refused" in e["MESSAGE"]
    ]
    assert refused and "uid " in refused[0]["MESSAGE"]  # bob's attempt left a warning naming his uid


def test_root_does_not_run_named_dags_behind_a_stopped_daemon(machine: Machine) -> None:
    machine.sh("systemctl stop dagd.socket dagd")
    try:
        p = machine.sh("dagctl run example", check=False)
        assert p.returncode == 1 and "--local" in p.stderr and "Traceback" not in p.stderr
        assert machine.sh("dagctl run example --local", check=False).returncode == 0
        assert machine.sh("find /var/lib/dagd -uid 0").stdout.strip() == ""
    finally:
        machine.sh("systemctl start dagd.socket dagd")
    assert "succeeded" in machine.sh("dagctl run example", "alice").stderr


def test_hostile_lines_on_the_socket_and_dagd_never_restarted(machine: Machine) -> None:
    send = (
        "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/dagd/dagd.sock'); "
        "s.sendall(b'[' * 1100 + b'\\n'); print(s.recv(4096).decode())\""
    )
    p = machine.sh(send, "bob", check=False)
    assert p.returncode != 0 and "PermissionError" in p.stderr  # the socket's mode: group dagd only
    p = machine.sh(send, "alice")
    assert '"code": -32600' in p.stdout and "nested deeper" in p.stdout
    assert "pid" in machine.sh("dagctl daemon", "alice").stdout
    assert machine.sh("systemctl show dagd -p NRestarts --value").stdout.strip() == "0"
    assert "Traceback" not in machine.sh("journalctl -u dagd --no-pager").stdout


# the step's own shell runs these lines (a script: no outer `sh -c "…"` to expand $$ first), so
# each escapee writes its own pid: setsid, double-forked and nohup'ed
ESCAPE = """\
      setsid sh -c 'echo $$ > /tmp/esc1.pid; exec sleep 3002' &
      (setsid sh -c 'echo $$ > /tmp/esc2.pid; exec sleep 3003' &)
      nohup sh -c 'echo $$ > /tmp/esc3.pid; exec sleep 3004' >/dev/null 2>&1 &
      sleep 600
"""


def _esc_dag(machine: Machine) -> None:
    machine.sh(f"cat > /etc/dagd/dags/esc.yaml <<'EOF'\nsteps:\n  - name: s\n    script: |\n{ESCAPE}EOF\ndagctl reload")


def _escapees_started(machine: Machine) -> list[int]:
    deadline = time.monotonic() + 30
    while True:
        out = machine.sh("cat /tmp/esc1.pid /tmp/esc2.pid /tmp/esc3.pid 2>/dev/null", check=False).stdout.split()
        if len(out) == 3:
            return [int(p) for p in out]
        assert time.monotonic() < deadline, machine.sh("dagctl status esc", check=False).stdout
        time.sleep(0.1)


def _alive(machine: Machine, pids: list[int]) -> list[int]:
    out = machine.sh(f"ps -o pid=,stat= -p {','.join(map(str, pids))}", check=False).stdout.split("\n")
    return [int(line.split()[0]) for line in out if line.strip() and not line.split()[1].startswith("Z")]


def test_runs_are_contained_in_dagds_delegated_cgroup(machine: Machine) -> None:
    """Delegate=yes: dagd moves itself to <unit>/daemon, each run gets a cgroup below the unit's;
    a stop ends the setsid, double-forked and nohup escapees that process groups missed."""
    info = json.loads(machine.sh("dagctl daemon --json").stdout)
    assert info["containment"].startswith("cgroups:"), info
    assert "/system.slice/dagd.service/dagd." in info["containment"], info
    assert "vfork, joined before exec" in info["containment"], info  # the packaged dagd._spawn loads
    _esc_dag(machine)
    machine.sh("rm -f /tmp/esc*.pid && dagctl enqueue esc")
    pids = _escapees_started(machine)
    cgroup = machine.sh(f"cat /proc/{pids[0]}/cgroup").stdout
    assert "/system.slice/dagd.service/dagd." in cgroup and "/1.s" in cgroup, cgroup
    own = machine.sh("cat /proc/$(systemctl show -P MainPID dagd)/cgroup").stdout
    if "(v2)" in info["containment"]:  # controllers to enable: dagd left the unit's cgroup for a leaf
        assert "0::/system.slice/dagd.service/daemon\n" in own, own
    else:  # a hybrid host (as this one): nothing to enable, dagd stays where systemd put it
        assert "0::/system.slice/dagd.service\n" in own, own
    machine.sh("dagctl stop esc")
    assert _alive(machine, pids) == []
    assert json.loads(machine.sh("dagctl status esc --json").stdout)["status"] == "aborted"


def test_kill_9_of_dagd_under_systemd_leaves_the_run_to_the_next_dagd(machine: Machine) -> None:
    """KillMode=process: the run and its escapees live through dagd's death; the dagd systemd
    starts again re-attaches the run (still running, in its cgroup), and a stop then ends all."""
    machine.sh("rm -f /tmp/esc*.pid && dagctl enqueue esc")
    pids = _escapees_started(machine)
    assert len(set(pids)) == 3, pids  # three processes, each its own
    before = machine.sh("systemctl show -P NRestarts dagd").stdout.strip()
    machine.sh("kill -9 $(systemctl show -P MainPID dagd)")
    _wait_restarted(machine, before)
    assert set(_alive(machine, pids)) == set(pids)
    doc = json.loads(machine.sh("dagctl status esc --json").stdout)
    assert doc["status"] == "running" and doc["runner_pid"] == _main_pid(machine), doc
    assert "re-attached after a restart" in machine.sh("journalctl -u dagd --no-pager | tail -40").stdout
    info = json.loads(machine.sh("dagctl daemon --json").stdout)
    assert info["containment"].startswith("cgroups:"), info  # the restarted dagd is contained again
    machine.sh("dagctl stop esc")
    assert _alive(machine, pids) == []
    assert json.loads(machine.sh("dagctl status esc --json").stdout)["status"] == "aborted"


def _main_pid(machine: Machine) -> int:
    return int(machine.sh("systemctl show -P MainPID dagd").stdout.strip())


def _wait_restarted(machine: Machine, before: str) -> None:
    deadline = time.monotonic() + 60
    while machine.sh("systemctl show -P NRestarts dagd").stdout.strip() == before or (
        machine.sh("systemctl is-active dagd", check=False).stdout.strip() != "active"
    ):
        assert time.monotonic() < deadline, machine.sh("journalctl -u dagd --no-pager | tail -30", check=False).stdout
        time.sleep(0.2)


def _wait_active(machine: Machine, other_than: int) -> int:
    """dagd active again under a new main pid (a restart's new process); that pid."""
    deadline = time.monotonic() + 60
    while True:
        active = machine.sh("systemctl is-active dagd", check=False).stdout.strip() == "active"
        pid = _main_pid(machine)
        if active and pid not in (0, other_than) and machine.sh("dagctl daemon", check=False).returncode == 0:
            return pid
        assert time.monotonic() < deadline, machine.sh("journalctl -u dagd --no-pager | tail -30", check=False).stdout
        time.sleep(0.2)


SIXTY = """steps:
  - id: first
    run: echo first >> /tmp/sixty.marks
  - id: ticks
    depends: first
    run: for i in $(seq 1 60); do echo tick $i; sleep 1; done
  - id: last
    depends: ticks
    run: echo last >> /tmp/sixty.marks
"""
DOWN = """steps:
  - id: waits
    run: while [ ! -e /tmp/gate-down ]; do sleep 0.05; done; echo ending; exit 3
"""


def test_a_run_lives_through_restart_upgrade_and_kill_9(machine: Machine, deb: Path, tmp_path: Path) -> None:
    """Issue 18 on a real systemd: a 60 s run goes on across `systemctl restart dagd` at 10 s,
    an upgrade to a newer .deb (its postinst restarts dagd) at 20 s and a kill -9 at 30 s, and
    ends succeeded at ≈ 60 s with its full log; a step that ends while dagd is down is recorded
    with its real exit code. Then `systemctl stop dagd` still aborts what runs."""
    newer = build("deb", tmp_path / "newer", version="0.1.0+reattach1")
    shutil.copy(newer, Path(f"/proc/{machine.leader}/root/root/dagd-newer.deb"))
    machine.sh(
        "rm -f /tmp/sixty.marks /tmp/gate-down"
        f" && cat > /etc/dagd/dags/sixty.yaml <<'EOF'\n{SIXTY}EOF\n"
        f"cat > /etc/dagd/dags/down.yaml <<'EOF'\n{DOWN}EOF\n"
        "dagctl reload"
    )
    t0 = time.monotonic()
    run_id = machine.sh("dagctl enqueue sixty").stdout.strip()
    down_id = machine.sh("dagctl enqueue down").stdout.strip()

    def step(name: str, rid: str, sid: str) -> dict:  # type: ignore[type-arg]
        doc = json.loads(machine.sh(f"dagctl status {name} {rid} --json").stdout)
        return next(s for s in doc["steps"] if s["step"] == sid)

    deadline = time.monotonic() + 30
    while step("sixty", run_id, "ticks")["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pgid = step("sixty", run_id, "ticks")["pgid"]

    def at(second: float) -> None:
        time.sleep(max(0.0, t0 + second - time.monotonic()))  # the scenario's clock, not a synchronisation

    at(10)
    pid = _main_pid(machine)
    machine.sh("systemctl restart dagd")
    pid = _wait_active(machine, pid)
    assert step("sixty", run_id, "ticks")["status"] == "running" and step("sixty", run_id, "ticks")["pgid"] == pgid
    at(20)
    machine.sh("dpkg -i /root/dagd-newer.deb", timeout=300)
    assert machine.sh("dpkg-query -W -f '${Version}' dagd").stdout == "0.1.0+reattach1-1"
    pid = _wait_active(machine, pid)
    assert step("sixty", run_id, "ticks")["status"] == "running"
    at(30)
    before = machine.sh("systemctl show -P NRestarts dagd").stdout.strip()
    machine.sh("kill -9 $(systemctl show -P MainPID dagd) && touch /tmp/gate-down")
    exit_files = machine.sh("ls /var/lib/dagd/logs/down/*/.proc/ 2>/dev/null; true").stdout
    _wait_restarted(machine, before)
    pid = _wait_active(machine, 0)
    deadline = time.monotonic() + 90
    while json.loads(machine.sh(f"dagctl status sixty {run_id} --json").stdout)["status"] == "running":
        assert time.monotonic() < deadline, machine.sh("journalctl -u dagd --no-pager | tail -40").stdout
        time.sleep(0.5)
    took = time.monotonic() - t0
    doc = json.loads(machine.sh(f"dagctl status sixty {run_id} --json").stdout)
    assert doc["status"] == "succeeded", doc
    assert 58 <= took <= 80, took
    ticks = next(s for s in doc["steps"] if s["step"] == "ticks")
    assert ticks["attempt"] == 1 and ticks["exit_code"] == 0
    log_text = machine.sh(f"cat {ticks['stdout_path']}").stdout
    assert log_text == "".join(f"tick {i}\n" for i in range(1, 61)), log_text  # the full log, each line once
    assert machine.sh("cat /tmp/sixty.marks").stdout == "first\nlast\n"
    down = json.loads(machine.sh(f"dagctl status down {down_id} --json").stdout)
    assert down["status"] == "failed" and down["steps"][0]["exit_code"] == 3, (down, exit_files)
    journal = machine.sh("journalctl -u dagd --no-pager").stdout
    assert "leaving 2 running run(s) to the next dagd" in journal, journal[-3000:]
    # ExecStartPre= ran before each start, beside the runs left in the unit's cgroup
    assert "dagd: /sys/fs/cgroup/" in journal and "system.slice/dagd.service" in journal, journal[-3000:]
    # a stop is a stop: what runs is aborted, nothing of it stays
    _esc_dag(machine)
    machine.sh("rm -f /tmp/esc*.pid && dagctl enqueue esc")
    pids = _escapees_started(machine)
    machine.sh("systemctl stop dagd")
    assert _alive(machine, pids) == []
    machine.sh("systemctl start dagd")
    assert json.loads(machine.sh("dagctl status esc --json").stdout)["status"] == "aborted"
