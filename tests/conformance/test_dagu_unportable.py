"""Dagu conformance cases whose Go tests cases.json could not carry, ported as expectations.

(spec006's two `action: exec` cases run Dagu's own Go helper with `go run`, so they stay out:
they need a Go toolchain and Dagu's code.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import DAGU, Result, lay_out, run_dagctl

CONF = DAGU / "conformance"
pytestmark = pytest.mark.skipif(not CONF.exists(), reason=f"{CONF} not found")


def project(tmp_path: Path, spec: str) -> Path:
    wd = tmp_path / "project"
    shutil.copytree(CONF / spec / "testdata", wd)
    return wd


def test_spec011_scoped_env_resolves_before_command_substitution(tmp_path: Path) -> None:
    wd = project(tmp_path, "spec011_dynamic_evaluation")
    r = run_dagctl(["run", "params_eval_env_order.yaml"], wd, {"SPEC011_DYNAMIC_VALUE": "scope"})
    assert r.code == 0, r.stderr
    assert (wd / "env-order.txt").read_text() == "scope-prod\n"


def _no(results: list[Result], *parts: str) -> None:
    for r in results:
        for part in parts:
            assert part not in r.stdout and part not in r.stderr, part


def test_spec014_diagnostics_never_show_a_resolved_secret(tmp_path: Path) -> None:
    wd = project(tmp_path, "spec014_step_run_command")
    env = {"SPEC014_SECRET_VALUE": "SPEC014_SECRET_SENTINEL"}
    run = run_dagctl(["run", "--run-id", "spec014-secret-diagnostics", "secret_diagnostics.yaml"], wd, env)
    assert run.code == 1 and "-cecho" in run.stderr
    status = run_dagctl(["status", "--run-id", "spec014-secret-diagnostics", "secret_diagnostics.yaml"], wd, env)
    history = run_dagctl(["history", "--run-id", "spec014-secret-diagnostics", "--format", "json"], wd, env)
    assert status.code == 0 and history.code == 0, (status.stderr, history.stderr)
    _no([run, status, history], "SPEC014_SECRET_SENTINEL")


def test_spec015_diagnostics_show_the_error_but_not_the_script(tmp_path: Path) -> None:
    wd = project(tmp_path, "spec015_step_run_script")
    run = run_dagctl(["run", "--run-id", "spec015-diagnostics", "diagnostics_do_not_dump_script.yaml"], wd)
    assert run.code == 1 and "nonexistent_command_015" in run.stderr
    status = run_dagctl(["status", "--run-id", "spec015-diagnostics", "diagnostics_do_not_dump_script.yaml"], wd)
    history = run_dagctl(["history", "--run-id", "spec015-diagnostics", "--format", "json"], wd)
    assert status.code == 0 and history.code == 0
    _no(
        [run, status, history],
        "SPEC015_SCRIPT_DUMP_SENTINEL",
        "printf 'SPEC015_SCRIPT_DUMP_SENTINEL",
        "--- script content ---",
    )


@pytest.mark.parametrize(
    ("file", "code", "present", "absent", "setup"),
    [
        (
            "root_value_match_not_met_aborts.yaml",
            None,
            {"abort-ran.txt": "abort\n"},
            ["init-ran.txt", "failure-ran.txt", "main-ran.txt"],
            {},
        ),
        (
            "root_value_match_substitution_literal_aborts.yaml",
            0,
            {"abort-ran.txt": "abort\n"},
            ["init-ran.txt", "failure-ran.txt", "main-ran.txt", "root-substitution-ran.txt"],
            {},
        ),
        (
            "root_command_check_not_met_aborts.yaml",
            None,
            {"abort-ran.txt": "abort\n"},
            ["init-ran.txt", "failure-ran.txt", "main-ran.txt"],
            {},
        ),
        (
            "root_value_match_context.yaml",
            0,
            {"rootctx/root-context-ran.txt": "root-context\n"},
            [],
            {"rootctx/ready.flag": ""},
        ),
        ("value_match_eval.yaml", 0, {"workspace/eval-precondition.txt": "eval\n"}, [], {"workspace/ready.flag": ""}),
        ("value_match_step_context.yaml", 0, {"workspace/context-ran.txt": "context\n"}, [], {"workspace": None}),
    ],
)
def test_spec023_preconditions(
    tmp_path: Path,
    file: str,
    code: int | None,
    present: dict[str, str],
    absent: list[str],
    setup: dict[str, str | None],
) -> None:
    wd = project(tmp_path, "spec023_preconditions")
    lay_out(wd, setup)
    r = run_dagctl(["run", file], wd)
    if code is not None:
        assert r.code == code, r.stderr
    for name, content in present.items():
        assert (wd / name).read_text() == content
    for name in absent:
        assert not (wd / name).exists(), name
