"""The live view as a person sees it: dagctl run in a real terminal (tmux), screen captured."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make test installs it)")


def capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
    ).stdout


def test_live_view_redraws_steps_in_place(tmp_path: Path) -> None:
    (tmp_path / "live.yaml").write_text(
        "steps:\n  - id: first\n    run: sleep 1.5\n  - id: second\n    depends: first\n    run: exit 4\n"
    )
    session = f"dagd-live-{os.getpid()}"
    cmd = f"cd {tmp_path} && DAGD_STATE_DIR={tmp_path}/state {sys.executable} -m dagctl run live.yaml; echo EXIT=$?; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", cmd], check=True)
    try:
        deadline = time.monotonic() + 20
        while not ("first" in (during := capture(session)) and "running" in during):  # the view, mid-run
            assert time.monotonic() < deadline, during
            time.sleep(0.05)
        deadline = time.monotonic() + 20
        while "EXIT=" not in (screen := capture(session)):
            assert time.monotonic() < deadline, screen
            time.sleep(0.2)
        lines = [line for line in screen.splitlines() if line.strip()]
        assert any("first" in line and "succeeded" in line for line in lines), screen
        assert any("second" in line and "failed" in line and "exit 4" in line for line in lines), screen
        assert sum("first" in line for line in lines) == 1  # redrawn in place, not appended
        assert "EXIT=1" in screen and "\x1b" not in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def test_a_daemon_run_is_followed_with_the_same_live_view(tmp_path: Path) -> None:
    from tests.integration.test_daemon import start_daemon

    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "remote.yaml").write_text(
        "steps:\n  - id: one\n    run: sleep 1\n  - id: two\n    depends: one\n    run: 'true'\n"
    )
    d = start_daemon(tmp_path)
    session = f"dagd-remote-{os.getpid()}"
    cmd = f"cd {tmp_path} && DAGD_SOCKET={tmp_path}/dagd.sock DAGD_STATE_DIR={tmp_path}/state {sys.executable} -m dagctl run remote; echo EXIT=$?; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", cmd], check=True)
    try:
        deadline = time.monotonic() + 20
        while "EXIT=" not in (screen := capture(session)):
            assert time.monotonic() < deadline, screen
            time.sleep(0.2)
        lines = [line for line in screen.splitlines() if line.strip()]
        assert any("one" in line and "succeeded" in line for line in lines), screen
        assert any("two" in line and "succeeded" in line for line in lines), screen
        assert sum(" one " in f" {line} " for line in lines) == 1 and "EXIT=0" in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
        d.proc.terminate()
        d.proc.wait(timeout=30)
