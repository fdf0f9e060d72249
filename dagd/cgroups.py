"""Containment: every run in its own cgroup, every step attempt in a child of it.

Where dagd can write to a cgroup v2 hierarchy (systemd's `Delegate=yes`, or root with a writable
cgroup2 mount), it keeps its own subtree beside or below itself:

    <dagd's cgroup>/daemon                         dagd, when it had to leave its cgroup so that
                                                   controllers could be enabled for runs
    <dagd's cgroup>/dagd.<key>.<pid>.<ticks>/<run id>/<n>.<step>   one per step attempt (key: the state dir)

A step joins its cgroup before it execs (`join_argv`), so nothing it starts can escape; stop and
timeouts end the whole cgroup (`cgroup.kill`), and an attempt is over when its cgroup is empty.
CPU comes from the cgroup's cpu.stat; peak memory from memory.peak where the memory controller
is on v2, or from a v1 memory hierarchy on hybrid hosts; limits (Dagu's `resources`) go to
memory.max/cpu.max, or their v1 forms. Without a writable cgroup v2, runs are held by process
groups and the subreaper, and `summary` says so.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import hashlib
import os
import re
import select
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType

from dagd import faults
from dagd.procfs import start_time
from dagd.spec.model import ResourceLimits

native_spawn: ModuleType | None
try:  # vfork + join + exec in C (setup.py builds it where a compiler is found)
    import dagd._spawn as native_spawn
except ImportError:  # hosts that installed without a C compiler
    native_spawn = None

CONTROLLERS = ("memory", "pids", "cpu")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# The step's first process writes its own pid ("0") into every cgroup.procs it must join, then
# execs the step: a fork the step makes later is born inside. One exec of sh per step; exit 125
# (and sh's message on stderr) if the cgroup cannot be joined.
JOIN_SCRIPT = 'while [ "$1" != -- ]; do echo 0 >"$1" || exit 125; shift; done; shift; exec "$@"'


def use_native() -> bool:
    """Steps join their cgroup from the vfork child (dagd._spawn); DAGD_SPAWN=trampoline forces the
    sh trampoline (to compare, or to test both paths)."""
    return native_spawn is not None and os.environ.get("DAGD_SPAWN", "") != "trampoline"


def _read(path: str) -> str:
    with open(path, encoding="ascii") as fh:
        return fh.read()


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _flat(path: str) -> dict[str, int]:
    """A flat-keyed cgroup file (`key value` lines) as a dict; {} if it cannot be read."""
    try:
        text = _read(path)
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def _mounts() -> tuple[str | None, dict[str, str]]:
    """(the cgroup2 mount point, {v1 controller: its mount point})."""
    v2: str | None = None
    v1: dict[str, str] = {}
    try:
        lines = _read("/proc/self/mountinfo").splitlines()
    except OSError:
        return None, {}
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        point = fields[4].replace("\\040", " ")
        if rest[0] == "cgroup2" and v2 is None:
            v2 = point
        elif rest[0] == "cgroup":
            for opt in rest[2].split(","):
                if opt in CONTROLLERS and opt not in v1:
                    v1[opt] = point
    return v2, v1


def _own_paths() -> tuple[str | None, dict[str, str]]:
    """This process's cgroup on v2 ("0::/path") and on each v1 controller hierarchy."""
    v2: str | None = None
    v1: dict[str, str] = {}
    try:
        lines = _read("/proc/self/cgroup").splitlines()
    except OSError:
        return None, {}
    for line in lines:
        _, names, path = line.split(":", 2)
        if names == "":
            v2 = path
        for n in names.split(","):
            if n in CONTROLLERS:
                v1[n] = path
    return v2, v1


@dataclass
class Tree:
    """This dagd's own subtree: runs are created below `root`."""

    root: str  # on the v2 hierarchy
    controllers: frozenset[str]  # v2 controllers enabled for runs and steps
    v1: dict[str, str] = field(default_factory=dict)  # hybrid hosts: controller → this dagd's dir on v1
    moved: bool = False  # dagd moved itself to <its cgroup>/daemon
    key: str = ""  # tree_key of its state directory

    def memory_source(self) -> str | None:
        if "memory" in self.controllers:
            return "cgroup v2 memory.peak"
        if "memory" in self.v1:
            return "cgroup v1 memory.max_usage_in_bytes"
        return None

    def describe(self) -> str:
        have = [f"{c} (v2)" for c in CONTROLLERS if c in self.controllers]
        have += [f"{c} (v1)" for c in CONTROLLERS if c in self.v1]
        ctrl = ", ".join(have) if have else "none: containment and CPU only"
        how = (
            "vfork, joined before exec"
            if use_native()
            else "a sh trampoline joins before exec"
            + (" (dagd._spawn is not built)" if native_spawn is None else " (DAGD_SPAWN=trampoline)")
        )
        return f"cgroups: every run in its own cgroup under {self.root}; controllers {ctrl}; steps: {how}"

    def run(self, run_id: str) -> RunGroup:
        return RunGroup(self, _SAFE.sub("_", run_id)[:200] or "run")

    def close(self) -> None:
        """At exit: remove what is empty (a run still going keeps its cgroup)."""
        for d in [self.root, *self.v1.values()]:
            remove_tree(d)


@dataclass
class Containment:
    tree: Tree | None
    summary: str  # one sentence: what dagd contains and how, on this host


_current: Containment | None = None


def current(state_dir: str = "") -> Containment:
    """The containment of this process, set up on first use (`state_dir` names its subtree)."""
    global _current
    if _current is None:
        _current = setup(state_dir)
        if _current.tree is not None:
            atexit.register(_current.tree.close)
    return _current


def tree_key(state_dir: str) -> str:
    """Which history a subtree belongs to: dagd processes of one state directory share it, and only
    they clean up each other's leftovers (never another dagd's, say in another PID namespace)."""
    return hashlib.sha256(os.path.realpath(state_dir or ".").encode()).hexdigest()[:8]


def setup(state_dir: str = "") -> Containment:
    if os.environ.get("DAGD_CGROUPS", "").lower() in ("0", "off", "no", "false"):
        return Containment(None, "process groups: cgroups turned off (DAGD_CGROUPS=off)")
    mount, v1_mounts = _mounts()
    own, v1_own = _own_paths()
    if mount is None or own is None:
        return Containment(None, "process groups and the subreaper: no cgroup v2 hierarchy is mounted on this host")
    base = os.path.normpath(mount + own)
    if not os.access(base, os.W_OK) or not os.access(os.path.join(base, "cgroup.procs"), os.W_OK):
        return Containment(
            None,
            f"process groups and the subreaper: dagd's cgroup {base} is not writable by it"
            " (run dagd under systemd with Delegate=yes, or as root)",
        )
    name = f"dagd.{tree_key(state_dir)}.{os.getpid()}.{start_time(os.getpid()) or 0}"
    moved = False
    try:
        available = set(_read(os.path.join(base, "cgroup.controllers")).split()) & set(CONTROLLERS)
        if available and _alone_in(base):  # a delegated unit, or PID 1 of a container's cgroup namespace
            daemon = os.path.join(base, "daemon")
            with contextlib.suppress(FileExistsError):
                os.mkdir(daemon)
            _write(os.path.join(daemon, "cgroup.procs"), "0")
            moved = True
        enabled = _enable(base, available) if (available and (moved or own == "/")) else set()
        root = os.path.join(base, name)
        os.mkdir(root)
        enabled = _enable(root, enabled)
    except OSError as exc:
        return Containment(None, f"process groups and the subreaper: cannot create dagd's cgroup in {base}: {exc}")
    tree = Tree(root, frozenset(enabled), moved=moved, key=tree_key(state_dir))
    for ctrl in ("memory", "cpu"):  # hybrid hosts: what v2 lacks may be on a writable v1 hierarchy
        if ctrl in enabled or ctrl not in v1_mounts or ctrl not in v1_own:
            continue
        d = os.path.normpath(v1_mounts[ctrl] + v1_own[ctrl]) + "/" + name
        with contextlib.suppress(OSError):
            os.mkdir(d)
            tree.v1[ctrl] = d
    return Containment(tree, tree.describe())


def _alone_in(base: str) -> bool:
    try:
        return _read(os.path.join(base, "cgroup.procs")).split() == [str(os.getpid())]
    except OSError:
        return False


def _enable(d: str, wanted: set[str] | frozenset[str]) -> set[str]:
    """Enable `wanted` controllers for d's children; those that took."""
    done: set[str] = set()
    for c in sorted(wanted):
        with contextlib.suppress(OSError):
            _write(os.path.join(d, "cgroup.subtree_control"), f"+{c}")
            done.add(c)
    return done


def remove_tree(d: str) -> None:
    """rmdir d and its empty sub-cgroups, deepest first; non-empty ones stay."""
    if not os.path.isdir(d):
        return
    for top, dirs, _ in os.walk(d, topdown=False):
        for sub in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(top, sub))
    with contextlib.suppress(OSError):
        os.rmdir(d)


def populated(d: str) -> bool:
    return _flat(os.path.join(d, "cgroup.events")).get("populated", 0) == 1


def pids(d: str) -> list[int]:
    """Every process in d and below it."""
    out: list[int] = []
    for top, _, files in os.walk(d):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                out += [int(x) for x in _read(os.path.join(top, "cgroup.procs")).split()]
    return out


def kill_all(d: str) -> None:
    """SIGKILL every process in d and below (cgroup.kill; signals pid by pid on kernels before 5.14)."""
    try:
        _write(os.path.join(d, "cgroup.kill"), "1")
        return
    except FileNotFoundError:
        if not os.path.isdir(d):
            return
    except OSError:
        pass
    signal_all(d, signal.SIGKILL)


def signal_all(d: str, sig: int) -> None:
    for pid in pids(d):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


_libc: ctypes.CDLL | None = None
_IN_MODIFY = 0x2


def inotify(path: str) -> int | None:
    """An inotify fd watching `path` for modification (cgroup.events notifies this way)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = int(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        return None
    if _libc.inotify_add_watch(fd, path.encode(), _IN_MODIFY) < 0:
        os.close(fd)
        return None
    return fd


def kill_recorded(path: str | None) -> str | None:
    """At recovery: SIGKILL everything in the run cgroup `path` recorded by a runner that died,
    and remove it. A cgroup lives only until reboot and its path names the run and the dagd
    process that made it, so a recorded path that exists is that run's. Why not, or None."""
    if not path:
        return None
    if "/dagd." not in path or not os.path.isdir(path):
        return None
    kill_all(path)
    if populated(path):
        fd = inotify(os.path.join(path, "cgroup.events"))
        try:
            for _ in range(50):  # 5 s at most
                if not populated(path):
                    break
                if fd is None:
                    select.select([], [], [], 0.1)
                else:
                    select.select([fd], [], [], 0.1)
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 4096)
        finally:
            if fd is not None:
                os.close(fd)
    remove_tree(path)
    return f"processes left in {path} were still alive after SIGKILL" if populated(path) else None


@dataclass
class Usage:
    cpu_user: float | None  # seconds, whole tree
    cpu_sys: float | None
    peak_kb: int | None  # whole tree, None where no controller gives it
    oom_kills: int
    source: str | None  # where peak_kb comes from


class RunGroup:
    """One run's cgroup (and its v1 twins on hybrid hosts)."""

    def __init__(self, tree: Tree, name: str) -> None:
        self.tree = tree
        self.path = os.path.join(tree.root, name)
        self.v1 = {c: os.path.join(d, name) for c, d in tree.v1.items()}
        self._next = 0
        self.warnings: list[str] = []
        self.memory_limited = False

    @classmethod
    def recorded(cls, tree: Tree, path: str) -> RunGroup:
        """The cgroup a previous dagd made for a run it left running (re-attached after a
        restart): its path as recorded, beside this dagd's own subtree; its v1 twins likewise."""
        self = cls(tree, os.path.basename(path))
        self.path = path
        old_root = os.path.basename(os.path.dirname(path))
        self.v1 = {
            c: os.path.join(os.path.dirname(d), old_root, self.v1[c].rsplit("/", 1)[1]) for c, d in tree.v1.items()
        }
        with contextlib.suppress(OSError):  # step cgroups are numbered on from what is there
            for entry in os.scandir(path):
                head = entry.name.split(".", 1)[0]
                if entry.is_dir() and head.isdigit():
                    self._next = max(self._next, int(head))
        return self

    def reopen(self, limits: ResourceLimits | None = None) -> None:
        """A recorded run cgroup in use again: made again if it went (it was empty), its
        controllers and limits applied again (a restart may have had to release them)."""
        for d in (os.path.dirname(self.path), self.path):
            os.makedirs(d, exist_ok=True)
            _enable(d, self.tree.controllers)
        for d in self.v1.values():
            os.makedirs(d, exist_ok=True)
        if limits:
            self._limit(limits)

    def create(self, limits: ResourceLimits | None = None) -> None:
        try:
            os.mkdir(self.path)
        except FileNotFoundError:  # dagd's own subtree was removed from outside: made again
            os.makedirs(self.tree.root, exist_ok=True)
            _enable(self.tree.root, self.tree.controllers)
            os.mkdir(self.path)
        _enable(self.path, self.tree.controllers)
        for d in self.v1.values():
            os.makedirs(d, exist_ok=True)
        if limits:
            self._limit(limits)

    def _limit(self, limits: ResourceLimits) -> None:
        ctrl = self.tree.controllers
        if limits.memory_bytes is not None:
            self.memory_limited = "memory" in ctrl or "memory" in self.v1
            if "memory" in ctrl:
                _write(os.path.join(self.path, "memory.max"), str(limits.memory_bytes))
                with contextlib.suppress(OSError):  # no swapping around the limit
                    _write(os.path.join(self.path, "memory.swap.max"), "0")
            elif "memory" in self.v1:
                _write(os.path.join(self.v1["memory"], "memory.limit_in_bytes"), str(limits.memory_bytes))
                with contextlib.suppress(OSError):
                    _write(os.path.join(self.v1["memory"], "memory.memsw.limit_in_bytes"), str(limits.memory_bytes))
            else:
                self.warnings.append(
                    "resources.limits.memory is not enforced: no memory controller is available to dagd"
                )
        if limits.cpu_millicores is not None:
            period = 100_000
            quota = max(1000, limits.cpu_millicores * period // 1000)
            if "cpu" in ctrl:
                _write(os.path.join(self.path, "cpu.max"), f"{quota} {period}")
            elif "cpu" in self.v1:
                _write(os.path.join(self.v1["cpu"], "cpu.cfs_period_us"), str(period))
                _write(os.path.join(self.v1["cpu"], "cpu.cfs_quota_us"), str(quota))
            else:
                self.warnings.append("resources.limits.cpu is not enforced: no cpu controller is available to dagd")

    def step(self, step_name: str) -> StepGroup:
        faults.hit("step_cgroup", step_name)
        self._next += 1
        name = f"{self._next}.{_SAFE.sub('_', step_name)[:60]}"
        memory = {"memory": os.path.join(self.v1["memory"], name)} if "memory" in self.v1 else {}
        return StepGroup(self, os.path.join(self.path, name), memory)

    def remove(self) -> None:
        for d in [self.path, *self.v1.values()]:
            remove_tree(d)


class StepGroup:
    """One step attempt's cgroup: the step joins it before it execs."""

    def __init__(self, run: RunGroup, path: str, v1: Mapping[str, str], existing: bool = False) -> None:
        self.run = run
        self.path = path
        self.v1 = dict(v1)
        if existing:  # an attempt a previous dagd started (re-attached after a restart)
            return
        os.mkdir(path)
        for d in self.v1.values():
            os.mkdir(d)

    @classmethod
    def recorded(cls, run: RunGroup, path: str) -> StepGroup:
        name = os.path.basename(path)
        return cls(run, path, {"memory": os.path.join(run.v1["memory"], name)} if "memory" in run.v1 else {}, True)

    def procs_files(self) -> list[str]:
        """The cgroup.procs files the step's first process writes itself into before it execs."""
        dirs = [self.path, *self.v1.values()]
        if "cpu" in self.run.v1:  # a v1 cpu limit is the run's: steps join the run's cgroup there
            dirs.append(self.run.v1["cpu"])
        return [os.path.join(d, "cgroup.procs") for d in dirs]

    def join_argv(self, argv: list[str]) -> list[str]:
        return ["/bin/sh", "-c", JOIN_SCRIPT, "dagd-join", *self.procs_files(), "--", *argv]

    def pids(self) -> list[int]:
        return pids(self.path)

    def populated(self) -> bool:
        return populated(self.path)

    def signal(self, sig: int) -> None:
        signal_all(self.path, sig)

    def kill(self) -> None:
        kill_all(self.path)

    def usage(self) -> Usage:
        cpu = _flat(os.path.join(self.path, "cpu.stat"))
        user = cpu["user_usec"] / 1e6 if "user_usec" in cpu else None
        system = cpu["system_usec"] / 1e6 if "system_usec" in cpu else None
        peak: int | None = None
        oom = 0
        source = self.run.tree.memory_source()
        limited = self.run.memory_limited  # v1 counts only kills by this cgroup's own limit
        if "memory" in self.run.tree.controllers:
            with contextlib.suppress(OSError, ValueError):
                peak = int(_read(os.path.join(self.path, "memory.peak"))) // 1024
            oom = _flat(os.path.join(self.path, "memory.events")).get("oom_kill", 0)  # any limit above it too
        elif "memory" in self.v1:
            with contextlib.suppress(OSError, ValueError):
                peak = int(_read(os.path.join(self.v1["memory"], "memory.max_usage_in_bytes"))) // 1024
            oom = _flat(os.path.join(self.v1["memory"], "memory.oom_control")).get("oom_kill", 0) if limited else 0
        return Usage(user, system, peak, oom, source if peak is not None else None)

    def remove(self) -> None:
        for d in (self.path, *self.v1.values()):
            try:
                os.rmdir(d)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EBUSY):
                    raise


def iter_leftover_roots(tree: Tree) -> Iterator[str]:
    """Subtrees beside this dagd's own (v2 and v1) made by dagd processes of the same state
    directory that are gone."""
    for mine in (tree.root, *tree.v1.values()):
        with contextlib.suppress(OSError):
            for entry in os.scandir(os.path.dirname(mine)):
                m = re.fullmatch(rf"dagd\.{tree.key}\.(\d+)\.(\d+)", entry.name)
                if m and entry.path != mine and str(start_time(int(m[1]))) != m[2]:
                    yield entry.path


def release_for_restart() -> str:
    """`ExecStartPre=` of dagd.service (delegated, KillMode=process): runs a previous dagd left
    running still live in the unit's cgroup, below a `cgroup.subtree_control` that enables
    controllers — and cgroup v2 lets no process join a cgroup that hands controllers to its
    children, so systemd could not place the new dagd there (status=219/CGROUP). Disable the
    controllers, deepest cgroup first (the runs go on, unlimited for the moment); the new dagd
    enables them again and re-applies each re-attached run's limits. One line of what was done."""
    mount, _ = _mounts()
    own, _ = _own_paths()
    if mount is None or own is None:
        return "no cgroup v2 hierarchy: nothing to release"
    here = os.path.normpath(mount + own)
    unit = (
        os.path.dirname(here) if os.path.basename(here) == ".control" else here
    )  # systemd's place for control processes
    if not unit.endswith(".service") or not os.environ.get("INVOCATION_ID"):
        return f"{unit} is not a systemd service's cgroup: nothing released"  # never a host's or a slice's
    try:
        enabled = _read(os.path.join(unit, "cgroup.subtree_control")).split()
    except OSError as exc:
        return f"cannot read {unit}/cgroup.subtree_control: {exc.strerror or exc}"
    left = [e.path for e in os.scandir(unit) if e.is_dir() and os.path.join(unit, e.name) != here and populated(e.path)]
    if not enabled or not left:
        return (
            f"{unit}: nothing to release (controllers: {' '.join(enabled) or 'none'}; cgroups with processes"
            f" left: {len(left)}; this hook runs in {os.path.basename(here)})"
        )
    failed = []
    for top, _dirs, _files in os.walk(unit, topdown=False):  # children before their parent
        try:
            on = _read(os.path.join(top, "cgroup.subtree_control")).split()
        except OSError:
            continue
        for c in on:
            try:
                _write(os.path.join(top, "cgroup.subtree_control"), f"-{c}")
            except OSError as exc:
                failed.append(f"{top}: -{c}: {exc.strerror or exc}")
    if failed:
        return f"{unit}: controllers {' '.join(enabled)} not all released: {'; '.join(failed[:5])}"
    return f"{unit}: controllers {' '.join(enabled)} released for the new dagd; {len(left)} cgroup(s) of runs live on"


def release_main() -> int:
    """`dagd --release-cgroup`: what release_for_restart did, on stderr (the journal); exit 0."""
    import sys

    print(f"dagd: {release_for_restart()}", file=sys.stderr)
    return 0
