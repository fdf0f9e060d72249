"""Child processes of steps: own session, output straight to files, group kill, rusage.

Spawned with posix_spawn(setsid=True) and watched through a pidfd, so waiting is a trio
readiness wait and the final os.wait4 gives the child's resource use. Kill means kill: the
stop signal goes to the whole process group, SIGKILL follows after a grace period, and the
group is considered gone only when /proc shows no live member of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from dataclasses import dataclass

import trio

from dagd.procfs import group_alive

ENV_PROGRAM = shutil.which("env") or "/usr/bin/env"


@dataclass(frozen=True)
class Exit:
    code: int  # exit status, or 128 + signal number
    signal: int | None
    cpu_user: float
    cpu_sys: float
    max_rss_kb: int


def _spawn(argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int) -> int:
    """Start argv in a new session with posix_spawn; the caller reaps it with os.wait4.

    posix_spawn has no working-directory action before Python 3.13, so coreutils' `env -C`
    changes directory and execs the program in the same process: nothing of this Python
    process is copied into the child, and its rusage (peak RSS) is the program's own.
    """
    return os.posix_spawn(
        ENV_PROGRAM,
        [ENV_PROGRAM, "-C", cwd, "--", *argv],
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ],
        setsid=True,
    )


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
