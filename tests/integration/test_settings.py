"""config.yaml, DAGD_* and flags: one checked schema; a wrong value is one located line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = [
    ("http_hosts: dagd.example.com\n", "config.yaml:1: http_hosts: Expected array, got str"),
    ("poll_sec: 1\nmax_concurrent_runs: true\n", "config.yaml:2: max_concurrent_runs: Expected int, got bool"),
    ("max_concurrent_runs: 0\n", "config.yaml:1: max_concurrent_runs: Expected int >= 1"),
    ("timezone: Mars/Olympus\n", "config.yaml:1: timezone: unknown time zone 'Mars/Olympus'"),
    ("\n\nfoo: 1\n", "config.yaml:3: foo: unknown setting (allowed: dags_dir,"),
    ("on_restart: maybe\n", "config.yaml:1: on_restart: Invalid enum value 'maybe' (allowed: reattach, fail, requeue)"),
    ("classic_chain: both\n", "config.yaml:1: classic_chain: Invalid enum value 'both' (allowed: replace, additive)"),
    ("http_bind: nonsense\n", "config.yaml:1: http_bind: 'nonsense' is not HOST:PORT"),
    ("- just\n- a list\n", "config.yaml:1: config.yaml must be one mapping of settings"),
    ("poll_sec: [1\n", "config.yaml:"),
    ("http_auth:\n  users:\n    bob: plaintext\n", "config.yaml:1: http_auth.users.bob: not a password hash"),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_a_wrong_setting_is_one_located_line_and_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "config.yaml").write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "dagd.daemon", "--user", "--config", str(tmp_path / "config.yaml")],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DAGD_STATE_DIR": str(tmp_path / "s")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_environment_is_checked_too(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "dagd.daemon", "--user"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DAGD_HTTP_BIND": "localhost"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "$DAGD_HTTP_BIND: 'localhost' is not HOST:PORT" in r.stderr, r.stderr
