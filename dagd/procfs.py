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


_boot_id: str | None = None


def boot_id() -> str:
    """This boot's id (read once: it changes only with a reboot, and this process with it)."""
    global _boot_id
    if _boot_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
                _boot_id = fh.read().strip()
        except OSError:
            return "unknown-boot"
    return _boot_id


def start_time(pid: int) -> int | None:
    """When a process started, in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[19]) if len(rest) > 19 else None


def identity(pid: int) -> str | None:
    """What proves later that a process group is the one we started: this boot and the start
    time of its leader ("<boot id>/<ticks>")."""
    started = start_time(pid)
    return f"{boot_id()}/{started}" if started is not None else None


def kill_group_we_started(pgid: int | None, recorded: str | None) -> str | None:
    """SIGKILL the group `pgid` only if it is provably the one recorded: same boot, and its
    leader (if alive) started at the recorded time. While any process still has that pgid the
    kernel never hands the number out again, so a leaderless group of this boot is ours.
    Returns why it was not signalled, or None (signalled, or nothing left to signal)."""
    if not pgid or pgid <= 1:
        return None
    if not recorded or "/" not in recorded:
        return f"process group {pgid} not signalled: no identity was recorded for it"
    boot, _, ticks = recorded.partition("/")
    if boot != boot_id():
        return f"process group {pgid} not signalled: it was started before the last reboot"
    leader = start_time(pgid)
    if leader is not None and str(leader) != ticks:
        return f"process group {pgid} not signalled: its number now belongs to another process"
    kill_group(pgid)
    return None
