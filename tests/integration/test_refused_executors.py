"""A DAG whose `redis:` sends its steps to a Dagu executor dagd does not have is refused — its steps never run on the host instead (issue 14: one file meant
`docker system prune -a --volumes -f` for a Docker-in-Docker daemon). validate warns, `dagctl
run` exits 1 saying why, and a daemon run is recorded failed with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_dagctl
from tests.integration.test_daemon import run_ended, start_daemon, wait_until

KEYS = {  # (a DAG-level `ssh:` runs its steps over ssh now: tests/integration/test_ssh_action.py)
    "redis": "redis:\n  url: redis://127.0.0.1:6379\n",
}


def _dag(key: str) -> str:
    return f"{KEYS[key]}steps:\n  - name: prune\n    run: touch host-was-touched\n"


@pytest.mark.parametrize("key", sorted(KEYS))
def test_validate_warns_and_run_refuses(tmp_path: Path, key: str) -> None:
    (tmp_path / "d.yaml").write_text(_dag(key))
    v = run_dagctl(["validate", "d.yaml"], tmp_path)
    assert v.code == 0 and f"`{key}:` makes this DAG's steps run through Dagu's" in v.stderr, v.stderr
    r = run_dagctl(["run", "d.yaml"], tmp_path)
    assert r.code == 1 and "refusing to run prune on this host" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "host-was-touched").exists()


def test_the_daemon_records_the_refusal_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "dind.yaml").write_text(f"working_dir: {tmp_path}\n{_dag('redis')}")
    (tmp_path / "dags" / "fine.yaml").write_text("steps:\n  - run: echo fine\n")
    d = start_daemon(tmp_path)
    try:
        rid = d.ctl("enqueue", "dind").stdout.strip()
        doc = wait_until(lambda: run_ended(d, "dind", rid))
        assert isinstance(doc, dict) and doc["status"] == "failed", doc
        assert "refusing to run prune on this host" in json.dumps(doc)
        assert not (tmp_path / "host-was-touched").exists()
        rid = d.ctl("enqueue", "fine").stdout.strip()
        doc = wait_until(lambda: run_ended(d, "fine", rid))
        assert isinstance(doc, dict) and doc["status"] == "succeeded", doc
    finally:
        d.close()


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
