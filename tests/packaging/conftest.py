"""What the package tests share: one .deb built from this tree for the whole session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sh(*cmd: str | Path, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], check=check, text=True, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


def build(packager: str, out: Path, version: str | None = None) -> Path:
    args = [sys.executable, ROOT / "packaging" / "build.py", packager, "--out", out]
    if version:
        args += ["--version", version]
    sh(*args, timeout=600)
    return next(out.glob(f"dagd*.{packager}"))


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("deb", tmp_path_factory.mktemp("deb"))
