"""Child processes of steps: own session, output straight to files, group kill, rusage.

Spawned with posix_spawn(setsid=True) and watched through a pidfd, so waiting is a trio
readiness wait and the final os.wait4 gives the child's resource use. Kill means kill: the
stop signal goes to the whole process group, SIGKILL follows after a grace period, and the
group is considered gone only when /proc shows no live member of it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

import trio


@dataclass(frozen=True)
class Exit:
    code: int  # exit status, or 128 + signal number
    signal: int | None
    cpu_user: float
    cpu_sys: float
    max_rss_kb: int


def _spawn(argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int) -> int:
    """Start argv in a new session; the caller reaps it (os.wait4), not subprocess."""
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
    )
    proc.returncode = 0  # reaped by StepProcess.wait; keep Popen from waiting on it later
    return proc.pid


class StepProcess:
    """One running child. `wait()` must be awaited by its owner; `kill()` ends its whole group."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int) -> None:
        self.pid = _spawn(argv, env, cwd, stdout, stderr)
        self.pgid = self.pid
        self.pidfd = os.pidfd_open(self.pid)
        self.result: Exit | None = None

    async def wait(self) -> Exit:
        if self.result is None:
            await trio.lowlevel.wait_readable(self.pidfd)
            _, status, ru = os.wait4(self.pid, 0)
            os.close(self.pidfd)
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            code = 128 + sig if sig is not None else os.waitstatus_to_exitcode(status)
            self.result = Exit(code, sig, ru.ru_utime, ru.ru_stime, ru.ru_maxrss)
        return self.result

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    async def kill(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        """Send `sig` to the group, SIGKILL after `grace`, and wait until no member is alive."""
        with trio.CancelScope(shield=True):
            self.signal_group(sig)
            with trio.move_on_after(grace):
                while group_alive(self.pgid):
                    await trio.sleep(0.02)
            if group_alive(self.pgid):
                self.signal_group(signal.SIGKILL)
                with trio.move_on_after(5):
                    while group_alive(self.pgid):
                        await trio.sleep(0.02)
            await self.wait()


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
