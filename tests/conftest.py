"""Shared fixtures: where Dagu's reference material lives, and how to run dagctl for real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests import postgres

# CI runs the same examples every time: a red run must be reproducible, never a roll of the dice.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DAGD_SHARED", ROOT.parent / "shared"))
DAGU = SHARED / "dagu"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_dagctl(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Result:
    """dagctl as a user runs it: a real process, its exit code and both streams."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd / ".home"),
        "XDG_CONFIG_HOME": str(cwd / ".home" / ".config"),
        "CI": "1",
        "NO_COLOR": "1",
        "LANG": "C.UTF-8",
        "DAGD_STATE_DIR": str(cwd / ".dagd-state"),
    }
    full_env.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "dagctl", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def lay_out(root: Path, entries: dict[str, str | None]) -> None:
    """Create files (str content) and directories (None) under root."""
    for name, content in entries.items():
        path = root / name
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)


@pytest.fixture
def dagctl(tmp_path: Path):  # type: ignore[no-untyped-def]
    def call(*args: str, env: dict[str, str] | None = None) -> Result:
        return run_dagctl(list(args), tmp_path, env)

    return call


@pytest.fixture(autouse=True)
def no_step_holds_dagds_event_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every dagd a test starts watches its own event loop (DAGD_LOOP_WATCH_MS): a task step that
    held it over 100 ms of CPU fails the test, whatever the test itself checked."""
    root: Path | None = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if root is None:
        return
    held = [
        line
        for log in root.rglob("dagd.log")
        for line in log.read_text(errors="replace").splitlines()
        if "the event loop was held" in line
    ]
    assert held == [], "\n".join(held)


def run_steps(root: Path, name: str, text: str, code: int = 0) -> dict[str, dict[str, Any]]:
    """Write NAME.yaml, `dagctl run` it (exit code `code`), and return its steps' records by name."""
    import json

    (root / f"{name}.yaml").write_text(text)
    r = run_dagctl(["run", f"{name}.yaml"], root)
    assert r.code == code, r.stderr
    rid = json.loads(run_dagctl(["history", name, "--json"], root).stdout)[0]["id"]
    doc = json.loads(run_dagctl(["status", name, rid, "--json"], root).stdout)
    return {s["step"]: s for s in doc["steps"]}


@pytest.fixture(scope="module")
def pg() -> Iterator[postgres.Server]:
    """A real PostgreSQL (tests/postgres.py) for the module's tests; skipped where it is not installed."""
    if postgres.bindir() is None:
        pytest.skip("make test installs postgresql")
    yield from postgres.serve()
