"""The `dagu` command on steps' PATH: a thin script, written into dagd's state directory (never
/usr/bin, so a real Dagu install keeps its name), that runs `dagctl.dagu` with dagd's own
interpreter. `dagu start child` in a step then starts a run of dagd's `child`, linked to the run
of the step (DAG_RUN_ID)."""

from __future__ import annotations

import os
import sys

_ready: dict[str, str] = {}


def script() -> str:
    return f'#!/bin/sh\n# written by dagd: Dagu\'s CLI mapped onto dagd\nexec "{sys.executable}" -m dagctl.dagu "$@"\n'


def directory(state_dir: str) -> str:
    """The folder holding `dagu`, made (atomically, mode 0755) once per process and state dir."""
    found = _ready.get(state_dir)
    if found is not None:
        return found
    folder = os.path.join(state_dir, "bin")
    path = os.path.join(folder, "dagu")
    text = script()
    try:
        with open(path) as fh:
            current = fh.read()
    except OSError:
        current = None
    if current != text or not os.access(path, os.X_OK):
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    _ready[state_dir] = folder
    return folder
