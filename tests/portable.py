"""dagd as another local user runs it: a copy of the checkout's dagd and dagctl and of the
installed files of their runtime dependencies (their metadata's closure, nothing of the dev tools)
in a folder every user may read, run by Debian's /usr/bin/python3 (the same minor version as the
venv's, so the compiled modules load). The checkout itself may sit where other users cannot go
(CI clones into a 0700 folder)."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _closure(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        key = re.sub(r"[-_.]+", "-", n).lower()
        if key in seen:
            continue
        try:
            dist = md.distribution(n)
        except md.PackageNotFoundError:
            continue  # a requirement for other Pythons (its marker did not apply)
        seen.add(key)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    seen.discard("dagd")
    return seen


def runtime_copy() -> Path:
    """A fresh world-readable folder to put on PYTHONPATH; the caller removes it."""
    dest = Path(tempfile.mkdtemp(prefix="dagd-portable-"))
    os.chmod(dest, 0o755)
    for pkg in ("dagd", "dagctl"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for name in _closure("dagd"):
        dist = md.distribution(name)
        for f in dist.files or []:
            src = Path(str(dist.locate_file(f)))
            if not src.is_file() or "__pycache__" in f.parts or str(f).startswith(".."):
                continue
            target = dest / f
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest
