"""dagd against a real Dagu 1.x: the 179 example and fixture DAGs of Dagu 1.12-1.17
(../shared/dagu/legacy) run by `dagu start` (Dagu 1.30.2 from the npm registry, tests/dagu_oracle.py)
and by `dagctl run`. Exit codes, the run's and every step's status, handlers, `output:` values and
what each step waited for must agree; dagd's own record shows no step started before what it
waited for had ended.

Dagu 1.30 joined 1.22's additive chain rule, so dagd runs the files with `--classic-chain
additive` here (dagd's default for these files is 1.17's, docs/compat.md). Every file that may not
agree is listed below with why, and named in docs/compat.md; for those the test checks that the
difference is still there, so the list cannot go stale."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from tests.conftest import DAGU, ROOT
from tests.dagu_oracle import Outcome, dagu_binary, run_dagd, run_dagu

LEGACY = DAGU / "legacy"
TIMEOUT = 40.0

# Dagu's stop/restart/scheduler fixtures: they run until stopped (sleep 1000, endless repeats).
RUN_UNTIL_STOPPED = {
    "v1.12.0__cmd__testdata__restart.yaml",
    "v1.12.0__cmd__testdata__stop.yaml",
    "v1.12.0__examples__customize_signal_on_stop.yaml",
    "v1.12.0__internal__agent__testdata__handle_http.yaml",
    "v1.12.0__service__core__scheduler__entry_reader__testdata__start_stop.yaml",
    "v1.16.0__internal__digraph__testdata__repeat_policy.yaml",
    "v1.17.0__internal__testdata__cmd__restart.yaml",
    "v1.17.0__internal__testdata__digraph__repeat_policy_condition.yaml",
    "v1.17.0__internal__testdata__digraph__repeat_policy_exitcode.yaml",
}

# Deliberate differences (docs/compat.md, "Side by side with Dagu 1.30"): file → what differs.
DIFFERENT = {
    "v1.12.0__examples__example_workflow.yaml": "run status",  # cycle under 1.22 wiring: Dagu refuses
    "v1.12.0__internal__dag__testdata__home__.dagu__test.yaml": "run status",  # mailOn: {Error: …}
    "v1.17.0__internal__testdata__digraph__test.yaml": "run status",  # mailOn: {Error: …}
    "v1.16.0__internal__digraph__testdata__valid_command_in_array.yaml": "exit code",  # [echo, 1] is argv
    "v1.16.0__internal__digraph__testdata__valid_command_in_list.yaml": "exit code",
    "v1.17.0__internal__testdata__digraph__valid_command_in_array.yaml": "exit code",
    "v1.17.0__internal__testdata__digraph__valid_command_in_list.yaml": "exit code",
    "v1.16.0__internal__digraph__testdata__preconditions.yaml": "run status",  # no steps, unmet precondition
}
# Compared in full except `output:` values, which are each tool's own paths and ids, or the empty
# output Dagu records for a step neither can run.
OWN_VALUES = {
    "v1.17.0__internal__testdata__integration__special-vars.yaml",
    "v1.12.0__examples__chatgpt.yaml",
    "v1.17.0__internal__testdata__integration__shellopts.yaml",  # `ls -al /`: /proc's link count moves
}

FILES = sorted(p.name for p in LEGACY.glob("*.yaml"))


@pytest.fixture(scope="session")
def dagu() -> Path:
    return dagu_binary()


def _both(dagu: Path, file: Path, work: Path) -> tuple[Outcome, Outcome]:
    """Side by side, except for the files that share a fixed /tmp path between runs."""
    if "/tmp/" in file.read_text():
        return run_dagu(dagu, file, work / "dagu", TIMEOUT), run_dagd(file, work / "dagd", TIMEOUT)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        theirs = pool.submit(run_dagu, dagu, file, work / "dagu", TIMEOUT)
        ours = pool.submit(run_dagd, file, work / "dagd", TIMEOUT)
        return theirs.result(), ours.result()


def _comparable(o: Outcome, work: Path, name: str) -> dict[str, object]:
    out = o.comparable()
    if name in OWN_VALUES:
        del out["outputs"]
    else:  # each tool ran in its own folder: $PWD and $HOME outputs name it
        out["outputs"] = {k: v.replace(str(work), "<work>") for k, v in o.outputs.items()}
    return out


@pytest.mark.parametrize("name", [f for f in FILES if f not in RUN_UNTIL_STOPPED])
def test_dagd_runs_dagus_own_1x_files_as_dagu_does(dagu: Path, tmp_path: Path, name: str) -> None:
    theirs, ours = _both(dagu, LEGACY / name, tmp_path)
    a = _comparable(theirs, tmp_path / "dagu", name)
    b = _comparable(ours, tmp_path / "dagd", name)
    assert theirs.code != "timeout" and ours.code != "timeout", (theirs.code, ours.code)
    if name in DIFFERENT:
        what = DIFFERENT[name]
        assert a[what] != b[what], f"{name} now agrees on {what}: take it off the list (and docs/compat.md)"
        return
    differs = {k: {"dagu": a[k], "dagd": b[k]} for k in a if a[k] != b[k]}
    assert not differs, f"{name}: {differs}\ndagu: {theirs.detail}\ndagd: {ours.detail}"


def test_every_listed_file_exists_and_each_difference_is_documented() -> None:
    compat = (ROOT / "docs" / "compat.md").read_text()
    for name in (*RUN_UNTIL_STOPPED, *DIFFERENT, *OWN_VALUES):
        assert name in FILES, name
    for name in DIFFERENT:
        assert name in compat, f"docs/compat.md does not explain {name}"
    assert len(FILES) == 179  # (the 180th legacy file is a docker-compose.yml, not a DAG)
