"""What an explicit `depends` means in a Dagu 1.x chain DAG: replaced (1.17-1.21, the default),
or added to the previous step (1.22+), chosen by config.yaml, DAGD_CLASSIC_CHAIN or a flag; a file
using a 1.22-only construct reads as 1.22 did. Proved by real runs, not only by the plan."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from dagd.spec import load_file, load_text
from dagd.spec.model import ChainRule
from tests.conftest import DAGU, run_dagctl
from tests.integration.test_daemon import start_daemon

LEGACY = DAGU / "legacy"

# b waits until c has run: it succeeds only when c does not wait for b (the replace rule)
CONCURRENT = """\
steps:
  - name: a
    command: "true"
  - name: b
    command: sh -c 'for i in $(seq 1000); do [ -e c.done ] && exit 0; sleep 0.01; done; exit 1'
  - name: c
    command: touch c.done
    depends: a
"""


def depends(path: Path, rule: ChainRule) -> list[list[str]]:
    return [list(s.depends) for s in load_file(str(path), chain=rule).dag.steps]


def test_dagu_117s_own_example_reads_as_dagu_117_built_it() -> None:
    # Dagu 1.17's builder test asserts these dependencies for its own example file; 1.22 added
    # the previous step to every explicit depends
    path = LEGACY / "v1.17.0__internal__testdata__digraph__chain_with_explicit_depends.yaml"
    assert depends(path, ChainRule.REPLACE) == [
        [],
        ["setup"],
        ["download-a"],
        ["download-a", "download-b"],
        ["process-both"],
    ]
    assert depends(path, ChainRule.ADDITIVE)[3] == ["download-a", "download-b"]  # (the previous step is there already)
    override = LEGACY / "v1.17.0__examples__chain_with_override.yaml"  # "override chain to depend on …"
    assert depends(override, ChainRule.REPLACE)[3] == ["install-deps"]


@pytest.mark.parametrize("rule", list(ChainRule))
def test_depends_empty_opts_out_and_plain_steps_chain_under_both_rules(rule: ChainRule) -> None:
    text = "steps:\n  - {name: a, command: 'true'}\n  - {name: b, command: 'true', depends: []}\n  - {name: c, command: 'true'}\n"
    dag = load_text(text, "/tmp/x/d.yaml", chain=rule).dag
    assert [list(s.depends) for s in dag.steps] == [[], [], ["b"]]
    assert dag.chain_rule is rule


def test_under_the_122_rule_a_step_named_by_name_and_by_id_is_waited_for_once() -> None:
    # Dagu 1.17's example step_with_id.yaml: the previous step has an id, depends names it
    path = LEGACY / "v1.17.0__examples__step_with_id.yaml"
    assert depends(path, ChainRule.ADDITIVE) == [[], ["fetch-data"], ["validate-data"], ["process-data"]]


def test_a_file_using_dagu_122_syntax_reads_with_the_122_rule() -> None:
    # step shorthand and parallel groups came with 1.22, the release that made depends additive
    text = "steps:\n  - echo first\n  - {name: b, command: 'true'}\n  - {name: c, command: 'true', depends: [b]}\n  - {name: d, command: 'true', depends: [b]}\n"
    dag = load_text(text, "/tmp/x/d.yaml", chain=ChainRule.REPLACE).dag
    assert dag.chain_rule is ChainRule.ADDITIVE
    assert list(dag.steps[3].depends) == ["c", "b"]


def test_current_files_and_graph_dags_are_untouched() -> None:
    text = "type: graph\nsteps:\n  - {name: a, command: 'true'}\n  - {name: b, command: 'true'}\n  - {name: c, command: 'true', depends: a}\n"
    dag = load_text(text, "/tmp/x/d.yaml", chain=ChainRule.ADDITIVE).dag
    assert dag.chain_rule is None and [list(s.depends) for s in dag.steps] == [[], [], ["a"]]


def test_by_default_c_runs_beside_b_as_in_dagu_117(tmp_path: Path) -> None:
    (tmp_path / "chain.yaml").write_text(CONCURRENT)
    r = run_dagctl(["run", "chain.yaml"], tmp_path)
    assert r.code == 0, r.stderr
    plan = json.loads(run_dagctl(["dry", "--json", "chain.yaml"], tmp_path).stdout)
    assert plan["chainRule"] == "replace"


def test_flag_environment_and_config_choose_the_122_rule(tmp_path: Path) -> None:
    (tmp_path / "chain.yaml").write_text(CONCURRENT)

    def deps_of_c(*flags: str, env: dict[str, str] | None = None) -> list[str]:
        r = run_dagctl([*flags, "dry", "--json", "chain.yaml"], tmp_path, env)
        assert r.code == 0, r.stderr
        return next(s["depends"] for level in json.loads(r.stdout)["levels"] for s in level if s["name"] == "c")

    assert deps_of_c() == ["a"]
    assert deps_of_c("--classic-chain", "additive") == ["b", "a"]
    assert deps_of_c(env={"DAGD_CLASSIC_CHAIN": "additive"}) == ["b", "a"]
    home = tmp_path / "conf"
    home.mkdir()
    (home / "config.yaml").write_text("classic_chain: additive\n")
    assert deps_of_c(env={"DAGD_HOME": str(home)}) == ["b", "a"]
    assert deps_of_c("--classic-chain", "replace", env={"DAGD_HOME": str(home)}) == ["a"]
    # the validate report names the rule
    r = run_dagctl(["validate", "-v", "chain.yaml"], tmp_path)
    assert "explicit depends replace the previous step" in r.stderr, r.stderr


def test_the_daemon_runs_with_its_configured_rule(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "chain.yaml").write_text(
        "steps:\n  - {name: a, command: 'true'}\n  - {name: b, command: touch b.done}\n"
        "  - {name: c, command: test -e b.done, depends: a}\n"
    )
    (tmp_path / "config.yaml").write_text("classic_chain: additive\n")
    d = start_daemon(tmp_path, args=("--no-http", "--config", str(tmp_path / "config.yaml")))
    try:
        r = d.ctl("run", "chain")
        assert r.code == 0, r.stderr
        doc = json.loads(d.ctl("status", "chain", "--json").stdout)
        steps = {s["step"]: s for s in doc["steps"]}
        assert steps["c"]["started_at"] >= steps["b"]["finished_at"], steps
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
        d.notify.close()
