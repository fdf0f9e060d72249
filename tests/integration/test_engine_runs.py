"""dagctl run for real: processes, process groups, signals, SQLite history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Result, run_dagctl


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name


def status_doc(tmp_path: Path, dag: str) -> dict:  # type: ignore[type-arg]
    r = run_dagctl(["status", dag, "--json"], tmp_path)
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_run_is_recorded_with_every_step_and_its_resource_use(tmp_path: Path) -> None:
    write(
        tmp_path,
        "two.yaml",
        "working_dir: .\nsteps:\n  - id: a\n    run: echo hello from a\n  - id: b\n    depends: a\n    run: python3 -c 'sum(range(3_000_000))'\n",
    )
    r = run_dagctl(["run", "two.yaml"], tmp_path)
    assert r.code == 0, r.stderr
    doc = status_doc(tmp_path, "two")
    assert doc["status"] == "succeeded" and doc["status_code"] == 4
    steps = {s["step"]: s for s in doc["steps"]}
    assert steps["a"]["status"] == "succeeded" and steps["a"]["exit_code"] == 0
    assert steps["b"]["cpu_user"] > 0 and steps["b"]["max_rss_kb"] > 0
    assert Path(steps["a"]["stdout_path"]).read_text() == "hello from a\n"
    logs = run_dagctl(["logs", "two", doc["id"], "a"], tmp_path)
    assert logs.stdout == "hello from a\n"


def test_failure_aborts_dependents_and_exit_code_is_1(tmp_path: Path) -> None:
    write(
        tmp_path,
        "f.yaml",
        "working_dir: .\nsteps:\n  - {id: a, run: exit 3}\n  - {id: b, depends: a, run: touch b.txt}\n  - {id: c, run: touch c.txt}\n",
    )
    r = run_dagctl(["run", "f.yaml"], tmp_path)
    assert r.code == 1
    steps = {s["step"]: s for s in status_doc(tmp_path, "f")["steps"]}
    assert (steps["a"]["status"], steps["a"]["exit_code"]) == ("failed", 3)
    assert steps["b"]["status"] == "aborted" and steps["c"]["status"] == "succeeded"
    assert not (tmp_path / "b.txt").exists()


def test_continue_on_failure_gives_partially_succeeded(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        "working_dir: .\nsteps:\n  - {id: a, run: exit 1, continue_on: {failure: true}}\n  - {id: b, depends: a, run: echo ok}\n",
    )
    assert run_dagctl(["run", "p.yaml"], tmp_path).code == 1
    assert status_doc(tmp_path, "p")["status"] == "partially_succeeded"


def test_retry_policy_retries_until_success(tmp_path: Path) -> None:
    write(
        tmp_path,
        "r.yaml",
        "working_dir: .\nsteps:\n  - id: flaky\n    run: |\n      n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n\n      [ $((n+1)) -ge 3 ]\n"
        "    retry_policy: {limit: 5, interval_sec: 0}\n",
    )
    assert run_dagctl(["run", "r.yaml"], tmp_path).code == 0
    step = status_doc(tmp_path, "r")["steps"][0]
    assert step["status"] == "succeeded" and step["attempt"] == 3


def test_output_variable_reaches_dependents(tmp_path: Path) -> None:
    write(
        tmp_path,
        "o.yaml",
        "working_dir: .\nsteps:\n  - {id: a, run: echo '  42  ', output: ANSWER}\n  - {id: b, depends: a, run: 'echo \"[$ANSWER]\" > b.txt'}\n",
    )
    assert run_dagctl(["run", "o.yaml"], tmp_path).code == 0
    assert (tmp_path / "b.txt").read_text() == "[42]\n"


def test_step_timeout_kills_grandchildren(tmp_path: Path) -> None:
    write(
        tmp_path,
        "t.yaml",
        "working_dir: .\nsteps:\n  - id: slow\n    timeout_sec: 1\n    run: |\n      sh -c 'echo $$ > grandchild.pid; sleep 60' &\n      sleep 60\n",
    )
    start = time.monotonic()
    r = run_dagctl(["run", "t.yaml"], tmp_path)
    assert r.code == 1 and time.monotonic() - start < 20
    step = status_doc(tmp_path, "t")["steps"][0]
    assert (step["status"], step["exit_code"]) == ("failed", 124)
    assert "timed out" in step["error"]
    assert not alive(int((tmp_path / "grandchild.pid").read_text()))


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    write(
        tmp_path,
        "k.yaml",
        "working_dir: .\nmax_clean_up_time_sec: 1\nsteps:\n  - id: stubborn\n    timeout_sec: 1\n    run: |\n      trap '' TERM\n      echo $$ > me.pid\n      sleep 60 & wait\n",
    )
    r = run_dagctl(["run", "k.yaml"], tmp_path)
    assert r.code == 1
    assert not alive(int((tmp_path / "me.pid").read_text()))


def _start_background(tmp_path: Path, name: str) -> subprocess.Popen[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / ".home"),
        "DAGD_STATE_DIR": str(tmp_path / ".dagd-state"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "dagctl", "run", name],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["sigint", "dagctl-stop"])
def test_stopping_a_run_kills_its_groups_and_records_aborted(tmp_path: Path, how: str) -> None:
    write(
        tmp_path,
        "long.yaml",
        "working_dir: .\nsteps:\n  - id: a\n    run: |\n      sh -c 'echo $$ > child.pid; sleep 60' &\n      sleep 60\n  - {id: b, depends: a, run: touch b.txt}\n"
        "handler_on:\n  abort:\n    run: touch aborted.txt\n",
    )
    proc = _start_background(tmp_path, "long.yaml")
    _wait_for(tmp_path / "child.pid")
    time.sleep(0.3)
    if how == "sigint":
        proc.send_signal(signal.SIGINT)
    else:
        r: Result = run_dagctl(["stop", "long"], tmp_path)
        assert r.code == 0, r.stderr
    proc.wait(timeout=30)
    assert proc.returncode != 0
    doc = status_doc(tmp_path, "long")
    steps = {s["step"]: s for s in doc["steps"]}
    assert doc["status"] == "aborted"
    assert steps["a"]["status"] == "aborted"
    assert (tmp_path / "aborted.txt").exists() and not (tmp_path / "b.txt").exists()
    assert not alive(int((tmp_path / "child.pid").read_text()))


def test_history_lists_runs_newest_first_and_filters_by_status(tmp_path: Path) -> None:
    write(tmp_path, "h.yaml", 'working_dir: .\nparams: [OK]\nsteps:\n  - run: test "$1" = yes\n')
    run_dagctl(["run", "h.yaml", "--", "yes"], tmp_path)
    run_dagctl(["run", "h.yaml", "--", "no"], tmp_path)
    rows = json.loads(run_dagctl(["history", "h", "--json"], tmp_path).stdout)
    assert [r["status"] for r in rows] == ["failed", "succeeded"]
    failed = json.loads(run_dagctl(["history", "h", "--status", "failed", "--json"], tmp_path).stdout)
    assert len(failed) == 1


def test_run_json_prints_the_final_run_document(tmp_path: Path) -> None:
    write(tmp_path, "j.yaml", "working_dir: .\nsteps:\n  - run: echo hi there\n")
    r = run_dagctl(["run", "--json", "j.yaml"], tmp_path)
    doc = json.loads(r.stdout)
    assert r.code == 0 and doc["status"] == "succeeded" and doc["steps"][0]["status"] == "succeeded"


def test_a_refused_action_warns_at_validate_and_fails_its_step_with_the_reason(tmp_path: Path) -> None:
    write(
        tmp_path, "u.yaml", "working_dir: .\nsteps:\n  - action: s3.upload\n    with: {bucket: b}\n  - run: echo ran\n"
    )
    v = run_dagctl(["validate", "u.yaml"], tmp_path)
    assert v.code == 0 and "u.yaml:3:13: warning: steps[0].action: s3.upload is refused by dagd" in v.stderr, v.stderr
    r = run_dagctl(["run", "u.yaml"], tmp_path)
    assert r.code == 1 and "s3.upload is refused by dagd: it needs an S3 service" in r.stderr, r.stderr


def test_max_active_steps_bounds_concurrency(tmp_path: Path) -> None:
    steps = "".join("  - run: 'mkdir lock || exit 9; sleep 0.2; rmdir lock'\n" for _ in range(4))
    write(tmp_path, "m.yaml", f"working_dir: .\nmax_active_steps: 1\nsteps:\n{steps}")
    assert run_dagctl(["run", "m.yaml"], tmp_path).code == 0


def test_retry_reruns_only_what_failed_and_keeps_outputs(tmp_path: Path) -> None:
    write(
        tmp_path,
        "rt.yaml",
        "working_dir: .\nsteps:\n  - {id: a, run: 'echo a >> a.count; echo from-a', output: A_OUT}\n"
        "  - {id: b, depends: a, run: 'test -f fixed && echo \"$A_OUT\" > b.txt'}\n",
    )
    assert run_dagctl(["run", "rt.yaml"], tmp_path).code == 1
    run_id = status_doc(tmp_path, "rt")["id"]
    (tmp_path / "fixed").write_text("")
    r = run_dagctl(["retry", "rt", run_id], tmp_path)
    assert r.code == 0, r.stderr
    doc = status_doc(tmp_path, "rt")
    assert doc["id"] == run_id and doc["status"] == "succeeded" and doc["trigger"] == "retry"
    assert (tmp_path / "a.count").read_text() == "a\n"  # a did not run again
    assert (tmp_path / "b.txt").read_text() == "from-a\n"  # and its output still reached b


def test_a_run_whose_process_died_is_reconciled_as_aborted(tmp_path: Path) -> None:
    write(tmp_path, "d.yaml", "working_dir: .\nsteps:\n  - run: 'echo $$ > started; sleep 60'\n")
    proc = _start_background(tmp_path, "d.yaml")
    _wait_for(tmp_path / "started")
    time.sleep(0.3)
    proc.kill()  # SIGKILL: no chance to record anything
    proc.wait()
    doc = status_doc(tmp_path, "d")
    assert doc["status"] == "aborted" and "died" in doc["error"]
    assert doc["steps"][0]["status"] == "aborted"
    assert not alive(int((tmp_path / "started").read_text()))  # its orphaned step was killed


def test_hist_retention_runs_keeps_the_newest_runs_and_deletes_their_logs(tmp_path: Path) -> None:
    write(tmp_path, "keep.yaml", "hist_retention_runs: 2\nsteps:\n  - run: echo kept run\n")
    for _ in range(4):
        assert run_dagctl(["run", "keep.yaml"], tmp_path).code == 0
    rows = json.loads(run_dagctl(["history", "keep", "--json"], tmp_path).stdout)
    assert len(rows) == 2
    log_root = tmp_path / ".dagd-state" / "logs" / "keep"
    assert sorted(p.name for p in log_root.iterdir()) == sorted(r["id"] for r in rows)


def test_backticks_in_env_run_in_classic_files_only(tmp_path: Path) -> None:
    """Dagu 1.x executed backticks in env values and conditions; Dagu 2 does not (docs/compat.md)."""
    write(
        tmp_path,
        "old.yaml",
        "env:\n  - WHO: '`echo classic`'\nsteps:\n  - name: a\n    command: sh -c 'echo \"$WHO\" > old.txt'\n"
        "    preconditions:\n      - condition: '`echo yes`'\n        expected: 'yes'\n",
    )
    write(
        tmp_path,
        "new.yaml",
        "working_dir: .\nenv:\n  - WHO: '`echo classic`'\nsteps:\n  - run: echo \"$WHO\" > new.txt\n",
    )
    assert run_dagctl(["run", "old.yaml"], tmp_path).code == 0
    assert run_dagctl(["run", "new.yaml"], tmp_path).code == 0
    assert (tmp_path / "old.txt").read_text() == "classic\n"
    assert (tmp_path / "new.txt").read_text() == "`echo classic`\n"


def test_backticks_in_classic_param_defaults_run_and_a_failing_one_fails_the_run(tmp_path: Path) -> None:
    """Dagu 1.x ran backticks in a file's params (named and positional); a value the caller passes
    is taken as it is (docs/compat.md)."""
    step = '    command: echo "$DAY $1 $DAG_PARAMS_JSON" > out.txt\n'
    write(tmp_path, "p.yaml", f"params: DAY=`echo mon` `echo pos`\nsteps:\n  - name: a\n{step}")
    assert run_dagctl(["run", "p.yaml"], tmp_path).code == 0
    assert (tmp_path / "out.txt").read_text() == 'mon pos {"DAY":"mon"}\n'
    assert run_dagctl(["run", "p.yaml", "--", "DAY=`echo tue`"], tmp_path).code == 0
    assert (tmp_path / "out.txt").read_text() == '`echo tue` pos {"DAY":"`echo tue`"}\n'
    write(tmp_path, "bad.yaml", "params: DAY=`exit 7`\nsteps:\n  - name: a\n    command: touch ran.txt\n")
    r = run_dagctl(["run", "bad.yaml"], tmp_path)
    assert r.code == 1 and "params: DAY: `exit 7`: eval failed: exit 7" in r.stderr, r.stderr
    assert not (tmp_path / "ran.txt").exists()


def test_classic_run_name_calls_the_sub_dag_and_records_a_child_run(tmp_path: Path) -> None:
    write(
        tmp_path,
        "child.yaml",
        "steps:\n  - name: c\n    command: sh -c 'echo child-ran > child.txt'\n    output: CHILD_OUT\n",
    )
    write(tmp_path, "parent.yaml", "steps:\n  - name: call\n    run: child\n    output: RESULT\n")
    r = run_dagctl(["run", "parent.yaml"], tmp_path)
    assert r.code == 0, r.stderr
    assert (tmp_path / "child.txt").read_text() == "child-ran\n"
    parent = status_doc(tmp_path, "parent")
    result = json.loads(Path(parent["steps"][0]["stdout_path"]).read_text())
    assert result["status"] == "succeeded" and result["name"] == "child"
    child = status_doc(tmp_path, "child")
    assert child["parent_run"] == parent["id"] and child["trigger"] == "subdag"


def test_a_multi_line_command_runs_through_a_shell_given_with_dash_c(tmp_path: Path) -> None:
    """Dagu's own fixture (1.17 integration/shellopts): `shell: bash -o … -c` on a multi-line
    command; the shell's options hold (xtrace on stderr, pipefail fails the step)."""
    write(
        tmp_path,
        "opts.yaml",
        "steps:\n  - name: a\n    command: |\n      echo one\n      echo two\n"
        "    shell: bash -o errexit -o xtrace -o pipefail -c\n    output: OUT\n"
        "  - name: b\n    command: |\n      false | cat\n      echo not reached\n"
        "    shell: bash -o pipefail -o errexit -c\n",
    )
    r = run_dagctl(["run", "opts.yaml"], tmp_path)
    assert r.code == 1, r.stderr
    a, b = status_doc(tmp_path, "opts")["steps"]
    assert a["status"] == "succeeded" and a["output_value"] == "one\ntwo"
    assert "+ echo one" in Path(a["stderr_path"]).read_text()
    assert b["status"] == "failed" and Path(b["stdout_path"]).read_text() == ""


def test_a_failed_steps_output_is_kept_for_the_steps_after_it(tmp_path: Path) -> None:
    """As Dagu does (1.30 side by side): `output: VAR` of a failed step holds what it printed."""
    write(
        tmp_path,
        "f.yaml",
        "steps:\n  - name: a\n    command: sh -c 'echo partial; exit 3'\n    output: A\n"
        "    continueOn:\n      failure: true\n"
        "  - name: b\n    command: sh -c 'echo \"got $A\" > got.txt'\n    dir: ./sub/../\n    output: B\n"
        "  - name: c\n    command: sh -c 'echo \"$PWD\" > pwd.txt'\n    dir: ./sub/../\n",
    )
    assert run_dagctl(["run", "f.yaml"], tmp_path).code == 1
    assert (tmp_path / "got.txt").read_text() == "got partial\n"
    a = status_doc(tmp_path, "f")["steps"][0]
    assert a["status"] == "failed" and a["output_value"] == "partial"
    assert (tmp_path / "pwd.txt").read_text() == f"{tmp_path}\n"  # (a clean path, as Dagu's)


def test_a_sub_dag_that_is_missing_or_cannot_start_fails_its_step_cleanly(tmp_path: Path) -> None:
    """Found by the differential test against Dagu 1.30: a parallel call of a missing DAG was an
    internal error and its continueOn was lost. Now: the step fails saying which DAG, no child
    starts, and the run goes on as the step's continueOn says."""
    write(tmp_path, "strict.yaml", "params: [{name: N, required: true}]\nsteps:\n  - name: c\n    command: 'true'\n")
    after = "  - name: next\n    command: touch next.txt\n    depends: fan\n"
    write(
        tmp_path,
        "missing.yaml",
        "steps:\n  - name: fan\n    run: nowhere\n    parallel:\n      items: [a, b]\n"
        f"    continueOn:\n      failure: true\n{after}",
    )
    r = run_dagctl(["run", "missing.yaml"], tmp_path)
    assert r.code == 1 and 'failed to find DAG "nowhere"' in r.stderr and "internal error" not in r.stderr, r.stderr
    assert (tmp_path / "next.txt").exists()  # continueOn: failure held
    write(
        tmp_path,
        "badparams.yaml",
        "steps:\n  - name: fan\n    run: strict\n    parallel:\n      items: [x, y]\n"
        "  - name: solo\n    run: strict\n    params: M=1\n    depends: []\n",
    )
    r = run_dagctl(["run", "badparams.yaml"], tmp_path)
    assert r.code == 1 and "internal error" not in r.stderr, r.stderr
    assert 'sub-DAG strict cannot start: unknown parameter(s): "M"' in r.stderr, r.stderr
    assert "parallel: 2 of 2 child runs did not succeed" in r.stderr, r.stderr
    fan = next(s for s in status_doc(tmp_path, "badparams")["steps"] if s["step"] == "fan")
    results = json.loads(Path(fan["stdout_path"]).read_text())["results"]
    assert [x["error"] for x in results] == ["sub-DAG strict cannot start: missing required parameter(s): N"] * 2


def test_repeat_true_repeats_to_its_limit_and_output_is_the_last_executions(tmp_path: Path) -> None:
    """Dagu 1.17's own fixture and test (repeat-limit-condition): `repeat: true` with a condition
    that never matches runs to its limit; `output:` holds what the last execution printed."""
    write(
        tmp_path,
        "r.yaml",
        "steps:\n  - name: count\n    command: sh -c 'echo x >> n.txt; wc -l < n.txt | tr -d \" \"'\n"
        "    output: N\n    repeatPolicy:\n      repeat: true\n      limit: 4\n      intervalSec: 0\n"
        "      condition: '`cat n.txt`'\n      expected: never\n",
    )
    v = run_dagctl(["validate", "r.yaml"], tmp_path)
    assert "repeat: true repeats while the step succeeds; condition, expected has no effect" in v.stderr, v.stderr
    assert run_dagctl(["run", "r.yaml"], tmp_path).code == 0
    step = status_doc(tmp_path, "r")["steps"][0]
    assert (tmp_path / "n.txt").read_text() == "x\n" * 4
    assert step["output_value"] == "4" and Path(step["stdout_path"]).read_text() == "1\n2\n3\n4\n"


def test_repeat_policy_repeats_until_the_condition_matches(tmp_path: Path) -> None:
    write(
        tmp_path,
        "rp.yaml",
        "working_dir: .\nsteps:\n  - id: poll\n    run: echo x >> polls; wc -l < polls | tr -d ' '\n    output: COUNT\n"
        "    repeat_policy:\n      repeat: until\n      condition: \"`wc -l < polls | tr -d ' '`\"\n      expected: '3'\n      interval_sec: 0\n",
    )
    write(
        tmp_path,
        "rp2.yaml",
        "working_dir: .\nsteps:\n  - id: poll\n    run: echo x >> polls2\n    repeat_policy: {repeat: while, exit_code: [0], limit: 4, interval_sec: 0}\n",
    )
    assert run_dagctl(["run", "rp2.yaml"], tmp_path).code == 0
    assert (tmp_path / "polls2").read_text() == "x\n" * 4
    step = status_doc(tmp_path, "rp2")["steps"][0]
    assert step["status"] == "succeeded" and step["attempt"] == 4


def test_init_failure_aborts_the_run_and_exit_still_runs(tmp_path: Path) -> None:
    write(
        tmp_path,
        "h.yaml",
        "working_dir: .\nhandler_on:\n  init: {run: exit 1}\n  exit: {run: 'echo \"$DAG_RUN_STATUS\" > exit.txt'}\n"
        "  failure: {run: touch failure.txt}\nsteps:\n  - run: touch main.txt\n",
    )
    assert run_dagctl(["run", "h.yaml"], tmp_path).code == 1
    doc = status_doc(tmp_path, "h")
    assert doc["status"] == "aborted"
    assert (tmp_path / "exit.txt").read_text() == "aborted\n"
    assert not (tmp_path / "main.txt").exists() and not (tmp_path / "failure.txt").exists()


def test_success_handler_sees_step_outputs_and_the_status(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ok.yaml",
        "working_dir: .\nsteps:\n  - {id: a, run: echo value-a, output: A}\n"
        "handler_on:\n  success: {run: 'echo \"$DAG_RUN_STATUS $A\" > success.txt'}\n",
    )
    assert run_dagctl(["run", "ok.yaml"], tmp_path).code == 0
    assert (tmp_path / "success.txt").read_text() == "succeeded value-a\n"


def test_call_runs_a_local_document_with_params(tmp_path: Path) -> None:
    write(
        tmp_path,
        "c.yaml",
        "working_dir: .\nsteps:\n  - {id: go, call: worker, params: 'WHO=local', output: R}\n"
        "  - {id: after, depends: go, run: 'echo \"${R.outputs.GREETING}\" > greeting.txt'}\n"
        "---\nname: worker\nparams:\n  - name: WHO\n    default: nobody\nsteps:\n  - {id: hi, run: 'echo hello ${params.WHO}', output: GREETING}\n",
    )
    r = run_dagctl(["run", "c.yaml"], tmp_path)
    assert r.code == 0, r.stderr
    assert (tmp_path / "greeting.txt").read_text() == "hello local\n"


def test_continue_on_output_pattern(tmp_path: Path) -> None:
    write(
        tmp_path,
        "co.yaml",
        "working_dir: .\nsteps:\n  - id: a\n    run: \"echo 'WARN: disk almost full'; exit 2\"\n    continue_on:\n      output: 're:^WARN'\n"
        "  - {id: b, depends: a, run: touch b.txt}\n",
    )
    run_dagctl(["run", "co.yaml"], tmp_path)
    assert (tmp_path / "b.txt").exists()
    assert status_doc(tmp_path, "co")["status"] == "partially_succeeded"


def test_logs_follow_streams_until_the_step_ends(tmp_path: Path) -> None:
    write(
        tmp_path, "f.yaml", "working_dir: .\nsteps:\n  - id: talk\n    run: 'echo one; touch go; sleep 1; echo two'\n"
    )
    proc = _start_background(tmp_path, "f.yaml")
    _wait_for(tmp_path / "go")
    r = run_dagctl(["logs", "f", "latest", "talk", "--follow"], tmp_path)
    proc.wait(timeout=30)
    assert r.stdout == "one\ntwo\n"


def test_exec_action_runs_without_a_shell(tmp_path: Path) -> None:
    write(
        tmp_path,
        "x.yaml",
        "working_dir: .\nenv:\n  - WHO: world\nsteps:\n  - action: exec\n    with:\n      command: python3\n"
        "      args: ['-c', 'import sys; open(\"argv.txt\", \"w\").write(\"|\".join(sys.argv[1:]))', 'hello ${WHO}', '$(no shell)']\n",
    )
    r = run_dagctl(["run", "x.yaml"], tmp_path)
    assert r.code == 0, r.stderr
    assert (tmp_path / "argv.txt").read_text() == "hello world|$(no shell)"


@pytest.mark.parametrize("cgroups", ["on", "off"])
def test_peak_rss_is_the_steps_own(tmp_path: Path, cgroups: str) -> None:
    """Never dagd's own size: a cgroup's figure, or rusage only where it exceeds dagd's size
    (a vfork child starts at its parent's high-water mark), else 'not measured'."""
    write(
        tmp_path,
        "mem.yaml",
        "steps:\n  - {id: small, run: 'true'}\n  - {id: big, run: \"python3 -c 'x = bytearray(150_000_000); x[::4096] = b\\\"1\\\" * len(x[::4096])'\"}\n",
    )
    assert run_dagctl(["run", "mem.yaml"], tmp_path, {"DAGD_CGROUPS": cgroups}).code == 0
    steps = {s["step"]: s for s in status_doc(tmp_path, "mem")["steps"]}
    assert steps["big"]["max_rss_kb"] > 140_000
    if (steps["small"]["memory_source"] or "").startswith("cgroup"):
        assert steps["small"]["max_rss_kb"] < 10_000
    else:
        assert steps["small"]["memory_source"] is None and steps["small"]["max_rss_kb"] == 0
        assert steps["big"]["memory_source"] == "rusage"


def test_steps_see_which_attempt_of_the_work_they_are(tmp_path: Path) -> None:
    """DAG_RUN_ATTEMPT: 1, then 2 for the run a lost node's run was re-queued as (<id>_requeued)."""
    write(tmp_path, "a.yaml", 'working_dir: .\nsteps:\n  - run: echo "attempt $DAG_RUN_ATTEMPT" >> attempts.txt\n')
    assert run_dagctl(["run", "a.yaml"], tmp_path).code == 0
    assert run_dagctl(["run", "--run-id", "nightly_requeued", "a.yaml"], tmp_path).code == 0
    assert (tmp_path / "attempts.txt").read_text() == "attempt 1\nattempt 2\n"
