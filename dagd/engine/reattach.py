"""What a running step leaves on disk so that a dagd started after this one can take it over.

Where runs outlive dagd (`on_restart: reattach`), every attempt of a step that runs a process
writes one small record beside the run's logs — `<log dir>/.proc/<step>.json`: its wrapper's pid
and identity (boot id + start time), its cgroup, the attempt's number, start and place in the
stdout log, the retry and repeat counts — and the step's wrapper writes the command's exit status
to `<step>.<attempt>.<n>.exit` when it ends. Between attempts (a retry or repeat waiting) the
record says when the next attempt is due. The record is written just before the spawn (the
wrapper then writes its own pid beside the exit file, as its first act) and again with the pid
right after it, always before the step's start is committed: the files are never behind the
history, and a dagd killed between the spawn and the record still finds the step. A dagd that
starts reads them (`load`) to adopt what still runs and to learn how what ended while it was down
ended.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass

FOLDER = ".proc"


@dataclass(frozen=True)
class Attempt:
    attempt: int  # the attempt's number (1 = the first)
    index: int  # which of the step's commands runs (a step with several runs them in order)
    retries: int  # retries used so far (retry_policy)
    repeats: int  # attempts done so far that counted for repeat_policy
    output_from: int  # where in the stdout log this attempt began (`output:` reads from there)
    started_at: float  # when the attempt started (its timeout counts from there); when due, if pid is None
    pid: int | None = None  # the wrapper (the step's process group); None: the attempt is not started yet
    identity: str | None = None  # procfs.identity of the wrapper
    group: str | None = None  # the attempt's cgroup
    spawning: bool = False  # written just before the spawn: the wrapper's pid is in `<exit file>.pid`, if it started


def folder(log_dir: str) -> str:
    return os.path.join(log_dir, FOLDER)


def base(stdout_path: str) -> str:
    return os.path.basename(stdout_path)[:-4]


def exit_file(log_dir: str, stdout_path: str, attempt: int, index: int) -> str:
    return os.path.join(folder(log_dir), f"{base(stdout_path)}.{attempt}.{index}.exit")


def write(log_dir: str, stdout_path: str, record: Attempt) -> None:
    """Replace the step's record (atomically: a reader sees the old or the new one)."""
    d = folder(log_dir)
    os.makedirs(d, mode=0o750, exist_ok=True)
    path = os.path.join(d, f"{base(stdout_path)}.json")
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(record)))
    os.replace(tmp, path)


def clear(log_dir: str, stdout_path: str) -> None:
    """The step is done: no record of it may be adopted."""
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(folder(log_dir), f"{base(stdout_path)}.json"))


def load(log_dir: str, stdout_path: str) -> Attempt | None:
    """The step's record, or None (no process of it ran, or it is done, or the file is damaged)."""
    try:
        with open(os.path.join(folder(log_dir), f"{base(stdout_path)}.json"), encoding="utf-8") as fh:
            raw = json.loads(fh.read(64 * 1024))
        return Attempt(**raw)
    except (OSError, ValueError, TypeError):
        return None


# Runs kept for the next dagd, by id: `<state dir>/kept/<run id>` holds the run's log folder. A
# starting dagd ends the processes of each one it does not re-attach (a run another node took
# over while this one was down, a run it recorded failed): no step outlives its run.


def register(state_dir: str, run_id: str, log_dir: str) -> None:
    d = os.path.join(state_dir, "kept")
    os.makedirs(d, mode=0o750, exist_ok=True)
    with open(os.path.join(d, run_id), "w", encoding="utf-8") as fh:
        fh.write(log_dir)


def unregister(state_dir: str, run_id: str, log_dir: str) -> None:
    """The run has ended here: nothing of it is left to re-attach."""
    import shutil

    shutil.rmtree(folder(log_dir), ignore_errors=True)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(state_dir, "kept", run_id))


def registered(state_dir: str) -> dict[str, str]:
    """{run id: log folder} of the runs a previous dagd kept."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(os.path.join(state_dir, "kept")):
            with contextlib.suppress(OSError), open(entry.path, encoding="utf-8") as fh:
                out[entry.name] = fh.read(4096).strip()
    return out


def end_left(log_dir: str) -> list[str]:
    """SIGKILL what the records of a kept run still show running — its run cgroup, and each
    wrapper's process group where its identity still matches — and say what was not signalled."""
    from dagd.cgroups import kill_recorded
    from dagd.procfs import kill_group_we_started

    notes: list[str] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder(log_dir)):
            if not entry.name.endswith(".json"):
                continue
            record = load(log_dir, entry.name[: -len(".json")] + ".out")
            if record is None or record.pid is None:
                continue
            if record.group:
                left = kill_recorded(os.path.dirname(record.group))
                if left:
                    notes.append(left)
            spared = kill_group_we_started(record.pid, record.identity)
            if spared:
                notes.append(spared)
    return notes
