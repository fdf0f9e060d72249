"""schemathesis against our own OpenAPI document on a real dagd: no 5xx, and every documented
response matches its schema. Path parameters are pinned to a real DAG, run and step, so the
operations reach their logic instead of answering 404."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.integration.test_http_api import start_with_http


def test_schemathesis_finds_no_server_errors_or_schema_violations(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.yaml").write_text(
        "params: [WHO=world]\nsteps:\n  - id: greet\n    run: echo hello ${WHO}\n    output: GREETING\n"
    )
    d, base = start_with_http(tmp_path)
    try:
        run = httpx.post(base + "/api/v1/dags/hello/start-sync", json={"timeout": 30}, timeout=40).json()["dagRun"]
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            "[parameters]\n"
            '"path.file_name" = "hello"\n'
            '"path.name" = "hello"\n'
            f'"path.run_id" = "{run["dagRunId"]}"\n'
            '"path.step_name" = "greet"\n'
        )
        r = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(config),
                "run",
                base + "/api/v1/openapi.json",
                "--url",
                base,
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--exclude-path-regex",
                "events|stream",  # endless SSE streams
                "--exclude-method",
                "DELETE",  # would remove the DAG every other operation is pinned to
                "--max-examples",
                "25",
                "--generation-deterministic",
                "--request-timeout",
                "20",
                "--phases",
                "examples,fuzzing",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
        assert "passed" in r.stdout, r.stdout[-3000:]
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=30)
