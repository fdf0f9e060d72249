"""ssh.run, sftp.upload/download and a DAG-level `ssh:` against Debian's real sshd on a loopback
port (tests/sshd.py), through this host's OpenSSH client: Dagu's resolution rules (the DAG's
variables here, the rest remote), working_dir on the remote host, `shell` with set -e, key and
password logins, known_hosts, a jump host, the 1.x spellings — and a stop, a timeout or a killed
dagd ending the remote command too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import sshd
from tests.conftest import run_dagctl
from tests.integration.test_daemon import run_ended, start_daemon, wait_until

pytestmark = pytest.mark.skipif(not os.path.exists(sshd.SSHD), reason="make test installs openssh-server")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Server]:
    yield from sshd.serve(tmp_path_factory.mktemp("sshd"))


def _steps(tmp_path: Path, name: str) -> dict[str, dict[str, Any]]:
    rid = json.loads(run_dagctl(["history", name, "--json"], tmp_path).stdout)[0]["id"]
    doc = json.loads(run_dagctl(["status", name, rid, "--json"], tmp_path).stdout)
    return {s["step"]: s for s in doc["steps"]}


def _out(step: dict[str, Any]) -> str:
    return Path(step["stdout_path"]).read_text()


def test_a_dag_level_ssh_runs_every_shell_step_remotely_as_dagu_resolves_it(
    tmp_path: Path, server: sshd.Server
) -> None:
    (tmp_path / "r.yaml").write_text(
        f"""ssh:
{server.yaml()}env:
  - GREETING: hello
steps:
  - id: mixed
    run: echo "$GREETING from $USER in $(pwd), home $HOME"
    output: MIXED
  - id: list
    run: [echo one, echo two]
  - id: where
    working_dir: /tmp
    run: pwd
  - id: fails
    run: echo out; echo err >&2; exit 3
    continue_on: failure
  - id: after
    depends: mixed
    run: echo "got $MIXED"
"""
    )
    r = run_dagctl(["run", "r.yaml"], tmp_path)
    assert r.code == 1 and "exit status 3" in r.stderr, r.stderr
    steps = _steps(tmp_path, "r")
    # the DAG's variable resolved here; $USER, $HOME and the directory are the remote user's
    assert _out(steps["mixed"]) == f"hello from {server.user} in {server.home}, home {server.home}\n"
    assert _out(steps["list"]) == "one\ntwo\n"
    assert _out(steps["where"]) == "/tmp\n"
    assert steps["fails"]["exit_code"] == 3 and _out(steps["fails"]) == "out\n"
    assert Path(steps["fails"]["stderr_path"]).read_text().startswith("err\n")
    assert _out(steps["after"]) == f"got hello from {server.user} in {server.home}, home {server.home}\n"
    assert not (tmp_path / "tmp").exists()  # nothing ran here


def test_ssh_run_with_a_shell_escapes_set_e_and_a_missing_directory(tmp_path: Path, server: sshd.Server) -> None:
    (tmp_path / "s.yaml").write_text(
        f"""ssh:
{server.yaml()}steps:
  - id: shell_escape
    action: ssh.run
    with:
      command: echo "\\$HOME"
      shell: /bin/sh
  - id: login_escape
    action: ssh.run
    with:
      command: echo "\\$HOME"
  - id: script
    action: ssh.run
    working_dir: /tmp
    with:
      shell: /bin/sh
      command: |
        printf 'in %s\\n' "$(pwd)"
        false
        echo not reached
    continue_on: failure
  - id: nowhere
    action: ssh.run
    working_dir: /dagd-no-such/dir
    with:
      command: echo not reached
    continue_on: failure
"""
    )
    r = run_dagctl(["run", "s.yaml"], tmp_path)
    steps = _steps(tmp_path, "s")
    assert _out(steps["shell_escape"]) == "$HOME\n", r.stderr  # with a shell the escape stays its own
    assert _out(steps["login_escape"]) == f"{server.home}\n"  # without, Dagu takes the backslash
    assert steps["script"]["status"] == "failed" and _out(steps["script"]) == "in /tmp\n"  # set -e
    assert steps["nowhere"]["status"] == "failed" and _out(steps["nowhere"]) == ""
    assert "/dagd-no-such/dir" in Path(steps["nowhere"]["stderr_path"]).read_text()
    assert not Path("/dagd-no-such/dir").exists()


def test_host_keys_are_checked_unless_told_not_to_and_a_password_logs_in(tmp_path: Path, server: sshd.Server) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    (tmp_path / "k.yaml").write_text(
        f"""steps:
  - id: known
    action: ssh.run
    with:
{server.yaml(strict=True, indent="      ")}      command: echo known
  - id: unknown
    action: ssh.run
    continue_on: failure
    with:
      host: 127.0.0.1
      port: {server.port}
      user: {server.user}
      key: {server.client_key}
      known_host_file: {empty}
      command: echo must not run
  - id: password
    action: ssh.run
    with:
      host: 127.0.0.1
      port: {server.port}
      user: {server.user}
      password: {server.password}
      known_host_file: {server.known_hosts}
      command: echo by password
"""
    )
    r = run_dagctl(["run", "k.yaml"], tmp_path)
    steps = _steps(tmp_path, "k")
    assert _out(steps["known"]) == "known\n", r.stderr
    assert steps["unknown"]["status"] == "failed" and steps["unknown"]["exit_code"] == 255
    assert "Host key verification failed" in Path(steps["unknown"]["stderr_path"]).read_text()
    assert _out(steps["password"]) == "by password\n"
    assert empty.read_text() == ""  # a strict check learns nothing
    assert server.password not in r.stdout + r.stderr


def test_the_1x_spelling_a_jump_host_and_sftp_both_ways(tmp_path: Path, server: sshd.Server) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "a.txt").write_text("alpha\n")
    (tmp_path / "one.txt").write_text("single\n")
    remote = f"{server.home}/dagd-sftp-{os.getpid()}"
    (tmp_path / "t.yaml").write_text(
        f"""steps:
  - name: legacy
    executor:
      type: ssh
      config:
        user: {server.user}
        ip: 127.0.0.1
        port: {server.port}
        key: {server.client_key}
        StrictHostKeyChecking: false
    command: mkdir -p {remote}
  - name: jump
    depends: legacy
    action: ssh.run
    with:
{server.yaml(indent="      ")}      bastion:
        host: 127.0.0.1
        port: {server.port}
        user: {server.user}
        key: {server.client_key}
      command: echo "via $SSH_CLIENT" | cut -d' ' -f1,2
  - name: put_dir
    depends: legacy
    action: sftp.upload
    with:
{server.yaml(indent="      ")}      source: {tmp_path}/up
      destination: {remote}/up
  - name: put_file
    depends: legacy
    executor:
      type: sftp
      config:
{server.yaml(indent="        ")}        source: {tmp_path}/one.txt
        destination: {remote}/one.txt
  - name: get_back
    depends: [put_dir, put_file]
    executor:
      type: sftp
      config:
{server.yaml(indent="        ")}        direction: download
        source: {remote}
        destination: {tmp_path}/back
  - name: missing
    depends: legacy
    continue_on: failure
    action: sftp.download
    with:
{server.yaml(indent="      ")}      source: {remote}/nothing-here
      destination: {tmp_path}/nope
"""
    )
    try:
        r = run_dagctl(["run", "t.yaml"], tmp_path)
        steps = _steps(tmp_path, "t")
        assert steps["legacy"]["status"] == "succeeded", r.stderr
        assert _out(steps["jump"]) == "via 127.0.0.1\n"  # the hop reached sshd from the jump host
        assert (tmp_path / "back" / "up" / "a.txt").read_text() == "alpha\n"
        assert (tmp_path / "back" / "one.txt").read_text() == "single\n"
        assert steps["missing"]["status"] == "failed"
        assert "nothing-here" in Path(steps["missing"]["stderr_path"]).read_text()
        assert not (tmp_path / "nope").exists()
    finally:
        subprocess.run(["rm", "-rf", remote], check=False)


def test_a_timeout_a_stop_and_a_killed_dagd_end_the_remote_command(tmp_path: Path, server: sshd.Server) -> None:
    marker = f"dagd-ssh-{os.getpid()}"
    # the remote command ignores SIGTERM, with a child that does too: only its session's SIGKILL ends it
    body = f"trap '' TERM; sh -c 'sleep 301' {marker}-x & sh -c 'sleep 302' {marker}-y; wait"

    def dag(name: str, timeout: str = "") -> str:
        return f"ssh:\n{server.yaml()}steps:\n  - name: long\n{timeout}    run: {json.dumps(body.replace('-x', '-' + name))}\n"

    (tmp_path / "t.yaml").write_text(dag("t", "    timeout_sec: 2\n"))
    r = run_dagctl(["run", "t.yaml"], tmp_path)
    assert r.code == 1 and "timed out after 2s" in r.stderr, r.stderr
    wait_until(lambda: not server.remote_pids(marker + "-t") and not server.remote_pids(marker + "-y"), timeout=15)

    # dagctl run killed with SIGKILL: its ssh client lives on, but the stdin it held is closed
    (tmp_path / "k.yaml").write_text(dag("k"))
    env = {**os.environ, "HOME": str(tmp_path / ".home"), "DAGD_STATE_DIR": str(tmp_path / ".dagd-state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagctl", "run", "k.yaml"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: server.remote_pids(marker + "-k"), timeout=20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wait_until(lambda: not server.remote_pids(marker + "-k") and not server.remote_pids(marker + "-y"), timeout=15)

    # a daemon's run stopped by dagctl stop
    (tmp_path / "daemon" / "dags").mkdir(parents=True)
    (tmp_path / "daemon" / "dags" / "s.yaml").write_text(dag("s"))
    d = start_daemon(tmp_path / "daemon")
    try:
        enqueued = d.ctl("enqueue", "s")
        assert enqueued.code == 0, enqueued.stderr
        rid = enqueued.stdout.strip()
        wait_until(lambda: server.remote_pids(marker + "-s"), timeout=20)
        assert d.ctl("stop", "s").code == 0
        doc = wait_until(lambda: run_ended(d, "s", rid))
        assert isinstance(doc, dict) and doc["status"] == "aborted", doc
        wait_until(lambda: not server.remote_pids(marker + "-s") and not server.remote_pids(marker + "-y"), timeout=15)
    finally:
        d.close()


def test_validate_checks_ssh_settings(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(
        """ssh:
  user: deploy
  hots: build.example.org
steps:
  - action: sftp.upload
    with:
      host: h
      user: u
      source: a
  - action: ssh.run
    with:
      host: h
      user: u
      comand: ls
"""
    )
    r = run_dagctl(["validate", "v.yaml"], tmp_path)
    assert r.code == 1, r.stderr
    assert "ssh.hots" in r.stderr and "unknown ssh key" in r.stderr
    assert "ssh needs user and host" in r.stderr
    assert "sftp.upload needs destination" in r.stderr
    assert "does not take comand" in r.stderr
    assert "Traceback" not in r.stderr
