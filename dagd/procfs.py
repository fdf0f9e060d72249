"""What /proc says about processes: liveness of process groups, without signals' blind spots."""

from __future__ import annotations

import contextlib
import os
import signal


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is a member of the group (killpg(pg, 0) lies)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()
        if len(rest) > 2 and int(rest[2]) == pgid and rest[0] not in (b"Z", b"X"):
            return True
    return False


def kill_group(pgid: int) -> None:
    """SIGKILL a process group that is still alive (orphans of a runner that died)."""
    if pgid > 1 and group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
