"""`dagu` on steps' PATH: Dagu's CLI mapped onto dagd, so files that launch child DAGs with
`dagu start OTHER` (13 steps in 4 public repositories) work, and the child run is linked to
the run of the step that started it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.conftest import run_dagctl
from tests.integration.test_daemon import run_ended, start_daemon, wait_until

PARENT = """\
steps:
  - name: kick
    command: dagu start child -- WHO=parent
  - name: where
    command: sh -c 'command -v dagu'
"""
CHILD = 'params: WHO=nobody\nsteps:\n  - name: hello\n    command: echo "child of $WHO"\n'


def test_dagu_start_in_a_step_runs_the_child_linked_to_its_parent(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text(PARENT)
    (tmp_path / "child.yaml").write_text(CHILD)
    r = run_dagctl(["run", "--json", "parent.yaml"], tmp_path)
    assert r.code == 0, r.stderr
    parent = json.loads(r.stdout)
    child = json.loads(run_dagctl(["status", "child", "--json"], tmp_path).stdout)
    assert child["status"] == "succeeded" and child["parent_run"] == parent["id"], child
    assert Path(child["steps"][0]["stdout_path"]).read_text() == "child of parent\n"
    where = next(s for s in parent["steps"] if s["step"] == "where")
    shim = Path(where["stdout_path"]).read_text().strip()
    assert shim == str(tmp_path / ".dagd-state" / "bin" / "dagu"), shim  # not /usr/bin: a real Dagu keeps its name


def test_a_failing_child_fails_the_step_and_validate_uses_dagus_rules(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text("steps:\n  - name: boom\n    command: exit 3\n")
    (tmp_path / "named.yaml").write_text("name: other\nsteps:\n  - run: echo hi there\n")
    (tmp_path / "parent.yaml").write_text(
        "steps:\n  - name: kick\n    command: dagu start child\n"
        "  - name: check\n    command: dagu validate named.yaml\n    depends: []\n"
        "  - name: bad-flag\n    command: dagu start --name x child\n    depends: []\n"
    )
    r = run_dagctl(["run", "--json", "parent.yaml"], tmp_path)
    assert r.code == 1
    steps = {s["step"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["kick"]["status"] == "failed" and steps["kick"]["exit_code"] == 1, steps["kick"]
    assert steps["check"]["exit_code"] == 1  # dagu validate rejects an entrypoint name, as Dagu does
    assert "entrypoint document must not define name" in Path(steps["check"]["stderr_path"]).read_text()
    assert steps["bad-flag"]["exit_code"] == 2
    assert "No such option '--name'" in Path(steps["bad-flag"]["stderr_path"]).read_text()


def test_through_the_daemon_start_enqueue_and_status(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "child.yaml").write_text(CHILD)
    (dags / "parent.yaml").write_text(
        "steps:\n  - name: kick\n    command: dagu start child -- WHO=daemon\n"
        "  - name: later\n    command: dagu enqueue -p WHO=queued child\n"
        "  - name: look\n    command: dagu status child\n"
    )
    d = start_daemon(
        tmp_path, args=("--no-http", "--socket", str(tmp_path / "other.sock")), extra_env={"DAGD_SOCKET": None}
    )
    d.socket_path = tmp_path / "other.sock"
    try:
        r = d.ctl("run", "--json", "parent")
        assert r.code == 0, r.stderr
        parent = json.loads(r.stdout)
        steps = {s["step"]: s for s in parent["steps"]}
        queued = Path(steps["later"]["stdout_path"]).read_text().strip()
        doc = wait_until(lambda: run_ended(d, "child", queued))
        assert isinstance(doc, dict) and doc["status"] == "succeeded" and doc["parent_run"] == parent["id"], doc
        assert Path(doc["steps"][0]["stdout_path"]).read_text() == "child of queued\n"
        children = [h for h in json.loads(d.ctl("history", "child", "--json").stdout)]
        assert len(children) == 2 and all(c["status"] == "succeeded" for c in children), children
        assert "hello" in Path(steps["look"]["stdout_path"]).read_text()
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
        d.notify.close()
