"""Child processes of steps: own session, output straight to files, group kill, rusage.

Spawned by subprocess's fork_exec (vfork, new session, cwd) and watched through a pidfd, so waiting is a trio
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

from dagd import faults
from dagd.procfs import group_alive, identity

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


def _spawn(
    argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, rusage_fd: int | None = None
) -> subprocess.Popen[bytes]:
    """Start argv in a new session in `cwd`; the caller reaps it with os.wait4.

    subprocess's C fork_exec (vfork on Linux: nothing of this process is copied) changes the
    directory and starts the session in the child itself, so the step costs one exec — plus one
    fork+exec of GNU time, which writes the step's own rusage to a pipe, when it is installed.
    """
    prefix = (
        [TIME_PROGRAM or "time", "-q", "-f", "%M %U %S", "-o", f"/dev/fd/{rusage_fd}"] if rusage_fd is not None else []
    )
    return subprocess.Popen(
        [*prefix, *argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
        pass_fds=(rusage_fd,) if rusage_fd is not None else (),
    )


class StepProcess:
    """One running child. `wait()` must be awaited by its owner; `kill()` ends its whole group."""

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, rusage: str | None = None
    ) -> None:
        self.spawn_error: str | None = None  # why the program could not be started
        self.result: Exit | None = None
        self.rusage_fd: int | None = None
        write_fd: int | None = None
        if rusage and TIME_PROGRAM:
            self.rusage_fd, write_fd = os.pipe()
        try:
            faults.hit("spawn", env.get("DAG_NAME"), env.get("DAG_RUN_STEP_NAME"))
            self.popen: subprocess.Popen[bytes] | None = _spawn(argv, env, cwd, stdout, stderr, write_fd)
        except OSError as exc:  # no such program or directory: what a shell would say, exit 127/126
            self._close_rusage()
            self.spawn_error = f"cannot run {argv[0]} in {cwd}: {exc.strerror or exc}"
            with contextlib.suppress(OSError):  # a full disk must not turn this into a crash
                os.write(stderr, f"dagd: {self.spawn_error}\n".encode())
            self.popen = None
            self.pid = self.pgid = -1
            self.identity: str | None = None
            self.result = Exit(126 if isinstance(exc, PermissionError) else 127, None, 0.0, 0.0, 0)
            return
        finally:
            if write_fd is not None:
                os.close(write_fd)  # the child holds its copy
        self.pid = self.popen.pid
        OWNED.add(self.pid)
        self.pgid = self.pid
        self.identity = identity(self.pid)  # proves later that a pgid is still this group
        self.pidfd = os.pidfd_open(self.pid)

    async def wait(self) -> Exit:
        if self.result is None and self.popen is not None:
            await trio.lowlevel.wait_readable(self.pidfd)
            _, status, ru = os.wait4(self.pid, 0)
            self.popen.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by subprocess
            OWNED.discard(self.pid)
            os.close(self.pidfd)
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            code = 128 + sig if sig is not None else os.waitstatus_to_exitcode(status)
            self.result = Exit(code, sig, ru.ru_utime, ru.ru_stime, ru.ru_maxrss)
            measured = self._read_rusage()
            if measured is not None:
                rss, user, system = measured
                self.result = Exit(code, sig, user, system, rss)
        assert self.result is not None
        return self.result

    def _read_rusage(self) -> tuple[int, float, float] | None:
        """The step's own (peak RSS KB, user s, system s) as GNU time wrote them to the pipe."""
        if self.rusage_fd is None:
            return None
        try:
            os.set_blocking(self.rusage_fd, False)
            data = os.read(self.rusage_fd, 4096).decode(errors="replace")
            fields = data.split()
            return int(fields[-3]), float(fields[-2]), float(fields[-1])
        except (OSError, ValueError, IndexError):
            return None
        finally:
            self._close_rusage()

    def _close_rusage(self) -> None:
        if self.rusage_fd is not None:
            os.close(self.rusage_fd)
            self.rusage_fd = None

    def signal_group(self, sig: int) -> None:
        if self.pgid <= 0:
            return
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
