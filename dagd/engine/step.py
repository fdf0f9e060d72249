"""One step from ready to done: preconditions, attempts, retry, repeat, timeout, outputs."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from dagd import cgroups, faults
from dagd.cgroups import RunGroup, StepGroup
from dagd.engine import reattach
from dagd.engine.outputs import OutputError, parse_output_file
from dagd.engine.process import LOST, Exit, StepProcess, rusage_floor_kb
from dagd.engine.resolve import Scope, resolve
from dagd.engine.shell import CommandError, ShellChoice, choose_shell, command_argv, script_argv, script_file
from dagd.engine.status import StepStatus
from dagd.procfs import identity
from dagd.spec.model import Precondition, RetryPolicy, Step, StepKind

SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class StepResult:
    status: StepStatus = StepStatus.NOT_STARTED
    exit_code: int | None = None
    error: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    stdout_path: str = ""
    stderr_path: str = ""
    cpu_user: float = 0.0
    cpu_sys: float = 0.0
    max_rss_kb: int = 0
    memory_source: str | None = None  # where max_rss_kb comes from (cgroup file, rusage), None: unmeasured
    oom_killed: bool = False  # the kernel's OOM killer ended a process of the step
    outputs: dict[str, str] = field(default_factory=dict)  # declared outputs
    published: dict[str, str] = field(default_factory=dict)  # stdout.outputs, sub-DAG outputs
    output_value: str | None = None  # legacy `output: VAR`
    output_from: int = 0  # where in the stdout log the last attempt (retry, repeat) began
    continued: bool = False  # failed, but continue_on lets dependents run
    pgid: int | None = None
    pgid_identity: str | None = None  # boot id + leader start time (procfs.identity)
    spawn_error: str | None = None  # the program could not be started: why


@dataclass
class StepRuntime:
    """What a step needs from its run."""

    log_dir: str
    dag_shell: tuple[str, ...]
    default_shell: str | None
    errexit: bool
    max_output_size: int
    grace: float
    on_start: Callable[[StepResult], Awaitable[None]]
    classic: bool = False
    cgroup: RunGroup | None = None  # the run's cgroup: every attempt runs in a child of it
    hold_stdin: bool = False  # stdin a pipe dagd keeps open while the process runs (ssh: see sshstep)
    keep: bool = False  # runs outlive dagd: each attempt wrapped and recorded (dagd.engine.reattach)
    adopt: reattach.Attempt | None = None  # the attempt a previous dagd left running or due


class StepFailed(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def reject_unknown(action: str, config: Mapping[str, Any], allowed: Collection[str]) -> None:
    """StepFailed naming the keys of an action's `with:` it does not take, and those it does."""
    extra = sorted(str(k) for k in config if str(k) not in allowed)
    if extra:
        raise StepFailed(f"{action}: {', '.join(extra)} is not a setting (allowed: {', '.join(sorted(allowed))})")


def log_paths(log_dir: str, step: Step) -> tuple[str, str]:
    base = SAFE_NAME.sub("_", step.name)[:100] or "step"
    return os.path.join(log_dir, f"{base}.out"), os.path.join(log_dir, f"{base}.err")


async def check_preconditions(
    pre: tuple[Precondition, ...], rt: StepRuntime, shell: ShellChoice, env: dict[str, str], cwd: str, scope: Scope
) -> bool:
    """True when every precondition is met (a list is an AND, in source order).

    Raises StepFailed when one cannot be evaluated (a failing eval, an invalid regexp).
    """
    all_met = True  # every condition is evaluated, in source order, even after one fails
    for p in pre:
        met: bool
        if p.expected is None:
            text = resolve(p.condition or "", scope)
            code = await _run_quiet(command_argv(shell, text, errexit=False), env, cwd, rt.cgroup)
            met = code == 0
        else:
            if p.eval is not None:
                value = await evaluate(resolve(p.eval, scope), shell, env, cwd, rt.cgroup)
            else:
                value = resolve(p.condition or "", scope)
                if rt.classic and "`" in value:  # Dagu 1.x executed backticks in conditions
                    value = await evaluate(value, shell, env, cwd, rt.cgroup)
            met = matches(value, p.expected)
        if p.negate:
            met = not met
        all_met = all_met and met
    return all_met


def matches(value: str, expected: str) -> bool:
    lines = value.split("\n") if value else [""]
    if expected.startswith("re:"):
        try:
            rx = re.compile(expected[3:])
        except re.error as exc:
            raise StepFailed(f"precondition expected regexp is invalid: {exc}") from None
        return any(rx.search(line) for line in lines)
    return any(line == expected for line in lines)


@contextlib.contextmanager
def _contained(run: RunGroup | None, what: str) -> Iterator[StepGroup | None]:
    """A cgroup of the run's for a helper command (a precondition, an eval): nothing it starts
    outlives it. None without a run cgroup, or if one cannot be made (its process group holds it)."""
    group: StepGroup | None = None
    if run is not None:
        with contextlib.suppress(OSError):
            group = run.step(what)
    try:
        yield group
    finally:
        if group is not None:
            group.remove()


async def evaluate(text: str, shell: ShellChoice, env: dict[str, str], cwd: str, run: RunGroup | None = None) -> str:
    """Run command substitution in `text` (backticks, $(...)) through the shell; its output."""
    # The text is evaluated as the body of a double-quoted assignment, handed over in the
    # environment (never spliced into the script); an assignment's status is that of its last
    # command substitution, so a failing `cmd` fails the evaluation.
    script = 'eval "__dagd_value=\\"$DAGD_EVAL_TEXT\\"" && printf "%s" "$__dagd_value"'
    argv = command_argv(ShellChoice(shell.argv, True), script, errexit=False)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, _contained(run, "eval") as group:
        proc = StepProcess(argv, {**env, "DAGD_EVAL_TEXT": text}, cwd, out.fileno(), err.fileno(), group)
        code = (await _wait_killing(proc, 5.0)).code
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise StepFailed(f"eval failed: {stderr.decode(errors='replace').strip() or 'exit ' + str(code)}")
    return stdout.decode(errors="replace")


async def _run_quiet(argv: list[str], env: dict[str, str], cwd: str, run: RunGroup | None = None) -> int:
    try:
        with _contained(run, "precondition") as group:
            with open(os.devnull, "wb") as null:
                proc = StepProcess(argv, env, cwd, null.fileno(), null.fileno(), group)
            return (await _wait_killing(proc, 5.0)).code
    except OSError:
        return 127


async def _wait_killing(proc: StepProcess, grace: float, sig: int = signal.SIGTERM) -> Exit:
    try:
        return await proc.wait()
    except trio.Cancelled:
        await proc.kill(sig, grace)
        raise


async def _wait_while(
    proc: StepProcess, grace: float, sig: int, announce: Callable[[StepResult], Awaitable[None]], result: StepResult
) -> Exit:
    """Wait for the step while its start is being announced (committed); both are done on return.
    The announcement is shielded (a short write; 5 s at most), so a stop reaches the caller as
    the one Cancelled it would have seen without the nursery."""

    async def shielded() -> None:
        with trio.move_on_after(5) as scope:  # a stop waits for it, but never on a locked database
            scope.shield = True
            await announce(result)

    exit_: list[Exit] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(shielded)
            exit_.append(await _wait_killing(proc, grace, sig))
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return exit_[0]


async def run_attempt(
    step: Step,
    rt: StepRuntime,
    shell: ShellChoice,
    env: dict[str, str],
    cwd: str,
    texts: list[str],
    result: StepResult,
    direct: list[str] | None = None,
    resume: reattach.Attempt | None = None,
    counts: tuple[int, int, float] = (0, 0, 0.0),
) -> Exit:
    """Run the step's command(s) once, output appended to its log files; with `resume`, the
    attempt a previous dagd started is adopted where it is (`counts`: retries, repeats and start
    of the attempt, for its record)."""
    sig = getattr(signal, step.signal_on_stop or "SIGTERM", signal.SIGTERM)
    last = Exit(0, None, 0.0, 0.0, 0)
    group: StepGroup | None = None
    if resume is not None and resume.pid is not None and resume.group and rt.cgroup is not None:
        group = StepGroup.recorded(rt.cgroup, resume.group)
    elif rt.cgroup is not None:
        try:
            group = rt.cgroup.step(step.name)
        except OSError as exc:
            raise StepFailed(f"cannot create the step's cgroup in {rt.cgroup.path}: {exc.strerror or exc}") from None
    cpu_user = cpu_sys = 0.0
    rss = 0
    try:
        with open(result.stdout_path, "ab") as out, open(result.stderr_path, "ab") as err:
            for i, text in enumerate(texts):
                if resume is not None and i < resume.index:
                    continue  # ran (and succeeded) before the restart
                adopting = resume is not None and resume.pid is not None and i == resume.index
                argv = (
                    [] if adopting else _argv(step, rt, shell, text, result, direct)
                )  # (its script file stays as it is)
                floor = rusage_floor_kb()
                held = os.pipe2(os.O_CLOEXEC) if rt.hold_stdin and not adopting else None
                exit_file = reattach.exit_file(rt.log_dir, result.stdout_path, result.attempts, i) if rt.keep else None
                try:
                    try:
                        if adopting:
                            assert resume is not None and resume.pid is not None and exit_file is not None
                            proc = StepProcess.adopt(resume.pid, resume.identity, group, exit_file, err.fileno())
                        else:
                            record = reattach.Attempt(
                                result.attempts,
                                i,
                                counts[0],
                                counts[1],
                                result.output_from,
                                counts[2],
                                group=group.path if group is not None else None,
                                spawning=True,
                            )
                            if rt.keep:  # before the spawn: a dagd killed right after it still finds the step
                                _record(rt.log_dir, result.stdout_path, record)
                            proc = StepProcess(
                                argv, env, cwd, out.fileno(), err.fileno(), group, held and held[0], exit_file
                            )
                            faults.hit("spawned")  # the process started, its pid not yet recorded
                            if rt.keep and proc.pid > 0:  # before its start is committed: never behind the history
                                _record(
                                    rt.log_dir,
                                    result.stdout_path,
                                    dataclasses.replace(record, pid=proc.pid, identity=proc.identity, spawning=False),
                                )
                    finally:
                        if held:
                            os.close(held[0])  # the child has its copy; dagd keeps the write end
                    result.pgid, result.pgid_identity = proc.pgid, proc.identity
                    result.spawn_error = proc.spawn_error
                    if i == 0 or adopting:  # `running` is committed while the step runs, not before it may end
                        last = await _wait_while(proc, rt.grace, sig, rt.on_start, result)
                    else:
                        last = await _wait_killing(proc, rt.grace, sig)
                finally:
                    if held:
                        os.close(held[1])  # the process's stdin ends only now: it has ended
                cpu_user += last.cpu_user
                cpu_sys += last.cpu_sys
                if last.lost:
                    break
                if last.max_rss_kb > floor:  # at or under dagd's own size it says nothing (rusage_floor_kb)
                    rss = max(rss, last.max_rss_kb)
                if last.code != 0:
                    break
    finally:
        if group is not None:
            _account(group, result, cpu_user, cpu_sys, rss)
        else:
            _add_usage(result, cpu_user, cpu_sys, rss, "rusage" if rss else None)
    return last  # no fsync: the kernel has the output; like SQLite's synchronous=NORMAL, only a power
    # loss can take the last seconds of it, and an fsync per step costs milliseconds on real disks


def _argv(
    step: Step, rt: StepRuntime, shell: ShellChoice, text: str, result: StepResult, direct: list[str] | None
) -> list[str]:
    if direct is not None:  # action exec: no shell at all
        return direct
    if step.kind is StepKind.SCRIPT:
        path = script_file(
            os.path.join(rt.log_dir, "scripts"),
            f"{os.path.basename(result.stdout_path)[:-4]}.{result.attempts}.sh",
            text,
        )
        return (
            [*list(step.interpreter), path]
            if step.interpreter
            else script_argv(shell, path, text, errexit=rt.errexit, classic=rt.classic)
        )
    return command_argv(shell, text, errexit=rt.errexit)


def _account(group: StepGroup, result: StepResult, cpu_user: float, cpu_sys: float, rss: int) -> None:
    """The attempt's whole-tree figures from its cgroup (rusage where a file is missing); the
    cgroup goes."""
    u = group.usage()
    source = u.source if u.peak_kb is not None else ("rusage" if rss else None)
    _add_usage(
        result,
        u.cpu_user if u.cpu_user is not None else cpu_user,
        u.cpu_sys if u.cpu_sys is not None else cpu_sys,
        u.peak_kb if u.peak_kb is not None else rss,
        source,
    )
    if u.oom_kills:
        result.oom_killed = True
        with contextlib.suppress(OSError), open(result.stderr_path, "ab") as err:
            err.write(f"dagd: the kernel's OOM killer ended {u.oom_kills} process(es) of this step\n".encode())
    group.remove()


def _add_usage(result: StepResult, cpu_user: float, cpu_sys: float, rss: int, source: str | None) -> None:
    result.cpu_user += cpu_user
    result.cpu_sys += cpu_sys
    if rss >= result.max_rss_kb and source:
        result.max_rss_kb = rss
        result.memory_source = source


def step_texts(step: Step, scope: Scope) -> list[str]:
    if step.kind is StepKind.SCRIPT:
        return [resolve(step.script or "", scope, shell_owned=True)]
    texts = [resolve(c, scope, shell_owned=True) for c in step.commands]
    for original, text in zip(step.commands, texts, strict=True):
        if "\n" not in original and "\n" in text:
            raise StepFailed(
                "the resolved command text contains a line break; use a multi-line run (script form) instead"
            )
    return texts


async def run_commands(
    step: Step,
    rt: StepRuntime,
    env: dict[str, str],
    cwd: str,
    scope: Scope,
    result: StepResult,
    direct: list[str] | None = None,
) -> None:
    """Attempts with retry and repeat; fills `result`. Raises StepFailed on a setup error."""
    shell = choose_shell(step.shell, rt.dag_shell, rt.default_shell)
    texts = ["<exec>"] if direct is not None else step_texts(step, scope)
    output_file = env["DAGU_OUTPUT_FILE"]
    retry = step.retry_policy
    repeat = step.repeat_policy
    adopted, rt.adopt = rt.adopt, None
    if adopted is not None and adopted.spawning:  # the previous dagd stopped around the spawn
        adopted = await _settle(rt, result, adopted)
    retries = adopted.retries if adopted is not None else 0
    done_count = adopted.repeats if adopted is not None else 0
    if adopted is not None:
        result.attempts = adopted.attempt - 1
    while True:
        result.attempts += 1
        resume: reattach.Attempt | None = None
        if adopted is not None and adopted.pid is None and not adopted.spawning:  # a retry or repeat was due
            await trio.sleep(max(0.0, adopted.started_at - now()))
        elif adopted is not None:
            resume = adopted
        adopted = None
        if resume is None:
            open(output_file, "wb").close()  # a fresh output file per attempt
            with contextlib.suppress(OSError):  # `output: VAR` is what the last attempt printed
                result.output_from = os.path.getsize(result.stdout_path)
        else:
            result.output_from = resume.output_from
        begun = resume.started_at if resume is not None else now()
        timeout = step.timeout_sec - (now() - begun) if step.timeout_sec else 0.0
        timed_out = False
        try:
            with trio.fail_after(max(timeout, 0.001)) if step.timeout_sec else _no_timeout():
                exit_ = await run_attempt(
                    step, rt, shell, env, cwd, texts, result, direct, resume, (retries, done_count, begun)
                )
        except trio.TooSlowError:
            timed_out = True
            exit_ = Exit(124, None, 0, 0, 0)
        except CommandError as exc:
            raise StepFailed(str(exc)) from None
        result.exit_code = exit_.code
        if timed_out:
            raise StepFailed(f"step timed out after {step.timeout_sec:g}s", 124)
        if exit_.lost:
            raise StepFailed("lost during restart: its process ended while dagd was down and left no exit status", LOST)
        if exit_.code != 0:
            delay = retry_delay(retry, retries, exit_.code, scope)
            if delay is not None:
                retries += 1
                result.status = StepStatus.RETRYING
                _due(rt, result, retries, done_count, delay)
                await rt.on_start(result)
                await trio.sleep(delay)
                continue
        done_count += 1
        if repeat is not None and await _repeat_again(repeat, done_count, exit_.code, rt, shell, env, cwd, scope):
            interval = (
                float(resolve(str(repeat.interval_sec), scope) or 0)
                if isinstance(repeat.interval_sec, str)
                else float(repeat.interval_sec)
            )
            delay = interval * ((repeat.backoff or 1.0) ** (done_count - 1))
            if repeat.max_interval_sec:
                delay = min(delay, repeat.max_interval_sec)
            _due(rt, result, retries, done_count, delay)
            await trio.sleep(delay)
            continue
        break
    if result.exit_code != 0:
        _failed_output(step, rt, result)
        if result.oom_killed:
            raise StepFailed(
                f"exit status {result.exit_code}: the kernel's OOM killer ended it (the run's memory limit was reached)",
                result.exit_code or 1,
            )
        raise StepFailed(result.spawn_error or f"exit status {result.exit_code}", result.exit_code or 1)
    collect_outputs(step, rt, env, result)


async def _settle(rt: StepRuntime, result: StepResult, record: reattach.Attempt) -> reattach.Attempt:
    """A record written just before a spawn: did the spawn happen? The wrapper writes its pid
    beside the exit file as its first act — waited for a moment (longer while the attempt's cgroup
    holds processes). Found: the record with its pid (and its identity, if the wrapper still
    runs: else its exit file tells how it ended). Not found: the same record — spawned afresh."""
    exit_path = reattach.exit_file(rt.log_dir, result.stdout_path, record.attempt, record.index)
    busy = record.group is not None and cgroups.populated(record.group)
    with trio.move_on_after(10.0 if busy else 2.0):
        while True:
            try:
                with open(f"{exit_path}.pid", "rb") as fh:
                    pid = int(fh.read(32).strip())
                break
            except (OSError, ValueError):
                await trio.sleep(0.02)  # an outside process's file: nothing to wait on but its appearance
        ours = False
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as fh:
            ours = exit_path.encode() in fh.read()
        return dataclasses.replace(record, pid=pid, identity=identity(pid) if ours else None, spawning=False)
    return record


def _record(log_dir: str, stdout_path: str, record: reattach.Attempt) -> None:
    """The attempt's record; a full disk loses only the chance to adopt it after a restart."""
    with contextlib.suppress(OSError):
        reattach.write(log_dir, stdout_path, record)


def _due(rt: StepRuntime, result: StepResult, retries: int, repeats: int, delay: float) -> None:
    """Runs outlive dagd: the step's next attempt is due in `delay` (a dagd that restarts
    meanwhile starts it then)."""
    if rt.keep:
        _record(
            rt.log_dir, result.stdout_path, reattach.Attempt(result.attempts + 1, 0, retries, repeats, 0, now() + delay)
        )


def retry_delay(retry: RetryPolicy | None, retries: int, code: int, scope: Scope) -> float | None:
    """How long to wait before the next attempt after a failure with exit `code`, or None when
    the step's retry_policy allows no more (or does not retry that code)."""
    if retry is None or not _retryable(retry.exit_codes, code):
        return None
    limit = int(resolve(str(retry.limit), scope) or 0) if isinstance(retry.limit, str) else retry.limit
    if retries >= limit:
        return None
    interval = (
        float(resolve(str(retry.interval_sec), scope) or 0)
        if isinstance(retry.interval_sec, str)
        else retry.interval_sec
    )
    delay = float(interval) * ((retry.backoff or 1.0) ** retries)
    return min(delay, retry.max_interval_sec) if retry.max_interval_sec else delay


class _no_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _retryable(codes: tuple[int, ...], code: int) -> bool:
    return not codes or code in codes


async def _repeat_again(
    repeat: object,
    done: int,
    code: int,
    rt: StepRuntime,
    shell: ShellChoice,
    env: dict[str, str],
    cwd: str,
    scope: Scope,
) -> bool:
    from dagd.spec.model import RepeatPolicy

    assert isinstance(repeat, RepeatPolicy)
    limit = int(resolve(str(repeat.limit), scope) or 0) if isinstance(repeat.limit, str) else repeat.limit
    if limit and done >= limit:
        return False
    if repeat.condition is not None:
        cond = Precondition(condition=repeat.condition, expected=repeat.expected)
        met = await check_preconditions((cond,), rt, shell, env, cwd, scope)
    elif repeat.exit_codes:
        met = code in repeat.exit_codes
    else:
        met = code == 0
    return met if repeat.mode == "while" else not met


def _failed_output(step: Step, rt: StepRuntime, result: StepResult) -> None:
    """A failed step's `output: VAR` holds what it printed, as in Dagu: a step continuing on
    failure can read it."""
    if not step.output:
        return
    with contextlib.suppress(OSError), open(result.stdout_path, "rb") as fh:
        fh.seek(result.output_from)
        data = fh.read(rt.max_output_size + 1)
        if len(data) <= rt.max_output_size:
            result.output_value = data.decode("utf-8", errors="replace").strip()


def collect_outputs(step: Step, rt: StepRuntime, env: dict[str, str], result: StepResult) -> None:
    path = env["DAGU_OUTPUT_FILE"]
    try:
        with open(path, "rb") as fh:
            raw = fh.read(rt.max_output_size + 1)
    except OSError:
        raw = b""
    if len(raw) > rt.max_output_size:
        raise StepFailed(f"step output file exceeds max_output_size ({rt.max_output_size} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise StepFailed("step output file is not valid UTF-8") from None
    if text or step.outputs:
        try:
            result.outputs = parse_output_file(text, step.outputs)
        except OutputError as exc:
            raise StepFailed(str(exc)) from None
    if step.output:
        with open(result.stdout_path, "rb") as fh:
            fh.seek(result.output_from)
            data = fh.read(rt.max_output_size + 1)
        if len(data) > rt.max_output_size:
            raise StepFailed(f"output exceeded maximum size limit of {rt.max_output_size} bytes")
        result.output_value = data.decode("utf-8", errors="replace").strip()


def copy_redirects(step: Step, scope: Scope, cwd: str, result: StepResult) -> None:
    """`stdout:`/`stderr:` paths get the step's streams as well as its log files."""
    for target, source in ((step.stdout, result.stdout_path), (step.stderr, result.stderr_path)):
        if target:
            path = resolve(target, scope)
            path = path if os.path.isabs(path) else os.path.join(cwd, path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            shutil.copyfile(source, path)


def now() -> float:
    return time.time()
