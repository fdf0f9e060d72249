"""Child processes of steps: own session and cgroup, output straight to files, kill, rusage.

Spawned by subprocess's fork_exec (vfork, new session, cwd) and watched through a pidfd, so
waiting is a trio readiness wait and the final os.wait4 gives the child's resource use. Kill
means kill: the stop signal goes to every process of the step's cgroup (or, on hosts without a
writable cgroup v2, its process group), SIGKILL follows after a grace period, and the step is
gone only when its cgroup is empty (or /proc shows no live member of its group).
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import subprocess
from dataclasses import dataclass

import trio

from dagd import cgroups, faults
from dagd.cgroups import RunGroup, StepGroup
from dagd.procfs import group_alive, identity

# pids whose owner will wait4 them: the orphan reaper leaves these alone
OWNED: set[int] = set()

# The step's first process where runs outlive dagd (on_restart: reattach): a `sh` that stays the
# parent of the step's command, lets the stop signals meant for the command pass it by (they
# reach the command too: same process group, same cgroup), writes the command's exit status to a
# file and exits with it — so a dagd that was down when the step ended still learns how it ended.
WRAP_SCRIPT = (
    'f=$1; shift; echo $$ >"$f.pid"; trap : HUP INT QUIT ABRT USR1 USR2 PIPE ALRM TERM;'
    ' "$@"; s=$?; echo "$s" >"$f"; exit "$s"'
)
LOST = 255  # the exit code recorded for a step whose process ended while dagd was down, leaving no status


@dataclass(frozen=True)
class Exit:
    code: int  # exit status, or 128 + signal number
    signal: int | None
    cpu_user: float
    cpu_sys: float
    max_rss_kb: int
    left: int = 0  # processes the step left running when it exited (ended by dagd)
    lost: bool = False  # adopted after a restart, it ended leaving no exit status


def rusage_floor_kb() -> int:
    """Linux starts a child's peak RSS at the high-water mark of the memory it execs from (a
    vfork child's is dagd's), so wait4's ru_maxrss of a step is never below dagd's VmHWM: a figure
    at or under it says nothing about the step. (Not getrusage(RUSAGE_SELF): that carries the
    peak of whatever spawned dagd, by the same rule.)"""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _program(argv0: str, env: dict[str, str]) -> str:
    """The file exec would run for argv0 (searched on the step's PATH); raises what exec would."""
    if "/" in argv0:
        if not os.path.exists(argv0):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
        if not os.access(argv0, os.X_OK) or os.path.isdir(argv0):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), argv0)
        return argv0
    found = shutil.which(argv0, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
    return found


_devnull: int | None = None


def _spawn(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    stdout: int,
    stderr: int,
    group: StepGroup | None,
    stdin: int | None = None,
) -> tuple[int, subprocess.Popen[bytes] | None]:
    """Start argv in a new session in `cwd` (and in the step's cgroup); the caller reaps it with
    os.wait4. Nothing of this process is copied (vfork), and the child itself changes directory,
    starts the session and joins the cgroup before it execs: dagd._spawn does it in C; without
    it, subprocess's fork_exec starts a `sh` that joins and execs the step (one exec more)."""
    global _devnull
    if cgroups.use_native():
        assert cgroups.native_spawn is not None
        if _devnull is None:
            _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        procs = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in group.procs_files()] if group else []
        try:
            envp = [f"{k}={v}" for k, v in env.items()]
            return cgroups.native_spawn.spawn(
                _program(argv[0], env), argv, envp, cwd, _devnull if stdin is None else stdin, stdout, stderr, procs
            ), None
        finally:
            for fd in procs:
                os.close(fd)
    if group is not None:
        _program(argv[0], env)  # what exec would say, before the trampoline hides it
        argv = group.join_argv(argv)
    popen = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
    )
    return popen.pid, popen


class StepProcess:
    """One running child. `wait()` must be awaited by its owner; `kill()` ends everything it
    started: its cgroup when it has one (nothing escapes it), else its process group."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        stdout: int,
        stderr: int,
        group: StepGroup | None = None,
        stdin: int | None = None,  # /dev/null unless given (an ssh step's held pipe)
        exit_file: str | None = None,  # runs outlive dagd: the wrapper writes the exit status here
    ) -> None:
        self.spawn_error: str | None = None  # why the program could not be started
        self.result: Exit | None = None
        self.group = group
        self.stderr = stderr
        self.exit_file = exit_file
        self.adopted = False
        self.popen: subprocess.Popen[bytes] | None = None  # kept only so that it does not reap our child
        try:
            faults.hit("spawn", env.get("DAG_NAME"), env.get("DAG_RUN_STEP_NAME"))
            if exit_file is not None:
                _program(argv[0], env)  # what exec would say, before the wrapper hides it
                argv = ["/bin/sh", "-c", WRAP_SCRIPT, "dagd-step", exit_file, *argv]
            self.pid, self.popen = _spawn(argv, env, cwd, stdout, stderr, group, stdin)
        except OSError as exc:  # no such program or directory: what a shell would say, exit 127/126
            self.spawn_error = f"cannot run {argv[0]} in {cwd}: {exc.strerror or exc}"
            with contextlib.suppress(OSError):  # a full disk must not turn this into a crash
                os.write(stderr, f"dagd: {self.spawn_error}\n".encode())
            self.pid = self.pgid = -1
            self.identity: str | None = None
            self.result = Exit(126 if isinstance(exc, PermissionError) else 127, None, 0.0, 0.0, 0)
            return
        OWNED.add(self.pid)
        self.pgid = self.pid
        self.identity = identity(self.pid)  # proves later that a pgid is still this group
        self.pidfd = os.pidfd_open(self.pid)

    @classmethod
    def adopt(cls, pid: int, recorded: str | None, group: StepGroup | None, exit_file: str, stderr: int) -> StepProcess:
        """The running step a previous dagd started (its wrapper `pid`, proven by its recorded
        identity): waited for through a pidfd (it is not our child), its exit status read from
        the file its wrapper writes."""
        self = cls.__new__(cls)
        self.spawn_error = None
        self.result = None
        self.group = group
        self.stderr = stderr
        self.exit_file = exit_file
        self.adopted = True
        self.popen = None
        self.pid = self.pgid = pid
        self.identity = recorded
        self.pidfd = -1
        if recorded is not None and identity(pid) == recorded:
            with contextlib.suppress(OSError):
                self.pidfd = os.pidfd_open(pid)
        return self

    def _read_exit(self) -> int | None:
        try:
            with open(self.exit_file or "", "rb") as fh:
                return int(fh.read(32).strip())
        except (OSError, ValueError):
            return None

    async def wait(self) -> Exit:
        """The step's exit; with a cgroup, only once nothing it started is left (what it left
        running when it exited is killed: nothing a step starts outlives it)."""
        if self.result is None and self.adopted:
            if self.pidfd >= 0:
                await trio.lowlevel.wait_readable(self.pidfd)
                os.close(self.pidfd)
                self.pidfd = -1
            code = self._read_exit()
            left = await self._end_leftovers()
            self.result = Exit(LOST if code is None else code, None, 0.0, 0.0, 0, left, lost=code is None)
        if self.result is None and self.pid > 0:
            await trio.lowlevel.wait_readable(self.pidfd)
            _, status, ru = os.wait4(self.pid, 0)
            if self.popen is not None:
                self.popen.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by subprocess
            OWNED.discard(self.pid)
            os.close(self.pidfd)
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            code = 128 + sig if sig is not None else os.waitstatus_to_exitcode(status)
            left = await self._end_leftovers()
            self.result = Exit(code, sig, ru.ru_utime, ru.ru_stime, ru.ru_maxrss, left)
        assert self.result is not None
        return self.result

    async def _end_leftovers(self) -> int:
        if self.group is None or not self.group.populated():
            return 0
        with trio.CancelScope(shield=True):
            left = self.group.pids()
            self.group.kill()
            await wait_empty(self.group.path, 5.0)
        if left:
            with contextlib.suppress(OSError):
                os.write(
                    self.stderr,
                    f"dagd: the step exited leaving {len(left)} process(es) running"
                    f" (pid {', '.join(map(str, left[:10]))}); ended them\n".encode(),
                )
        return len(left)

    def signal_group(self, sig: int) -> None:
        if self.group is not None:
            self.group.signal(sig)
        if self.pgid <= 0:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    async def kill(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        """Send `sig` to all it started, SIGKILL after `grace`, and wait until none is alive."""
        with trio.CancelScope(shield=True):
            if self.pid <= 0:
                return
            self.signal_group(sig)
            if self.group is not None:
                if not await wait_empty(self.group.path, grace):
                    self.group.kill()
                    await wait_empty(self.group.path, 5.0)
                await self.wait()
                return
            with trio.move_on_after(grace):
                while group_alive(self.pgid):
                    await trio.sleep(0.02)
            if group_alive(self.pgid):
                self.signal_group(signal.SIGKILL)
                with trio.move_on_after(5):
                    while group_alive(self.pgid):
                        await trio.sleep(0.02)
            await self.wait()


async def end_run_group(group: RunGroup, grace: float) -> None:
    """The run is over: nothing it started may be left; its cgroups go."""
    if cgroups.populated(group.path):
        cgroups.kill_all(group.path)
        await wait_empty(group.path, grace)
    group.remove()


async def wait_empty(d: str, timeout: float) -> bool:
    """Wait until no process is left in d (cgroup.events says `populated 0`); False on timeout."""
    if not cgroups.populated(d):
        return True
    fd = cgroups.inotify(os.path.join(d, "cgroup.events"))
    try:
        with trio.move_on_after(timeout):
            while cgroups.populated(d):
                if fd is None:
                    await trio.sleep(0.01)
                    continue
                await trio.lowlevel.wait_readable(fd)
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 4096)
            return True
        return not cgroups.populated(d)
    finally:
        if fd is not None:
            os.close(fd)


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
