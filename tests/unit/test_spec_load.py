"""The spec loader on its own: located errors, both dialects, hostile input."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagd.spec import Dag, Dialect, SpecError, StepKind, load_text
from dagd.spec.model import DagType


def load(text: str, **kw: Any) -> Dag:
    return load_text(text, "/tmp/x/dag.yaml", **kw).dag


def errors(text: str, **kw: Any) -> list[str]:
    with pytest.raises(SpecError) as exc:
        load_text(text, "/tmp/x/dag.yaml", **kw)
    return [d.render() for d in exc.value.diagnostics]


def test_every_error_of_a_file_is_reported_with_line_and_key() -> None:
    found = errors(
        "steps:\n"
        "  - name: a\n"
        "    run: echo a\n"
        "    retry_policy: {limit: x, interval_sec: 1}\n"
        "  - name: b\n"
        "    run: echo b\n"
        "    depends: nope\n"
        "    timeout_sec: -1\n"
    )
    assert any(":4:" in e and "steps[0].retry_policy.limit" in e and "integer" in e for e in found), found
    assert any("steps[1].depends" in e and 'non-existent step "nope"' in e for e in found), found
    assert any("steps[1].timeout_sec" in e and ">= 0" in e for e in found), found


def test_cycle_is_named() -> None:
    found = errors("type: graph\nsteps:\n  - {name: a, run: echo, depends: b}\n  - {name: b, run: echo, depends: a}\n")
    assert any("cyclic plan detected: a -> b -> a" in e for e in found), found


def test_unknown_key_lists_what_is_allowed() -> None:
    found = errors("steps:\n  - name: a\n    run: echo a\n    retries: 3\n")
    assert any("steps[0].retries" in e and "allowed:" in e and "retry_policy" in e for e in found), found


def test_invalid_cron_and_timezone_are_errors() -> None:
    assert any(
        "never fires" in e or "invalid cron" in e for e in errors('schedule: "0 0 31 2 *"\nsteps: [{run: echo x y}]\n')
    )
    assert any(
        "invalid timezone" in e for e in errors('schedule: "CRON_TZ=Mars/Base 0 9 * * *"\nsteps: [{run: echo x y}]\n')
    )


def test_cron_timezone_prefix_is_kept() -> None:
    dag = load('schedule: "CRON_TZ=Asia/Tokyo 0 9 * * *"\nsteps: [{run: echo x y}]\n')
    entry = dag.schedule.start[0]
    assert (entry.expression, entry.timezone) == ("0 9 * * *", "Asia/Tokyo")


def test_classic_camelcase_file_reads_as_dagu_1() -> None:
    dag = load(
        "steps:\n"
        "  - name: a\n    command: echo a\n    retryPolicy: {limit: 2, intervalSec: 5}\n"
        "    continueOn: {failure: true, markSuccess: true}\n"
        "  - name: b\n    run: child\n    params: X=1\n"
    )
    assert dag.dialect is Dialect.CLASSIC
    assert dag.type is DagType.CHAIN
    a, b = dag.steps
    assert a.retry_policy.limit == 2 and a.retry_policy.interval_sec == 5
    assert a.continue_on.failure and a.continue_on.mark_success
    assert b.kind is StepKind.SUB_DAG and b.sub_dag.dag == "child" and b.depends == ("a",)


def test_current_file_run_is_a_command_and_graph_is_the_default() -> None:
    dag = load("steps:\n  - name: a\n    run: echo a\n  - name: b\n    run: child\n")
    assert dag.dialect is Dialect.CURRENT
    _, b = dag.steps
    assert b.kind is StepKind.COMMAND and b.commands == ("child",) and b.depends == ()


def test_classic_bare_run_calls_a_dag_only_when_one_exists() -> None:
    text = "steps:\n  - name: a\n    run: child\n"
    assert load(text).steps[0].kind is StepKind.COMMAND
    sub = load(text, dag_exists=lambda n: n == "child").steps[0]
    assert sub.kind is StepKind.SUB_DAG


def test_dagu_1_16_file_whose_list_order_would_cycle_reads_as_parallel() -> None:
    dag = load("steps:\n  - {name: merge, command: echo, depends: [check]}\n  - {name: check, command: echo}\n")
    assert dag.step("check").depends == ()


def test_chain_with_depends_is_rejected_in_current_files() -> None:
    found = errors("type: chain\nsteps:\n  - {id: a, run: echo a b}\n  - {id: b, run: echo a b, depends: []}\n")
    assert any("depends field is not allowed" in e for e in found)


def test_multi_line_run_is_a_script_and_list_run_is_several_commands() -> None:
    dag = load("steps:\n  - name: s\n    run: |\n      echo 1\n      echo 2\n  - name: l\n    run: [echo 1, echo 2]\n")
    s, lst = dag.steps
    assert s.kind is StepKind.SCRIPT and "echo 2" in s.script
    assert lst.commands == ("echo 1", "echo 2")


def test_local_documents_become_local_dags() -> None:
    dag = load(
        "steps:\n  - {name: call, action: dag.run, with: {dag: child}}\n---\nname: child\nsteps: [{run: echo c d}]\n"
    )
    assert set(dag.local_dags) == {"child"}


def test_base_config_is_merged_under_the_dag(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("env:\n  - A=base\nhist_retention_days: 7\n")
    dag = load_text("env:\n  - B=dag\nsteps: [{run: echo a b}]\n", str(tmp_path / "d.yaml"), base_config=str(base)).dag
    assert dag.env == (("A", "base"), ("B", "dag"))
    assert dag.hist_retention_days == 7


def test_unsupported_step_types_parse_with_their_config() -> None:
    dag = load(
        "steps:\n  - name: h\n    executor: {type: http, config: {timeout: 5}}\n    command: GET https://example.com\n"
    )
    h = dag.steps[0]
    assert h.kind is StepKind.ACTION and h.action == "http.request" and h.config["timeout"] == 5


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
        + "".join(f"{c}: &{c} [{','.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
        "[" * 5000,
        "x: " + "{a: " * 200 + "1" + "}" * 200,
        "\x00\x01\x02binary",
        "steps:\n" + "  - run: echo x y\n" * 60000,
    ],
    ids=["alias-bomb", "deep-flow", "deep-maps", "binary", "huge"],
)
def test_hostile_input_is_a_clean_error_within_seconds(text: str) -> None:
    start = time.monotonic()
    try:
        load_text(text, "hostile.yaml")
    except SpecError as exc:
        assert exc.diagnostics and all(d.message for d in exc.diagnostics)
    assert time.monotonic() - start < 5


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_gives_a_model_or_spec_errors(text: str) -> None:
    try:
        load_text(text, "fuzz.yaml")
    except SpecError as exc:
        assert exc.diagnostics


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["name", "run", "steps", "depends", "env", "params", "retry_policy", "type", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(yaml_values)
def test_any_yaml_structure_gives_a_model_or_spec_errors(value: object) -> None:
    import yaml

    try:
        load_text(yaml.safe_dump(value), "fuzz.yaml")
    except SpecError as exc:
        assert exc.diagnostics


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{action: http.request, with: {method: FETCH, url: 'http://x'}}", "method must be one of"),
        ("{executor: http, command: 'FETCH https://x'}", '"METHOD URL"'),
        ("{action: mail.send, with: {to: a@b}}", "needs from, subject"),
        ("{executor: jq, command: .a}", "needs its input JSON"),
        ("{action: docker.run, with: {pull: always}}", "needs an image"),
        ("{executor: {type: ssh, config: {user: u, ip: h}}}", "needs a command"),
    ],
)
def test_executor_steps_missing_what_they_need_are_errors(step: str, message: str) -> None:
    found = errors(f"steps:\n  - {step}\n")
    assert any(message in e for e in found), found


def test_executor_steps_in_both_spellings_load() -> None:
    dag = load(
        "steps:\n"
        "  - {name: a, action: http.request, with: {url: 'http://x', method: post}}\n"
        "  - {name: b, executor: http, command: GET http://x}\n"
        "  - {name: c, executor: jq, command: .a, script: '{\"a\": 1}'}\n"
        "  - {name: d, executor: {type: mail, config: {to: a, from: b, subject: c}}}\n"
    )
    assert [s.action for s in dag.steps] == ["http.request", "http.request", "jq.filter", "mail.send"]


def test_a_params_item_with_several_keys_gives_every_key_sorted_as_dagus_loader() -> None:
    """Found in public DAG files (issue 14): `params: [{B: "2", A: "1"}]` — Dagu reads every key
    of such an item, sorted by name; dagd refused the file."""
    dag = load_text('params:\n  - {B: "2", A: "1"}\n  - C: three\nsteps:\n  - run: echo "$A-$B-$C"\n', "p.yaml").dag
    assert [(p.name, p.default) for p in dag.params] == [("A", "1"), ("B", "2"), ("C", "three")]


@pytest.mark.parametrize(
    "value", ['"' + "9" * 400 + '"', '"999999999999999999999999Ei"', '"0"', '"-5Mi"', "[1, 2]", '"0.0001"', "{a: 1}"]
)
def test_hostile_resource_limits_are_located_errors_never_a_traceback(value: str) -> None:
    with pytest.raises(SpecError) as exc:
        load_text(f"resources:\n  limits:\n    memory: {value}\n    cpu: {value}\nsteps:\n  - run: 'true'\n", "r.yaml")
    said = {d.key: d.message for d in exc.value.diagnostics}
    assert "is not a CPU limit" in said["resources.limits.cpu"] and "at most 1000 cores" in said["resources.limits.cpu"]
    assert "is not a memory limit" in said["resources.limits.memory"]
    assert all(len(m) < 300 for m in said.values())  # a 400-digit value is not echoed whole


def test_resource_limits_in_dagus_units() -> None:
    dag = load_text('resources:\n  limits: {memory: 512Mi, cpu: "1.5"}\nsteps:\n  - run: "true"\n', "r.yaml").dag
    assert dag.resources is not None and (dag.resources.memory_bytes, dag.resources.cpu_millicores) == (512 << 20, 1500)
    dag = load_text('resources:\n  limits: {memory: 2G, cpu: 250m}\nsteps:\n  - run: "true"\n', "r.yaml").dag
    assert dag.resources is not None and (dag.resources.memory_bytes, dag.resources.cpu_millicores) == (2 * 10**9, 250)
