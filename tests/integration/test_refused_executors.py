"""A DAG whose `container:`, `ssh:` or `redis:` sends its steps to a Dagu executor dagd does not
have is refused — its steps never run on the host instead (issue 14: one file meant
`docker system prune -a --volumes -f` for a Docker-in-Docker daemon). validate warns, `dagctl
run` exits 1 saying why, and a daemon run is recorded failed with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_dagctl
from tests.integration.test_daemon import run_ended, start_daemon, wait_until

KEYS = {
    "container": "container:\n  image: docker:dind\n",
    "ssh": "ssh:\n  user: deploy\n  host: build.example.org\n",
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
    (tmp_path / "dags" / "dind.yaml").write_text(f"working_dir: {tmp_path}\n{_dag('container')}")
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
        d.proc.terminate()
        d.proc.wait(timeout=30)
        d.notify.close()
