"""pydagu (a third-party Python client of Dagu's REST API, from PyPI) driven against a real dagd:
create a DAG, read and update its spec, start it with params, follow `latest`, delete it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydagu.builder import DagBuilder
from pydagu.http import DaguHttpClient
from pydagu.models.request import StartDagRun

from tests.integration.test_daemon import Daemon, wait_until
from tests.integration.test_http_api import start_with_http


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    (tmp_path / "dags").mkdir()
    d, base = start_with_http(tmp_path)
    yield d, base
    d.proc.terminate()
    d.proc.wait(timeout=30)


def test_pydagu_creates_starts_follows_and_deletes_a_dag(api: tuple[Daemon, str]) -> None:
    d, base = api
    client = DaguHttpClient("from_pydagu", base + "/api/v1")
    dag = (
        DagBuilder("from_pydagu")
        .description("made by pydagu")
        .add_param("WHO", "nobody")
        .add_step("greet", f"sh -c 'echo hello $WHO > {d.root}/out.txt'")
        .build()
    )
    assert client.post_dag(dag) is None
    assert (d.root / "dags" / "from_pydagu.yaml").exists()
    wait_until(lambda: httpx.get(f"{base}/api/v1/dags/from_pydagu").status_code == 200)
    spec = client.get_dag_spec()
    assert spec.description == "made by pydagu"
    assert client.update_dag(dag.model_copy(update={"description": "updated by pydagu"})) is None
    assert client.get_dag_spec().description == "updated by pydagu"

    started = client.start_dag_run(StartDagRun(params="WHO=pydagu"))
    rid = getattr(started, "dagRunId", None)
    assert rid, started

    def done() -> object:
        status = client.get_dag_run_status("latest")  # Dagu's "ID of the DAG-run or 'latest'"
        return status if status.statusLabel not in ("queued", "running", "not_started") else None

    result = wait_until(done)
    assert getattr(result, "statusLabel", None) == "succeeded" and getattr(result, "dagRunId", None) == rid
    assert (d.root / "out.txt").read_text() == "hello pydagu\n"
    assert client.get_dag_run_status(rid).nodes[0].step.name == "greet"
    client.delete_dag()
    assert not (d.root / "dags" / "from_pydagu.yaml").exists()
