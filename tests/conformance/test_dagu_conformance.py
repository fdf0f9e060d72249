"""Dagu's black-box conformance suite, run against dagctl.

Driven by ../shared/dagu/conformance/cases.json (Dagu's own expectations in a neutral form);
every case runs in a fresh copy of its spec's testdata, as Dagu's Go harness does. Cases whose
commands dagctl does not offer yet are reported as skipped with the reason, never as passed.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DAGU, Result, run_dagctl

CASES_FILE = DAGU / "conformance" / "cases.json"
SUPPORTED = {"validate", "start"}


def _pending() -> dict[str, str]:
    path = Path(__file__).with_name("runtime_pending.txt")
    rows = [line.split("\t", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {r[0]: r[1] for r in rows}


def _needs_powershell(case: dict[str, Any]) -> bool:
    if "PowerShell" in case["id"] or "Windows" in case["id"]:
        return True
    return any("powershell" in str(a.get("env", {})).lower() for a in case.get("actions", []))


def _cases() -> list[Any]:
    if not CASES_FILE.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{CASES_FILE} not found"))]
    out = []
    pending = _pending()
    for case in json.loads(CASES_FILE.read_text()):
        marks = []
        if case["id"] in pending:
            marks.append(pytest.mark.xfail(reason=pending[case["id"]], strict=True))
        if not case.get("portable", False):
            marks.append(pytest.mark.skip(reason=f"not portable: {case.get('why')}"))
        elif _needs_powershell(case) and not (shutil.which("pwsh") or shutil.which("powershell")):
            marks.append(
                pytest.mark.skip(reason="needs PowerShell, not installed (Dagu's own test skips without it too)")
            )
        else:
            commands = {a["run"][0] for a in case["actions"] if "run" in a}
            if not commands <= SUPPORTED:
                marks.append(
                    pytest.mark.skip(reason=f"needs dagctl {' '.join(sorted(commands - SUPPORTED))} (engine issue)")
                )
        out.append(pytest.param(case, id=case["id"], marks=marks))
    return out


def _expect(method: str, r: Result, args: list[Any]) -> None:
    if method == "ExpectExitCode":
        assert r.code == args[0], r.stderr
    elif method == "ExpectNonZeroExitCode":
        assert r.code != 0, r.stderr
    elif method == "ExpectStdout":
        assert r.stdout == args[0]
    elif method == "ExpectStderr":
        assert r.stderr == args[0]
    elif method == "ExpectStderrNotEmpty":
        assert r.stderr != ""
    elif method == "ExpectStderrContains":
        for part in args:
            assert part in r.stderr, f"{part!r} not in stderr:\n{r.stderr}"
    elif method == "ExpectStderrNotContains":
        for part in args:
            assert part not in r.stderr, f"{part!r} in stderr:\n{r.stderr}"
    elif method == "ExpectStdoutNotContains":
        for part in args:
            assert part not in r.stdout
    else:  # pragma: no cover - a new expectation kind must be implemented, not ignored
        raise AssertionError(f"unknown expectation {method}")


def _file(method: str, wd: Path, args: list[Any]) -> None:
    path = wd / args[0] if args else wd
    if method == "Mkdir":
        path.mkdir(parents=True, exist_ok=True)
    elif method in ("WriteFile", "WriteExecutable"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(args[1])
        if method == "WriteExecutable":
            path.chmod(0o755)
    elif method == "ExpectNoFile":
        assert not path.exists(), f"{args[0]} exists"
    elif method == "ExpectFileContent":
        assert path.read_text() == args[1]
    elif method == "ExpectTextFileContent":
        assert path.read_text().replace("\r\n", "\n") == args[1]
    elif method == "ExpectFileContains":
        text = path.read_text()
        for part in args[1:]:
            assert part in text
    elif method == "ExpectFileNotContains":
        text = path.read_text()
        for part in args[1:]:
            assert part not in text
    elif method == "ExpectGlobFileContent":
        matches = glob.glob(str(wd / args[0]))
        assert len(matches) == 1, matches
        assert Path(matches[0]).read_text() == args[1]
    else:  # pragma: no cover
        raise AssertionError(f"unknown file action {method}")


@pytest.mark.parametrize("case", _cases())
def test_conformance(case: dict[str, Any], tmp_path: Path) -> None:
    wd = tmp_path / "project"
    shutil.copytree(DAGU / "conformance" / case["spec"] / "testdata", wd)
    results: dict[str, Result] = {}
    for action in case["actions"]:
        if "run" in action:
            args = [a.replace("{PROJECT}", str(wd)) for a in action["run"]]
            if args[0] == "start":
                args[0] = "run"
            elif args[0] == "validate":  # `dagu validate`'s exact rules (plain dagctl validate warns)
                args.insert(1, "--strict")
            env = {k: v.replace("{PROJECT}", str(wd)) for k, v in action.get("env", {}).items()}
            results[action["result"]] = run_dagctl(args, wd, env)
        elif "expect" in action:
            _expect(action["expect"], results[action["of"]], action["args"])
        else:
            _file(action["file"], wd, action["args"])


def _legacy() -> list[Any]:
    folder = DAGU / "legacy"
    invalid_list = Path(__file__).with_name("legacy_invalid.txt")
    invalid = {
        line.split("\t")[0]: line.split("\t")[1]
        for line in invalid_list.read_text().splitlines()
        if line and not line.startswith("#")
    }
    files = sorted(p.name for p in folder.glob("*.y*ml")) if folder.exists() else []
    return [pytest.param(f, f in invalid, id=f) for f in files]


@pytest.mark.parametrize(("name", "expected_invalid"), _legacy())
def test_legacy_dag_validates(name: str, expected_invalid: bool, tmp_path: Path) -> None:
    """Every Dagu 1.x file loads unmodified, except the listed deliberately invalid ones.

    They are Dagu 1.12-1.17 files by provenance, so they are validated as such (--dialect
    classic): Dagu 1.x loaded documents without steps, which its own tests use as fragments.
    """
    shutil.copy(DAGU / "legacy" / name, tmp_path / name)
    r = run_dagctl(["validate", "--dialect", "classic", name], tmp_path)
    if expected_invalid:
        assert r.code == 1 and r.stderr.strip(), "listed as invalid but it validates: drop it from legacy_invalid.txt"
    else:
        assert r.code == 0, r.stderr


def test_legacy_invalid_list_names_existing_files() -> None:
    names = {p.name for p in (DAGU / "legacy").glob("*.y*ml")}
    listed = [
        line.split("\t")[0]
        for line in Path(__file__).with_name("legacy_invalid.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    if os.path.isdir(DAGU / "legacy"):
        assert set(listed) <= names
