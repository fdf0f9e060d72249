from __future__ import annotations

import pytest

from dagd.engine.resolve import Scope, resolve
from dagd.expand import resolve_params
from dagd.graph import ancestors, find_cycle, levels
from dagd.spec import load_text


def test_levels_group_steps_by_wave() -> None:
    assert levels({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) == [["a"], ["b", "c"], ["d"]]


def test_find_cycle_handles_long_chains_without_recursion() -> None:
    deps = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(50_000)}
    assert find_cycle(deps) is None
    deps["s0"] = ["s49999"]
    cycle = find_cycle(deps)
    assert cycle is not None and cycle[0] == cycle[-1]


def test_ancestors_are_transitive() -> None:
    assert ancestors({"a": [], "b": ["a"], "c": ["b"]}, "c") == {"a", "b"}


def test_substitute_resolves_dagu_references_and_keeps_the_rest() -> None:
    out = resolve(
        r"${consts.x} ${params.p} $1 ${env.E} $HOME ${missing.y} \${params.p}",
        Scope(consts={"x": "C"}, params={"p": "P"}, positional=["one"], env={"E": "e"}),
        shell_owned=True,
    )
    assert out == "C P one e $HOME ${missing.y} ${params.p}"


def test_single_quoted_positional_params_stay_as_written() -> None:
    """Dagu 1.17's own fixture (integration/positional-params): echo '$1' is $1 → "$1 is foo"."""
    scope = Scope(positional=["foo", "bar"])
    for shell_owned in (True, False):
        out = resolve("echo '$1' is $1, '$2' is $2 \"$1\"", scope, shell_owned=shell_owned)
        assert out == "echo '$1' is foo, '$2' is bar \"foo\""


def test_param_overrides_follow_dagu_rules() -> None:
    dag = load_text(
        "params:\n  - name: a\n    default: x\n  - name: b\n    default: y\nsteps: [{run: echo a b}]\n", "p.yaml"
    ).dag
    assert resolve_params(dag, ["b=z"]) == ({"a": "x", "b": "z"}, [])
    with pytest.raises(ValueError, match='unknown parameter\\(s\\): "c"; accepted parameters are: a, b'):
        resolve_params(dag, ["c=1"])
