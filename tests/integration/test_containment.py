"""Containment, tried the way steps escape: setsid, a double fork and nohup children must not
outlive their step — on stop, step and DAG timeouts, a normal exit, dagd's SIGTERM, and kill -9
of dagd followed by a restart. Whole-tree accounting and Dagu's `resources` limits, for real.

Every test here runs against the host's real cgroups (a writable cgroup v2 hierarchy: root, or
systemd's Delegate=yes); where the host gives none, the cgroup tests skip and say why, and the
process-group fallback is tried by turning cgroups off (DAGD_CGROUPS=off).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_dagctl
from tests.integration.test_daemon import Daemon, run_ended, start_daemon, wait_until

# Three ways out of a process group: a new session, a double fork into a new session, and nohup.
ESCAPE = (
    "setsid sh -c 'echo $$ > esc1.pid; exec sleep 3002' & "
    "(setsid sh -c 'echo $$ > esc2.pid; exec sleep 3003' &); "
    "nohup sh -c 'echo $$ > esc3.pid; exec sleep 3004' >/dev/null 2>&1 & "
    "while [ ! -s esc1.pid ] || [ ! -s esc2.pid ] || [ ! -s esc3.pid ]; do sleep 0.01; done; "
)


def containment(root: Path) -> str:
    r = run_dagctl(["daemon", "--json"], root, {"DAGD_SOCKET": str(root / "dagd.sock")})
    assert r.code == 0, r.stderr
    return str(json.loads(r.stdout)["containment"])


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for its reaper (PID 1 here reaps lazily)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def escapees(root: Path) -> list[int]:
    return [int((root / f"esc{i}.pid").read_text()) for i in (1, 2, 3)]


@pytest.fixture(params=["native", "trampoline"])
def cgroup_daemon(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Daemon]:
    """dagd whose steps join their cgroup from the vfork child (dagd._spawn), or through the sh
    trampoline used where the C part is not built."""
    d = start_daemon(tmp_path, {"DAGD_SPAWN": request.param})
    where = containment(tmp_path)
    if request.param == "native" and "vfork, joined before exec" not in where:
        d.proc.terminate()
        d.proc.wait(timeout=30)
        pytest.skip(f"dagd._spawn is not built here: {where}")
    try:
        where = containment(tmp_path)
        if not where.startswith("cgroups:"):
            pytest.skip(f"no writable cgroup v2 on this host: {where}")
        yield d
    finally:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            d.proc.wait(timeout=30)
        d.notify.close()


def _dag(d: Daemon, name: str, text: str) -> None:
    (d.root / "dags" / f"{name}.yaml").write_text(f"working_dir: {d.root}\n{text}")
    assert d.ctl("reload").code == 0


def _run(d: Daemon, name: str) -> dict:  # type: ignore[type-arg]
    """Enqueue `name` and wait for its run to end; the run's document."""
    assert d.ctl("enqueue", name).code == 0
    doc = wait_until(lambda: run_ended(d, name, json.loads(d.ctl("status", name, "--json").stdout)["id"]))
    assert isinstance(doc, dict)
    return doc


def _start(d: Daemon, name: str) -> str:
    r = d.ctl("enqueue", name)
    assert r.code == 0, r.stderr
    wait_until(
        lambda: all((d.root / f"esc{i}.pid").exists() and (d.root / f"esc{i}.pid").read_text() for i in (1, 2, 3))
    )
    doc = json.loads(d.ctl("status", name, "--json").stdout)
    return str(doc["id"])


@pytest.mark.parametrize("how", ["stop", "step_timeout", "dag_timeout", "exit"])
def test_nothing_a_step_starts_outlives_it(cgroup_daemon: Daemon, how: str) -> None:
    d = cgroup_daemon
    tail = "true" if how == "exit" else "sleep 600"
    step_timeout = "\n    timeout_sec: 1" if how == "step_timeout" else ""
    dag_timeout = "timeout_sec: 1\n" if how == "dag_timeout" else ""
    _dag(d, "esc", f"{dag_timeout}steps:\n  - name: s\n    command: sh -c {json.dumps(ESCAPE + tail)}{step_timeout}\n")
    run_id = _start(d, "esc")
    pids = escapees(d.root)
    if how == "stop":
        assert d.ctl("stop", "esc").code == 0
    doc = wait_until(lambda: run_ended(d, "esc", run_id), timeout=30)
    assert isinstance(doc, dict)
    assert doc["status"] == {"stop": "aborted", "exit": "succeeded"}.get(how, "failed"), doc
    wait_until(lambda: all(gone(p) for p in pids), timeout=10)
    assert not Path(doc["cgroup"]).exists(), "the run's cgroup is removed when it ends"
    if how == "exit":  # the step said what it left behind
        err = Path(doc["steps"][0]["stderr_path"]).read_text()
        assert "leaving 3 process(es) running" in err, err
    assert d.proc.poll() is None


def test_sigterm_of_dagd_ends_every_process_of_its_runs(cgroup_daemon: Daemon) -> None:
    d = cgroup_daemon
    _dag(d, "esc", f"steps:\n  - command: sh -c {json.dumps(ESCAPE + 'sleep 600')}\n")
    _start(d, "esc")
    pids = escapees(d.root)
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=30) == 0
    assert all(gone(p) for p in pids)


def test_kill_9_of_dagd_then_restart_ends_the_escapees_by_their_cgroup(cgroup_daemon: Daemon) -> None:
    d = cgroup_daemon
    _dag(d, "esc", f"steps:\n  - command: sh -c {json.dumps(ESCAPE + 'sleep 600')}\n")
    run_id = _start(d, "esc")
    pids = escapees(d.root)
    path = json.loads(d.ctl("status", "esc", "--json").stdout)["cgroup"]
    assert path and Path(path).is_dir()
    d.proc.kill()
    d.proc.wait()
    assert not any(gone(p) for p in pids), "kill -9 of dagd alone ends nothing: recovery must"
    d2 = start_daemon(d.root)
    try:
        assert all(gone(p) for p in pids)  # before READY: the restart recovered by cgroup path
        assert not Path(path).exists()
        doc = json.loads(d2.ctl("status", "esc", run_id, "--json").stdout)
        assert doc["status"] == "failed" and "daemon restart" in doc["error"]
    finally:
        d2.close()


def test_whole_tree_cpu_of_two_busy_grandchildren(cgroup_daemon: Daemon) -> None:
    """Two orphaned grandchildren burn 0.4 s of CPU each; the step itself waits on fifos and
    burns nothing. wait4 cannot see them; the step's cgroup can."""
    d = cgroup_daemon
    # each burns 0.4 s of its own CPU time, however busy the machine is
    busy = 'python3 -c "import time; t = time.process_time(); [0 for _ in iter(lambda:time.process_time() - t < 0.4, False)]"; echo done'
    script = f"rm -f f1 f2; mkfifo f1 f2; (sh -c '{busy}' > f1 &); (sh -c '{busy}' > f2 &); cat f1 f2 >/dev/null"
    _dag(d, "cpu", f"steps:\n  - command: sh -c {json.dumps(script)}\n")
    doc = _run(d, "cpu")
    assert doc["status"] == "succeeded", doc
    step = doc["steps"][0]
    assert step["cpu_user"] + step["cpu_sys"] >= 0.8, step  # two x 0.4 s


def test_peak_memory_of_a_grandchild_that_allocates_200_mb(cgroup_daemon: Daemon) -> None:
    d = cgroup_daemon
    alloc = 'python3 -c "b = bytearray(200 * 1024 * 1024)"; echo done'
    script = f"rm -f f1; mkfifo f1; (sh -c '{alloc}' > f1 &); cat f1 >/dev/null"
    _dag(d, "mem", f"steps:\n  - command: sh -c {json.dumps(script)}\n")
    doc = _run(d, "mem")
    assert doc["status"] == "succeeded", doc
    step = doc["steps"][0]
    where = containment(d.root)
    if "memory (v" not in where:
        # no memory controller: the orphaned grandchild is invisible to rusage, and dagd says so
        assert step["memory_source"] is None and step["max_rss_kb"] == 0, (where, step)
        pytest.skip(f"no memory controller here ({where}); the fallback reports 'not measured'")
    assert step["memory_source"].startswith("cgroup v"), step
    assert 200 * 1024 <= step["max_rss_kb"] < 300 * 1024, step


def _limited(d: Daemon, controller: str, limits: str, command: str) -> dict:  # type: ignore[type-arg]
    """The first step of a run of `command` under `resources: {limits: ...}`; skips where dagd
    has no such controller."""
    where = containment(d.root)
    if f"{controller} (v" not in where:
        pytest.skip(f"no {controller} controller for dagd here: {where}")
    _dag(d, "limited", f"resources:\n  limits:\n    {limits}\nsteps:\n  - command: {command}\n")
    step = _run(d, "limited")["steps"][0]
    assert isinstance(step, dict)
    return step


def test_a_memory_limit_is_enforced_and_the_oom_kill_reported(cgroup_daemon: Daemon) -> None:
    step = _limited(
        cgroup_daemon, "memory", "memory: 64Mi", "python3 -c \"b = bytearray(300 * 1024 * 1024); print('survived')\""
    )
    assert step["status"] == "failed" and step["exit_code"] == 137 and "OOM killer" in step["error"], step
    assert "survived" not in Path(step["stdout_path"]).read_text()
    assert step["max_rss_kb"] <= 64 * 1024, step


def test_a_cpu_limit_is_enforced(cgroup_daemon: Daemon) -> None:
    """cpu: 200m lets a busy loop have ~0.2 s of CPU per second of wall time."""
    step = _limited(cgroup_daemon, "cpu", 'cpu: "200m"', 'timeout 1 sh -c "while :; do :; done"')
    used = step["cpu_user"] + step["cpu_sys"]
    assert 0.05 < used < 0.4, step  # unlimited it would be ~1.0


def test_without_cgroups_dagd_says_so_and_falls_back_to_process_groups(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "lim.yaml").write_text(
        'resources:\n  limits:\n    memory: 64Mi\nsteps:\n  - command: python3 -c "b = bytearray(100 * 1024 * 1024)"\n'
    )
    # dagd started from a process bigger than the step: getrusage(RUSAGE_SELF) of dagd carries
    # its parent's peak (a vfork child's ru_maxrss starts at its parent's), its VmHWM does not
    ballast = bytearray(300 * 1024 * 1024)
    d = start_daemon(tmp_path, {"DAGD_CGROUPS": "off"})
    del ballast
    try:
        assert containment(tmp_path).startswith("process groups")
        doc = _run(d, "lim")
        assert doc["status"] == "succeeded", doc  # not enforced: warned
        assert doc["cgroup"] is None
        step = doc["steps"][0]
        assert step["memory_source"] == "rusage" and step["max_rss_kb"] >= 100 * 1024, step
        assert "resources.limits are not enforced" in (tmp_path / "dagd.log").read_text()
    finally:
        d.close()


def test_dagctl_run_without_a_daemon_contains_its_steps_too(tmp_path: Path) -> None:
    (tmp_path / "esc.yaml").write_text(
        f"working_dir: {tmp_path}\nsteps:\n  - command: sh -c {json.dumps(ESCAPE + 'true')}\n"
    )
    r = run_dagctl(["run", "esc.yaml"], tmp_path, {"DAGD_STATE_DIR": str(tmp_path / "state")})
    assert r.code == 0, r.stderr
    doc = json.loads(
        run_dagctl(["status", "esc.yaml", "--json"], tmp_path, {"DAGD_STATE_DIR": str(tmp_path / "state")}).stdout
    )
    if doc["cgroup"] is None:
        pytest.skip("no writable cgroup v2 on this host")
    assert all(gone(p) for p in escapees(tmp_path))
    assert os.path.basename(os.path.dirname(doc["cgroup"])).startswith("dagd.")
    assert not Path(os.path.dirname(doc["cgroup"])).exists(), "dagctl removes its subtree when it exits"


@pytest.mark.parametrize("spawn", ["native", "trampoline"])
def test_what_a_spawned_step_starts_with(tmp_path: Path, spawn: str) -> None:
    """The step's first process: its own session, no signal blocked, SIGPIPE and SIGXFSZ back to
    their defaults (dagd's Python ignores them), no fd of dagd's beyond 0-2, stdin /dev/null; a missing program is the
    step's error, not dagd's."""
    (tmp_path / "w").mkdir()
    (tmp_path / "s.yaml").write_text(
        "steps:\n"
        "  - name: ok\n"
        "    working_dir: w\n"
        "    command: >-\n"
        '      sh -c \'yes | head -n1; ls /proc/$$/fd | tr "\\n" " "; echo;'
        ' grep -E "^(SigBlk|SigIgn)" /proc/self/status; cut -d" " -f5,6 /proc/$$/stat; pwd; cat\'\n'
        "  - name: missing\n    action: exec\n    with: {command: /no/such/program}\n    continue_on: {failure: true}\n"
    )
    env = {"DAGD_STATE_DIR": str(tmp_path / "state"), "DAGD_SPAWN": spawn}
    run_dagctl(["run", "s.yaml"], tmp_path, env)
    doc = json.loads(run_dagctl(["status", "s.yaml", "--json"], tmp_path, env).stdout)
    steps = {s["step"]: s for s in doc["steps"]}
    out = Path(steps["ok"]["stdout_path"]).read_text().splitlines()
    assert out[0] == "y" and "Broken pipe" not in Path(steps["ok"]["stderr_path"]).read_text()
    assert sorted(out[1].split())[:3] == ["0", "1", "2"] and len(out[1].split()) <= 4, out  # (3: ls's own)
    assert out[2] == "SigBlk:\t0000000000000000", out
    ignored = int(out[3].split()[1], 16)  # what dagd's Python ignores (SIGPIPE, SIGXFSZ) is undone
    assert not ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)), out
    pgid, sid = out[4].split()
    assert sid == pgid and int(sid) != os.getsid(0), "the step leads its own session"
    assert out[5].endswith("/w"), out
    assert steps["missing"]["exit_code"] == 127
    assert "cannot run /no/such/program" in Path(steps["missing"]["stderr_path"]).read_text()


def test_a_precondition_command_cannot_leave_a_process_behind(cgroup_daemon: Daemon) -> None:
    d = cgroup_daemon
    pre = "setsid sh -c 'echo $$ > pre.pid; exec sleep 3005' & while [ ! -s pre.pid ]; do sleep 0.01; done"
    _dag(d, "pre", f"steps:\n  - command: 'true'\n    preconditions:\n      - condition: {json.dumps(pre)}\n")
    doc = _run(d, "pre")
    assert doc["status"] == "succeeded", doc
    assert gone(int((d.root / "pre.pid").read_text()))


def test_a_cgroup_that_cannot_be_made_fails_only_its_step_or_leaves_its_run_uncontained(tmp_path: Path) -> None:
    """Faults at the two places a cgroup is made: a run whose cgroup cannot be made runs in
    process groups and dagd says so; a step whose cgroup cannot be made fails, saying why.
    Other runs, and dagd, go on."""
    (tmp_path / "dags").mkdir()
    for name in ("norun", "nostep", "fine"):
        (tmp_path / "dags" / f"{name}.yaml").write_text(f"steps:\n  - name: s_{name}\n    command: echo {name}\n")
    d = start_daemon(tmp_path, {"DAGD_FAULT": "run_cgroup:norun,step_cgroup:s_nostep"})
    try:
        if not containment(tmp_path).startswith("cgroups:"):
            pytest.skip("no writable cgroup v2 on this host")
        doc = _run(d, "norun")
        assert doc["status"] == "succeeded" and doc["cgroup"] is None, doc
        assert "could not be set up (Resource temporarily unavailable" in (tmp_path / "dagd.log").read_text()
        doc = _run(d, "nostep")
        assert doc["status"] == "failed", doc
        assert "cannot create the step's cgroup" in doc["steps"][0]["error"], doc
        doc = _run(d, "fine")
        assert doc["status"] == "succeeded" and doc["cgroup"], doc
        assert d.proc.poll() is None
    finally:
        d.close()


def test_start_up_sweeps_only_its_own_leftovers_and_a_removed_subtree_is_made_again(tmp_path: Path) -> None:
    """At start dagd removes the empty subtrees of gone dagd processes of its own state directory
    — never another's (a dagd in another PID namespace sees every pid as gone: CI caught two
    daemons removing each other's subtrees). And if its own subtree is removed from outside,
    its next run makes it again instead of running uncontained."""
    from dagd.cgroups import tree_key

    probe = start_daemon(tmp_path / "probe")
    where = containment(tmp_path / "probe")
    probe.close()
    if not where.startswith("cgroups:"):
        pytest.skip(f"no writable cgroup v2 on this host: {where}")
    parent = Path(where.split(" under ", 1)[1].split(";", 1)[0]).parent
    mine = parent / f"dagd.{tree_key(str(tmp_path / 'state'))}.999999999.1"  # same history, process gone
    other = parent / "dagd.0badc0de.999999999.1"  # another dagd's, its process invisible from here
    mine.mkdir()
    other.mkdir()
    try:
        (tmp_path / "dags").mkdir()
        (tmp_path / "dags" / "hello.yaml").write_text("steps:\n  - run: echo hello\n")
        d = start_daemon(tmp_path)
        try:
            assert not mine.exists() and other.exists()
            root = Path(containment(tmp_path).split(" under ", 1)[1].split(";", 1)[0])
            root.rmdir()  # empty between runs: anyone with the rights could remove it
            doc = _run(d, "hello")
            assert doc["status"] == "succeeded" and doc["cgroup"] and doc["cgroup"].startswith(str(root)), doc
        finally:
            d.close()
    finally:
        for p in (mine, other):
            if p.exists():
                p.rmdir()
