"""dagctl as a user runs it: real processes, real files."""

from __future__ import annotations

import json
from pathlib import Path


def test_validate_is_silent_and_exits_0_on_a_valid_file(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "ok.yaml").write_text("steps:\n  - run: echo hello world\n")
    r = dagctl("validate", "ok.yaml")
    assert (r.code, r.stdout, r.stderr) == (0, "", "")


def test_validate_prints_file_line_col_key_message(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.yaml").write_text("steps:\n  - run: echo a b\n    timeout_sec: soon\n")
    r = dagctl("validate", "bad.yaml")
    assert r.code == 1 and r.stdout == ""
    assert "bad.yaml:3:18: steps[0].timeout_sec: must be a number, got a string" in r.stderr


def test_validate_json_reports_every_file(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "ok.yaml").write_text("steps:\n  - run: echo hello world\n")
    (tmp_path / "bad.yaml").write_text("steps: []\n")
    r = dagctl("validate", "--json", "ok.yaml", "bad.yaml")
    doc = json.loads(r.stdout)
    assert r.code == 1 and doc["valid"] is False
    assert [f["valid"] for f in doc["files"]] == [True, False]
    assert doc["files"][1]["diagnostics"][0]["key"] == "steps"


def test_validate_verbose_names_the_dialect_and_warns_on_classic(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "old.yaml").write_text("steps:\n  - name: a\n    command: echo a\n    continueOn: {failure: true}\n")
    r = dagctl("validate", "--verbose", "old.yaml")
    assert r.code == 0
    assert "dialect classic" in r.stderr
    assert '"continueOn" is the Dagu 1.x spelling; use "continue_on"' in r.stderr


def test_dry_shows_the_plan_with_params_resolved_and_runs_nothing(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "p.yaml").write_text(
        "params:\n  - name: DATE\n    default: today\nconsts:\n  - bucket: s3://b\n"
        "steps:\n  - id: fetch\n    run: touch ran.txt; echo ${params.DATE} ${consts.bucket}\n"
        "  - id: load\n    depends: fetch\n    run: echo load\n"
    )
    r = dagctl("dry", "p.yaml", "--", "DATE=2026-11-01")
    assert r.code == 0, r.stderr
    assert "level 1:" in r.stdout and "level 2:" in r.stdout
    assert "echo 2026-11-01 s3://b" in r.stdout
    assert not (tmp_path / "ran.txt").exists()
    j = json.loads(dagctl("dry", "--json", "p.yaml").stdout)
    assert [[s["name"] for s in wave] for wave in j["levels"]] == [["fetch"], ["load"]]


def test_dry_rejects_unknown_params(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "p.yaml").write_text("params:\n  - name: A\n    default: x\nsteps:\n  - run: echo a b\n")
    r = dagctl("dry", "p.yaml", "--", "B=1")
    assert r.code == 1 and 'unknown parameter(s): "B"' in r.stderr


def test_dagu_base_config_variable_is_honoured(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "base.yaml").write_text("params:\n  - name: FROM_BASE\n    default: yes-base\n")
    (tmp_path / "d.yaml").write_text("steps:\n  - run: echo ${params.FROM_BASE} x\n")
    r = dagctl("dry", "d.yaml", env={"DAGU_BASE_CONFIG": str(tmp_path / "base.yaml")})
    assert "echo yes-base x" in r.stdout, r.stderr


def test_version_and_help(dagctl) -> None:  # type: ignore[no-untyped-def]
    assert dagctl("--version").stdout.startswith("dagctl, version")
    for cmd in ("validate", "dry"):
        assert "Usage:" in dagctl(cmd, "--help").stdout


def test_binary_junk_is_a_clean_error(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "junk.yaml").write_bytes(bytes(range(256)) * 4)
    r = dagctl("validate", "junk.yaml")
    assert r.code == 1 and "Traceback" not in r.stderr and "junk.yaml" in r.stderr


def test_dialect_can_be_forced(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "frag.yaml").write_text("histRetentionDays: 3\n")
    assert dagctl("validate", "frag.yaml").code == 1  # Dagu 2's rule: a DAG needs steps
    r = dagctl("validate", "--dialect", "classic", "frag.yaml")
    assert r.code == 0 and "no steps" in r.stderr
    (tmp_path / "sub.yaml").write_text("steps:\n  - name: a\n    run: child\n")
    classic = json.loads(dagctl("dry", "--json", "sub.yaml").stdout)
    assert classic["levels"][0][0]["kind"] == "command"  # no DAG named child: a command


def test_a_daemon_that_drops_the_connection_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys
    import threading

    path = tmp_path / "flaky.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def hang_up() -> None:  # accept, read the request, close without answering
        for _ in range(4):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(4096)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    (tmp_path / "d.yaml").write_text("steps:\n  - run: 'true'\n")
    r = subprocess.run(
        [sys.executable, "-m", "dagctl", "reload"],
        env={**os.environ, "DAGD_SOCKET": str(path), "DAGD_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    server.close()
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stderr.strip().startswith("dagctl: ") and "dagd" in r.stderr, r.stderr


def test_an_entrypoint_name_is_a_warning_and_the_dag_runs_under_it(dagctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # current-format files that set name: (33 of 92 public files): Dagu's scheduler runs them
    (tmp_path / "deploy.yaml").write_text("name: shipit\nsteps:\n  - run: echo shipped > out.txt\n")
    r = dagctl("validate", "deploy.yaml")
    assert r.code == 0 and "deploy.yaml:1:1: warning: name: entrypoint document defines name" in r.stderr, r.stderr
    strict = dagctl("validate", "--strict", "deploy.yaml")
    assert strict.code == 1 and "entrypoint document must not define name" in strict.stderr
    assert "DAG shipit" in dagctl("dry", "deploy.yaml").stdout
    ran = dagctl("run", "--json", "deploy.yaml")
    assert ran.code == 0, ran.stderr
    assert json.loads(dagctl("status", "shipit", "--json").stdout)["status"] == "succeeded"
