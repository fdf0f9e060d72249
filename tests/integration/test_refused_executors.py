"""Keys whose absence of effect would be dangerous refuse the run (a step's `approval:`), and keys
dagd reads without acting on them are said at validate and at every run. (A DAG-level `ssh:`,
`redis:` or `container:` runs its steps there now — never on this host instead: test_ssh_action,
test_redis_action, test_containers.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_dagctl

STEP_REFUSED = {
    "approval": "    approval:\n      prompt: deploy to production?\n",
}


@pytest.mark.parametrize("key", sorted(STEP_REFUSED))
def test_a_step_approval_refuses_the_run(tmp_path: Path, key: str) -> None:
    # without it the step would run without the approval that guards it (a step's `container:`
    # runs in a container now: tests/integration/test_containers.py)
    (tmp_path / "d.yaml").write_text(
        f"steps:\n  - name: first\n    run: touch first-ran\n  - name: deploy\n{STEP_REFUSED[key]}    run: touch deployed\n"
    )
    v = run_dagctl(["validate", "d.yaml"], tmp_path)
    assert v.code == 0 and "d.yaml:6:" in v.stderr and f"steps[1].{key}: `{key}:`" in v.stderr, v.stderr
    r = run_dagctl(["run", "d.yaml"], tmp_path)
    assert r.code == 1 and f"step deploy: `{key}:`" in r.stderr and "refusing to run it" in r.stderr, r.stderr
    assert not (tmp_path / "deployed").exists() and not (tmp_path / "first-ran").exists()


def test_every_key_without_effect_is_a_validate_warning_and_a_notice_at_each_run(tmp_path: Path) -> None:
    from dagd.spec.keys import NO_EFFECT_ROOT, NO_EFFECT_STEP

    root = "".join(f"{k}: {{}}\n" for k in sorted(NO_EFFECT_ROOT) if k not in ("log_output", "tasks", "functions"))
    root += "log_output: merged\n"
    values = {"mail_on_error": "true", "tools": "[jqlang/jq@jq-1.7.1]"}
    step_keys = "".join(f"    {k}: {values.get(k, '{}')}\n" for k in sorted(NO_EFFECT_STEP) if k != "log_output")
    (tmp_path / "d.yaml").write_text(f"{root}steps:\n  - name: a\n    run: echo ran > {tmp_path}/out.txt\n{step_keys}")
    v = run_dagctl(["validate", "d.yaml"], tmp_path)
    assert v.code == 0, v.stderr
    for key in NO_EFFECT_ROOT:
        if key not in ("tasks", "functions"):
            assert f"`{key}:` has no effect in dagd" in v.stderr or NO_EFFECT_ROOT[key] in v.stderr, key
    for key in NO_EFFECT_STEP:
        if key != "log_output":
            assert f"steps[0].{key}: `{key}:` has no effect in dagd" in v.stderr, (key, v.stderr)
    r = run_dagctl(["run", "d.yaml"], tmp_path)
    assert r.code == 0, r.stderr
    assert "`otel:` has no effect: dagd exports no OpenTelemetry traces" in r.stderr, r.stderr
    assert "step `worker_selector:` has no effect" in r.stderr, r.stderr
    assert (tmp_path / "out.txt").read_text() == "ran\n"


def test_dag_shell_args_extend_the_dag_shell(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("shell: bash\nshell_args: [-o, pipefail]\nsteps:\n  - run: false | cat\n")
    r = run_dagctl(["run", "d.yaml"], tmp_path)
    assert r.code == 1 and "exit status 1" in r.stderr, r.stderr  # without pipefail `cat` would win
