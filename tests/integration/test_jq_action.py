"""jq.filter (and Dagu 1.x `executor: jq`) run by Debian's jq as the step's process: Dagu's output
forms (indented JSON with sorted keys; raw), inline data, an input file, 1.x command + script,
and the errors Dagu gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import run_dagctl


def _steps(tmp_path: Path, name: str) -> dict[str, dict[str, Any]]:
    rid = json.loads(run_dagctl(["history", name, "--json"], tmp_path).stdout)[0]["id"]
    doc = json.loads(run_dagctl(["status", name, rid, "--json"], tmp_path).stdout)
    return {s["step"]: s for s in doc["steps"]}


def test_filters_over_data_files_and_1x_scripts_write_what_dagu_writes(tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"users": [{"name": "ann", "age": 30}, {"name": "bo", "age": null}]}')
    (tmp_path / "j.yaml").write_text(
        """working_dir: .
steps:
  - id: pretty
    action: jq.filter
    with:
      filter: '.items[] | {z: .n, a: .name}'
      data: {items: [{name: x, n: 1}, {name: y, n: 2.5}]}
  - id: raw
    action: jq.filter
    with:
      filter: '.users[] | .name, .age, {n: .name}'
      input: in.json
      raw: true
  - id: none
    action: jq.filter
    with:
      data: '{"a": 1}'
"""
    )
    r = run_dagctl(["run", "j.yaml"], tmp_path)
    assert r.code == 0, r.stderr
    steps = _steps(tmp_path, "j")
    assert Path(steps["pretty"]["stdout_path"]).read_text() == (
        '{\n    "a": "x",\n    "z": 1\n}\n{\n    "a": "y",\n    "z": 2.5\n}\n'
    )
    assert Path(steps["raw"]["stdout_path"]).read_text() == 'ann\n30\n{"n":"ann"}\nbo\n\n{"n":"bo"}\n'
    assert Path(steps["none"]["stdout_path"]).read_text() == ""  # no filter: nothing, as Dagu
    (tmp_path / "old.yaml").write_text(
        "steps:\n  - name: extract\n    executor: jq\n    command: .user.name\n    output: NAME\n"
        '    script: |\n      {"user": {"name": "John", "age": 30}}\n'
        "  - name: use\n    command: echo got $NAME\n    depends: extract\n"
    )
    assert run_dagctl(["run", "old.yaml"], tmp_path).code == 0
    old = _steps(tmp_path, "old")
    assert old["extract"]["output_value"] == '"John"'
    assert Path(old["use"]["stdout_path"]).read_text() == 'got "John"\n'  # (JSON text, as in Dagu)


def test_bad_filters_inputs_and_settings_fail_clearly(tmp_path: Path) -> None:
    cases = {
        "with:\n      filter: '.a |'\n      data: '{}'": "jq: error",
        "with:\n      filter: .a\n      data: '{not json'": "jq: the input is not JSON",
        "with:\n      filter: .a\n      input: nowhere.json": "jq: reading input file 'nowhere.json': no such file",
        "with:\n      filter: .a\n      data: '{}'\n      colour: true": "action jq.filter does not take colour",
        "with:\n      filter: .a\n      data: '{}'\n      input: x.json": "takes exactly one of with.data or with.input",
    }
    for with_, why in cases.items():
        (tmp_path / "bad.yaml").write_text(f"working_dir: .\nsteps:\n  - id: q\n    action: jq.filter\n    {with_}\n")
        r = run_dagctl(["run", "bad.yaml"], tmp_path)
        out = r.stderr
        if r.code == 1 and why not in out:  # jq's own message is in the step's stderr log
            rid = json.loads(run_dagctl(["history", "bad", "--json"], tmp_path).stdout)[0]["id"]
            doc = json.loads(run_dagctl(["status", "bad", rid, "--json"], tmp_path).stdout)
            out += Path(doc["steps"][0]["stderr_path"]).read_text()
        assert r.code == 1 and why in out and "Traceback" not in out, (with_, out)
