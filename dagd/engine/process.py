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
# Linux charges a child the memory of the process that spawned it (the exec'ing mm's high-water
# mark), so wait4's ru_maxrss for a child of dagd is never below dagd's own size. GNU time, a
# small process, forks the step and reports the step's own rusage; it is used when installed.
# pids whose owner will wait4 them: the orphan reaper leaves these alone
OWNED: set[int] = set()

TIME_PROGRAM = next((p for p in ("/usr/bin/time",) if os.access(p, os.X_OK)), None)


@dataclass(frozen=True)
class Exit:
    code: int  # exit status, or 128 + signal number
    signal: int | None
    cpu_user: float
    cpu_sys: float
    max_rss_kb: int


def _spawn(argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, rusage: str | None = None) -> int:
    """Start argv in a new session with posix_spawn; the caller reaps it with os.wait4.

    posix_spawn has no working-directory action before Python 3.13, so coreutils' `env -C`
    changes directory and execs the program in the same process: nothing of this Python
    process is copied into the child, and its rusage (peak RSS) is the program's own.
    """
    prefix = [TIME_PROGRAM, "-q", "-f", "%M %U %S", "-o", rusage] if (rusage and TIME_PROGRAM) else []
    full = [*prefix, ENV_PROGRAM, "-C", cwd, "--", *argv]
    return os.posix_spawn(
        full[0],
        full,
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

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, rusage: str | None = None
    ) -> None:
        self.rusage = rusage
        if rusage:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(rusage)
        self.pid = _spawn(argv, env, cwd, stdout, stderr, rusage)
        OWNED.add(self.pid)
        self.pgid = self.pid
        self.pidfd = os.pidfd_open(self.pid)
        self.result: Exit | None = None

    async def wait(self) -> Exit:
        if self.result is None:
            await trio.lowlevel.wait_readable(self.pidfd)
            _, status, ru = os.wait4(self.pid, 0)
            OWNED.discard(self.pid)
            os.close(self.pidfd)
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            code = 128 + sig if sig is not None else os.waitstatus_to_exitcode(status)
            self.result = Exit(code, sig, ru.ru_utime, ru.ru_stime, ru.ru_maxrss)
            measured = _read_rusage(self.rusage)
            if measured is not None:
                rss, user, system = measured
                self.result = Exit(code, sig, user, system, rss)
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


def _read_rusage(path: str | None) -> tuple[int, float, float] | None:
    """The step's own (peak RSS KB, user s, system s) as GNU time wrote them, if it did."""
    if not path:
        return None
    try:
        with open(path) as fh:
            fields = fh.read().split()
        return int(fields[-3]), float(fields[-2]), float(fields[-1])
    except (OSError, ValueError, IndexError):
        return None


def reap_orphans() -> int:
    """Reap zombie children nobody owns (orphans re-parented to us as subreaper); how many."""
    me = str(os.getpid()).encode()
    reaped = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in OWNED:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                rest = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if rest[0] == b"Z" and rest[1] == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry.name), os.WNOHANG)
                reaped += 1
    return reaped


def become_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER: orphaned descendants are re-parented to us, not to PID 1."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)
    except OSError:
        return False
