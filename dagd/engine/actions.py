"""Builtin actions dagd runs itself (no shell): file.write, file.read, log.write, noop.

Each takes the step's resolved `with:` mapping and its working directory, writes its result to
the step's stdout log, and raises StepFailed with a clear message on bad input. Any other
action fails the step with "not supported by dagd yet" — never silently.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any, BinaryIO

from dagd.engine.step import StepFailed

SUPPORTED = frozenset({"file.write", "file.read", "log.write", "noop"})


def _path(config: Mapping[str, Any], cwd: str, key: str = "path") -> str:
    value = config.get(key)
    if not isinstance(value, str) or not value:
        raise StepFailed(f"with.{key} is required (a file path)")
    return value if os.path.isabs(value) else os.path.join(cwd, value)


def run_action(action: str, config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    if action == "noop":
        return
    if action == "log.write":
        out.write(f"{config.get('message', '')}\n".encode())
    elif action == "file.write":
        _file_write(config, cwd)
    elif action == "file.read":
        with open(_path(config, cwd), "rb") as fh:
            out.write(fh.read())
    else:  # pragma: no cover - callers check SUPPORTED first
        raise StepFailed(f"step type {action} is not supported by dagd yet")


def _file_write(config: Mapping[str, Any], cwd: str) -> None:
    path = _path(config, cwd)
    content = config.get("content", "")
    if not isinstance(content, str):
        content = json.dumps(content)
    mode_text = str(config.get("mode", "0644"))
    try:
        mode = int(mode_text.removeprefix("0o").removeprefix("0O"), 8)
    except ValueError:
        raise StepFailed(f"with.mode must be an octal mode such as 0644, got {mode_text!r}") from None
    parent = os.path.dirname(path) or "."
    if config.get("create_dirs", True):
        os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".dagd-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
