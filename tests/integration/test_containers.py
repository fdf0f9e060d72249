"""docker.run / container.run and Dagu 1.x `executor: docker`, run for real through podman (from
Debian's packages; `make test` installs it) with an image built here: no registry is reachable, so
the image is a root filesystem of Debian's busybox-static, `podman import`ed.

This machine's quirks are the test's, not dagd's: its cgroups are hybrid (crun refuses them, runc
does not) and raising a container's rlimits to the host's is refused, so the tests hand podman a
containers.conf (CONTAINERS_CONF) that picks runc and lower limits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_dagctl
from tests.integration.test_daemon import wait_until

IMAGE = "localhost/dagd-test-busybox:1"


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment a dagctl needs to reach podman, with the image present."""
    assert shutil.which("podman"), "podman is missing: `make test` installs it (apt install podman runc busybox-static)"
    root = tmp_path_factory.mktemp("podman")
    conf = root / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\nruntime = "runc"\n'
    )
    env = {"CONTAINERS_CONF": str(conf)}
    full = {**os.environ, **env}
    if subprocess.run(["podman", "image", "exists", IMAGE], env=full).returncode != 0:
        busybox = shutil.which("busybox")
        assert busybox, "busybox-static is missing"
        tar = root / "rootfs.tar"
        with tarfile.open(tar, "w") as t:
            for d in ("bin", "tmp", "etc", "data"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
                t.addfile(info)
            t.add(busybox, "bin/busybox")
            for tool in ("sh", "echo", "cat", "sleep", "id", "pwd", "env", "printf"):
                link = tarfile.TarInfo(f"bin/{tool}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                t.addfile(link)
            passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
            entry = tarfile.TarInfo("etc/passwd")
            entry.size = len(passwd)
            import io

            t.addfile(entry, io.BytesIO(passwd))
        subprocess.run(["podman", "import", str(tar), IMAGE], env=full, check=True, capture_output=True)
    return env


def _containers(env: dict[str, str], prefix: str) -> list[str]:
    out = subprocess.run(
        ["podman", "ps", "--all", "--format", "{{.Names}}"], env={**os.environ, **env}, capture_output=True, text=True
    ).stdout.split()
    return [n for n in out if n.startswith(prefix)]


def _doc(tmp_path: Path, env: dict[str, str], name: str) -> dict:  # type: ignore[type-arg]
    r = run_dagctl(["history", name, "--json"], tmp_path, env)
    run_id = json.loads(r.stdout)[0]["id"]
    return dict(json.loads(run_dagctl(["status", name, run_id, "--json"], tmp_path, env).stdout))


def test_steps_run_in_containers_with_env_workdir_volumes_and_exit_codes(
    tmp_path: Path, podman: dict[str, str]
) -> None:
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "x").write_text("from the host\n")
    (tmp_path / "c.yaml").write_text(
        f"""working_dir: .
steps:
  - name: legacy
    executor:
      type: docker
      config:
        image: {IMAGE}
        pull: never
        autoRemove: true
        container:
          env: ["GREETING=hello"]
          workingDir: /tmp
          user: nobody
    command: sh -c "echo $GREETING from $(pwd) as $(id -u)"
    output: SAID
  - id: current
    action: docker.run
    with:
      image: {IMAGE}
      pull: missing
      command: [sh, -c, "cat /data/x; echo ${{SAID}}; exit 3"]
      volumes: ["./vol:/data:ro"]
    depends: [legacy]
    continue_on: failed
"""
    )
    r = run_dagctl(["run", "c.yaml"], tmp_path, podman)
    assert r.code == 1, r.stderr
    legacy, current = _doc(tmp_path, podman, "c")["steps"]
    assert legacy["status"] == "succeeded" and legacy["output_value"] == "hello from /tmp as 65534", legacy
    assert current["status"] == "failed" and current["exit_code"] == 3
    assert Path(current["stdout_path"]).read_text() == "from the host\nhello from /tmp as 65534\n"
    assert _containers(podman, f"dagd-{_doc(tmp_path, podman, 'c')['id']}-") == []  # each removed when its step ended


def test_a_timed_out_step_ends_its_containers_processes(tmp_path: Path, podman: dict[str, str]) -> None:
    marker = f"dagd-ctr-{uuid.uuid4().hex[:8]}"
    (tmp_path / "t.yaml").write_text(
        f"steps:\n  - id: slow\n    action: docker.run\n    timeout_sec: 2\n"
        f"    with:\n      image: {IMAGE}\n      pull: never\n      command: [sh, -c, 'sleep 300 # {marker}']\n"
    )
    r = run_dagctl(["run", "t.yaml"], tmp_path, podman)
    assert r.code == 1 and "timed out" in r.stderr, r.stderr
    assert _containers(podman, f"dagd-{_doc(tmp_path, podman, 't')['id']}-") == []
    alive = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)]
    assert alive == []  # the container's sleep went with it, not only the podman client


def test_ctrl_c_on_dagctl_run_ends_the_containers_processes(tmp_path: Path, podman: dict[str, str]) -> None:
    marker = f"dagd-ctr-{uuid.uuid4().hex[:8]}"
    (tmp_path / "s.yaml").write_text(
        f"steps:\n  - id: slow\n    action: docker.run\n"
        f"    with:\n      image: {IMAGE}\n      pull: never\n      command: [sh, -c, 'sleep 300 # {marker}']\n"
    )
    env = {**os.environ, **podman, "DAGD_STATE_DIR": str(tmp_path / ".dagd-state"), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dagctl", "run", "s.yaml"], cwd=tmp_path, env=env)
    try:
        wait_until(lambda: any(p.isdigit() and _cmdline_has(p, marker) for p in os.listdir("/proc")), timeout=60)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) != 0
    finally:
        proc.kill()
    assert _containers(podman, f"dagd-{_doc(tmp_path, podman, 's')['id']}-") == []
    assert [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)] == []
    assert _doc(tmp_path, podman, "s")["status"] == "aborted"


def _cmdline_has(pid: str, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_auto_remove_false_keeps_the_container_and_bad_settings_say_why(tmp_path: Path, podman: dict[str, str]) -> None:
    (tmp_path / "k.yaml").write_text(
        f"steps:\n  - id: kept\n    action: container.run\n    with:\n      image: {IMAGE}\n      pull: never\n"
        "      auto_remove: false\n      command: echo kept\n"
    )
    assert run_dagctl(["run", "k.yaml"], tmp_path, podman).code == 0
    run_id = _doc(tmp_path, podman, "k")["id"]
    kept = _containers(podman, f"dagd-{run_id}-")
    assert kept == [f"dagd-{run_id}-kept-1"]
    subprocess.run(["podman", "rm", "--force", *kept], env={**os.environ, **podman}, capture_output=True)
    for with_, why in (
        ("command: echo no image", "bad.yaml:2:5: steps[0]: action docker.run needs an image"),  # at load
        (f"image: {IMAGE}\n      pull: sometimes", "with.pull must be always, never, missing, fallback"),
        (f"image: {IMAGE}\n      volumes: [/nowhere]", "a volume is host_path:container_path"),
        (f"image: {IMAGE}\n      container_name: web", "with.image and with.container_name exclude each other"),
        ("container_name: web\n      pull: never", "with: pull cannot apply to a running container"),
        (f"image: {IMAGE}\n      network: {{Mode: host}}", "with: network is not supported by dagd yet"),
        (f"image: {IMAGE}\n      host: {{Privileged: true}}", "with.host: Privileged is not supported by dagd yet"),
        (f"image: {IMAGE}\n      pulll: never", "action docker.run does not take pulll (allowed: image, command"),
    ):
        (tmp_path / "bad.yaml").write_text(f"steps:\n  - id: bad\n    action: docker.run\n    with:\n      {with_}\n")
        r = run_dagctl(["run", "bad.yaml"], tmp_path, podman)
        assert r.code == 1 and why in r.stderr, (with_, r.stderr)


def test_a_dag_level_container_runs_every_shell_step_in_one_container(tmp_path: Path, podman: dict[str, str]) -> None:
    (tmp_path / "vol").mkdir()
    (tmp_path / "d.yaml").write_text(
        f"""working_dir: .
params: WHO=operator
env:
  - GREETING: hello
container:
  image: {IMAGE}
  pull_policy: never
  volumes: ["./vol:/data"]
  working_dir: /data
  env: ["INSIDE=${{GREETING}}-yes"]
steps:
  - name: write
    command: sh -c 'echo "$GREETING $WHO $INSIDE $(cat /etc/hostname 2>/dev/null || hostname)" > /data/out.txt; touch host-was-touched'
  - name: read
    command: cat /data/out.txt
    output: OUT
    depends: [write]
  - name: script
    depends: [read]
    script: |
      test -e /data/host-was-touched
      echo "$PWD"
"""
    )
    r = run_dagctl(["run", "d.yaml"], tmp_path, podman)
    assert r.code == 0, r.stderr
    steps = {s["step"]: s for s in _doc(tmp_path, podman, "d")["steps"]}
    read, script = steps["read"], steps["script"]
    host = (tmp_path / "vol" / "out.txt").read_text().split()
    assert host[:3] == ["hello", "operator", "hello-yes"] and read["output_value"].split()[:3] == host[:3]
    assert host[3] == read["output_value"].split()[3]  # one container: the same host name for both steps
    assert not (tmp_path / "host-was-touched").exists()  # the steps never ran on this host
    assert Path(script["stdout_path"]).read_text() == "/data\n"
    assert _containers(podman, f"dagd-{_doc(tmp_path, podman, 'd')['id']}") == []  # it went with the run
    (tmp_path / "bad.yaml").write_text(
        "container:\n  image: localhost/nowhere:1\n  pull_policy: never\nsteps:\n  - command: touch host-was-touched\n"
    )
    r = run_dagctl(["run", "bad.yaml"], tmp_path, podman)
    assert r.code == 1 and "the run's container" in r.stderr and "cannot be used" in r.stderr, r.stderr
    assert not (tmp_path / "host-was-touched").exists()


def test_a_dag_level_container_started_by_its_command_waits_until_healthy_and_logged(
    tmp_path: Path, podman: dict[str, str]
) -> None:
    (tmp_path / "h.yaml").write_text(
        f"""container:
  image: {IMAGE}
  pull_policy: never
  startup: command
  command: [sh, -c, "sleep 1; echo service booted; touch /tmp/ready; sleep 300"]
  healthcheck: {{test: [CMD-SHELL, "test -f /tmp/ready"], interval: 1s, retries: 3}}
  wait_for: healthy
  log_pattern: "^service boot"
  network: none
  restart_policy: "no"
steps:
  - run: test -f /tmp/ready && echo ready when the step began
"""
    )
    r = run_dagctl(["run", "h.yaml"], tmp_path, podman)
    assert r.code == 0, r.stderr
    step = _doc(tmp_path, podman, "h")["steps"][0]
    assert Path(step["stdout_path"]).read_text() == "ready when the step began\n"
    (tmp_path / "dies.yaml").write_text(
        f"container:\n  image: {IMAGE}\n  pull_policy: never\n  startup: command\n  command: [sh, -c, 'exit 3']\n"
        "  log_pattern: never printed\nsteps:\n  - run: touch host-was-touched\n"
    )
    r = run_dagctl(["run", "dies.yaml"], tmp_path, podman)
    assert r.code == 1 and "stopped before it was ready" in r.stderr, r.stderr
    assert not (tmp_path / "host-was-touched").exists()
    (tmp_path / "v.yaml").write_text(f"container:\n  image: {IMAGE}\n  startup: daemon\nsteps:\n  - run: echo\n")
    v = run_dagctl(["validate", "v.yaml"], tmp_path)
    assert v.code == 1 and "startup is one of keepalive, entrypoint, command" in v.stderr, v.stderr


def test_a_steps_own_container_and_exec_into_a_running_one(tmp_path: Path, podman: dict[str, str]) -> None:
    full = {**os.environ, **podman}
    target = f"dagdtest-target-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["podman", "run", "--detach", "--name", target, "--pull=never", "--entrypoint", "sleep", IMAGE, "600"],
        env=full,
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(["podman", "exec", target, "sh", "-c", "echo mark > /tmp/target"], env=full, check=True)
        (tmp_path / "s.yaml").write_text(
            f"""working_dir: .
env:
  - WHO: step
steps:
  - id: own
    run: echo "own $WHO $X $(pwd)"; touch host-was-touched
    container:
      image: {IMAGE}
      pull_policy: never
      env: ["X=1"]
      working_dir: /tmp
  - id: into
    depends: [own]
    container: {target}
    run: cat /tmp/target; echo "$WHO"
  - id: exec
    depends: [into]
    action: docker.run
    with:
      container_name: {target}
      command: [cat, /tmp/target]
      exec: {{User: nobody, WorkingDir: /tmp}}
"""
        )
        r = run_dagctl(["run", "s.yaml"], tmp_path, podman)
        assert r.code == 0, r.stderr
        steps = {s["step"]: s for s in _doc(tmp_path, podman, "s")["steps"]}
        assert Path(steps["own"]["stdout_path"]).read_text() == "own step 1 /tmp\n"
        assert Path(steps["into"]["stdout_path"]).read_text() == "mark\nstep\n"
        assert Path(steps["exec"]["stdout_path"]).read_text() == "mark\n"
        assert not (tmp_path / "host-was-touched").exists()
        assert _containers(podman, f"dagd-{_doc(tmp_path, podman, 's')['id']}-") == []
        assert _containers(podman, target) == [target]  # not dagd's: left running
        # what a step exec'd there ends with the step (a timeout here), though the container stays
        marker = f"dagd-exec-{uuid.uuid4().hex[:8]}"
        (tmp_path / "t.yaml").write_text(
            f"steps:\n  - id: slow\n    container: {target}\n    timeout_sec: 2\n"
            f"    run: sh -c 'trap \"\" TERM; sleep 300' {marker}\n"
            f"  - id: argv\n    action: docker.run\n    timeout_sec: 2\n    continue_on: failure\n"
            f"    with: {{container_name: {target}, command: [sh, -c, 'sleep 301', {marker}-argv]}}\n"
        )
        r = run_dagctl(["run", "t.yaml"], tmp_path, podman)
        assert r.code == 1 and "timed out" in r.stderr, r.stderr
        wait_until(lambda: not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)], timeout=15)
        assert _containers(podman, target) == [target]
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "0", target], env=full, capture_output=True)


ROOTLESS_USER = "dagdtest-podman"


def test_rootless_podman_when_dagd_runs_as_a_user(tmp_path: Path, podman: dict[str, str]) -> None:
    """dagctl run by a real unprivileged user (with subordinate ids, as useradd gives one): its
    container steps run in that user's rootless podman — root in the container is the user
    outside — and a timeout still ends the container's processes."""
    import pwd

    from tests import portable

    for _ in range(100):  # another test worker may hold /etc/passwd's lock
        try:
            pw = pwd.getpwnam(ROOTLESS_USER)
            break
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", ROOTLESS_USER], capture_output=True)
    else:
        pw = pwd.getpwnam(ROOTLESS_USER)
    if ROOTLESS_USER not in Path("/etc/subuid").read_text():
        base = 300000
        subprocess.run(
            [
                "usermod",
                "--add-subuids",
                f"{base}-{base + 65535}",
                "--add-subgids",
                f"{base}-{base + 65535}",
                ROOTLESS_USER,
            ],
            check=True,
        )
    runtime = portable.runtime_copy()
    work = Path(tempfile.mkdtemp(prefix="dagd-rootless-"))
    xdg = Path(f"/tmp/dagd-xdg-{pw.pw_uid}")
    try:
        xdg.mkdir(mode=0o700, exist_ok=True)
        for p in (work, xdg):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        shutil.copy(podman["CONTAINERS_CONF"], work / "containers.conf")
        marker = f"dagd-rootless-{uuid.uuid4().hex[:8]}"
        (work / "r.yaml").write_text(
            f"steps:\n  - id: inside\n    action: docker.run\n"
            f"    with: {{image: {IMAGE}, pull: never, command: [cat, /proc/self/uid_map]}}\n"
            f"  - id: slow\n    action: docker.run\n    timeout_sec: 2\n"
            f"    with: {{image: {IMAGE}, pull: never, command: [sh, -c, 'sleep 300 # {marker}']}}\n"
        )
        rootfs = work / "rootfs.tar"
        subprocess.run(
            ["podman", "save", "-o", str(rootfs), IMAGE], env={**os.environ, **podman}, check=True, capture_output=True
        )
        for p in work.iterdir():
            os.chown(p, pw.pw_uid, pw.pw_gid)
        env = [
            f"HOME={pw.pw_dir}",
            f"USER={ROOTLESS_USER}",
            f"XDG_RUNTIME_DIR={xdg}",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            f"PYTHONPATH={runtime}",
            f"CONTAINERS_CONF={work / 'containers.conf'}",
            f"DAGD_STATE_DIR={work / 'state'}",
            "NO_COLOR=1",
        ]
        as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "env", "-i", *env]
        loaded = subprocess.run(
            [*as_user, "podman", "load", "-i", str(rootfs)], cwd=work, capture_output=True, text=True
        )
        assert loaded.returncode == 0, loaded.stderr
        r = subprocess.run(
            [*as_user, "/usr/bin/python3", "-m", "dagctl", "run", "--json", "r.yaml"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=180,
        )
        doc = json.loads(r.stdout)
        steps = {s["step"]: s for s in doc["steps"]}
        uid_map = Path(steps["inside"]["stdout_path"]).read_text().split()
        assert uid_map[:3] == ["0", str(pw.pw_uid), "1"], uid_map  # root inside is the user outside
        assert steps["slow"]["exit_code"] == 124, r.stderr
        left = subprocess.run([*as_user, "podman", "ps", "-aq"], cwd=work, capture_output=True, text=True)
        assert left.stdout.strip() == ""  # the timed-out step's container is gone
        assert [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)] == []
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
        subprocess.run(["pkill", "-KILL", "-u", ROOTLESS_USER], check=False)  # podman's pause process
        subprocess.run(["rm", "-rf", str(work), str(xdg)], check=False)
