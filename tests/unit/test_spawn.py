"""dagd._spawn, the C part that starts every step: what the child starts with, and every way it
can fail coming back as the OSError subprocess would raise (the child exits 127 and is reaped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

spawn_mod = pytest.importorskip("dagd._spawn", reason="dagd._spawn is not built (no C compiler at install)")


def _run(argv: list[str], cwd: str = "/", procs: list[int] | None = None) -> tuple[int, str]:
    r, w = os.pipe()
    try:
        pid = spawn_mod.spawn(argv[0], argv, ["PATH=/usr/bin:/bin"], cwd, 0, w, w, procs or [])
    finally:
        os.close(w)
    with os.fdopen(r) as out:
        text = out.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def test_the_child_leads_a_new_session_in_its_directory_with_only_its_three_fds(tmp_path: Path) -> None:
    leak = os.open("/dev/null", os.O_RDONLY)  # inheritable: the child must close it anyway
    os.set_inheritable(leak, True)
    try:
        code, out = _run(["/bin/sh", "-c", 'cut -d" " -f5,6 /proc/$$/stat; pwd; ls /proc/$$/fd'], str(tmp_path))
    finally:
        os.close(leak)
    pgid, sid, where, *fds = out.split()
    assert code == 0 and pgid == sid and int(sid) != os.getsid(0)
    assert where == str(tmp_path)
    assert sorted(fds) == ["0", "1", "2"]


def test_a_missing_program_or_directory_is_the_oserror_subprocess_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        _run(["/no/such/program"])
    assert exc.value.filename == "/no/such/program"
    with pytest.raises(FileNotFoundError) as exc:
        _run(["/bin/true"], str(tmp_path / "missing"))
    assert exc.value.filename == str(tmp_path / "missing")
    (tmp_path / "plain").write_text("not a program")
    with pytest.raises(PermissionError):
        _run([str(tmp_path / "plain")])


def test_a_cgroup_the_child_cannot_join_fails_the_spawn_saying_so() -> None:
    full = os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC, as a full cgroup would refuse
    try:
        with pytest.raises(OSError, match="cannot join the step's cgroup"):
            _run(["/bin/true"], procs=[full])
    finally:
        os.close(full)
