"""What Dagu's own web UI and clients read from /api/v1 (issue 14), against a real dagd, each
answer checked against Dagu's OpenAPI schemas (../shared/dagu/api-v1.yaml)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_daemon import Daemon, wait_until
from tests.integration.test_http_api import check, serving

DAGS = {
    "hello.yaml": "labels: [team=ops, nightly]\nsteps:\n  - {id: a, run: echo hello}\n  - {id: b, depends: a, run: echo b}\n",
    "greet.yaml": (
        "params:\n  - name: WHO\n    default: world\n  - name: MOOD\n    default: calm\n    enum: [calm, loud]\n"
        "steps:\n  - {id: say, run: 'echo \"hi ${WHO} ${MOOD}\"', output: SAID}\n"
    ),
    "parent.yaml": "steps:\n  - id: delegate\n    call: hello\n",
    "gate.yaml": "steps:\n  - id: wait\n    run: while [ ! -e {gate} ]; do sleep 0.02; done\n",
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    with serving(tmp_path, DAGS) as running:
        yield running


def finished(base: str, name: str, rid: str) -> dict | None:  # type: ignore[type-arg]
    r = httpx.get(f"{base}/api/v1/dag-runs/{name}/{rid}")
    doc = r.json().get("dagRunDetails") if r.status_code == 200 else None
    return doc if doc and doc["statusLabel"] not in ("queued", "running", "not_started") else None


def start(base: str, name: str, **body: object) -> str:
    r = httpx.post(f"{base}/api/v1/dags/{name}/start", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["dagRunId"])


def test_param_defs_carry_an_enum_only_when_declared_and_object_params_are_used(api: tuple[Daemon, str]) -> None:
    _, base = api
    dag = httpx.get(f"{base}/api/v1/dags/greet").json()["dag"]
    check(dag, "DAGDetails")
    defs = {p["name"]: p for p in dag["paramDefs"]}
    assert "enum" not in defs["WHO"] and defs["MOOD"]["enum"] == ["calm", "loud"]
    rid = start(base, "greet", params={"WHO": "api", "MOOD": "loud"})  # a JSON object, as Dagu's clients send
    doc = wait_until(lambda: finished(base, "greet", rid))
    assert isinstance(doc, dict) and doc["statusLabel"] == "succeeded", doc
    check(doc, "DAGRunDetails")
    assert json.loads(doc["params"]) == {"WHO": "api", "MOOD": "loud"} and doc["queuedAt"], doc
    out = httpx.get(f"{base}/api/v1/dag-runs/greet/latest/outputs").json()  # `latest` on every run route
    assert out["outputs"]["said"] == "hi api loud", out
    latest = httpx.get(f"{base}/api/v1/dag-runs/greet/latest").json()["dagRunDetails"]
    assert latest["dagRunId"] == rid
    log = httpx.get(f"{base}/api/v1/dag-runs/greet/latest/steps/say/log").json()
    assert log["content"].strip() == "hi api loud"
    spec = httpx.get(f"{base}/api/v1/dag-runs/greet/{rid}/spec").json()
    assert spec["spec"] == DAGS["greet.yaml"]


def test_run_graph_edges_sub_runs_grid_and_delete(api: tuple[Daemon, str]) -> None:
    _, base = api
    rid = start(base, "parent")
    doc = wait_until(lambda: finished(base, "parent", rid))
    assert isinstance(doc, dict) and doc["statusLabel"] == "succeeded", doc
    node = doc["nodes"][0]
    assert node["step"]["call"] == "hello" and node["subRuns"][0]["dagName"] == "hello", node
    child_id = node["subRuns"][0]["dagRunId"]
    sub = httpx.get(f"{base}/api/v1/dag-runs/parent/{rid}/sub-dag-runs/{child_id}").json()["dagRunDetails"]
    check(sub, "DAGRunDetails")
    assert [n["step"]["depends"] for n in sub["nodes"]] == [[], ["a"]]
    assert [n["step"]["commands"] for n in sub["nodes"]] == [[{"command": "echo hello"}], [{"command": "echo b"}]]
    runs = httpx.get(f"{base}/api/v1/dags/hello/dag-runs").json()
    assert runs["gridData"] == [{"name": "a", "history": [4]}, {"name": "b", "history": [4]}], runs["gridData"]
    for item in runs["gridData"]:
        check(item, "DAGGridItem")
    page = httpx.get(f"{base}/api/v1/dag-runs/hello").json()
    check(page, "DAGRunsPageResponse")
    assert [r["dagRunId"] for r in page["dagRuns"]] == [child_id]
    assert httpx.delete(f"{base}/api/v1/dag-runs/hello/{child_id}").status_code == 204
    assert httpx.get(f"{base}/api/v1/dag-runs/hello/{child_id}").status_code == 404
    assert httpx.delete(f"{base}/api/v1/dag-runs/hello/{child_id}").status_code == 404


def test_singleton_queue_detail_dequeue_by_get_and_a_running_run_is_not_deleted(api: tuple[Daemon, str]) -> None:
    d, base = api
    running = start(base, "gate")
    wait_until(
        lambda: httpx.get(f"{base}/api/v1/dag-runs/gate/{running}").json()["dagRunDetails"]["statusLabel"] == "running"
    )
    for path in ("start", "enqueue"):
        r = httpx.post(f"{base}/api/v1/dags/gate/{path}", json={"singleton": True})
        assert r.status_code == 409 and "already running" in r.json()["message"], r.text
    queued = httpx.post(f"{base}/api/v1/dags/gate/enqueue", json={}).json()["dagRunId"]  # max_active_runs 1: waits
    q = httpx.get(f"{base}/api/v1/queues/gate").json()
    check(q, "Queue")
    assert (q["runningCount"], q["queuedCount"]) == (1, 1), q
    items = httpx.get(f"{base}/api/v1/queues/gate/items").json()
    check(items, "QueuedDAGRunsPageResponse")
    assert [i["dagRunId"] for i in items["items"]] == [queued]
    assert httpx.delete(f"{base}/api/v1/dag-runs/gate/{running}").status_code == 409
    cross = httpx.get(f"{base}/api/v1/dag-runs/gate/{queued}/dequeue", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403  # a state change by GET still gets the CSRF check
    assert httpx.get(f"{base}/api/v1/dag-runs/gate/{queued}/dequeue").status_code == 200
    assert httpx.get(f"{base}/api/v1/queues/gate/items").json()["items"] == []
    (d.root / "gate").touch()
    wait_until(lambda: finished(base, "gate", running))


def test_labels_sort_and_spec_notices(api: tuple[Daemon, str]) -> None:
    _, base = api
    labels = httpx.get(f"{base}/api/v1/dags/labels").json()
    check(labels, "ListLabelResponse")
    assert labels["labels"] == ["nightly", "team=ops"]
    assert httpx.get(f"{base}/api/v1/dags/tags").json()["tags"] == ["nightly", "team=ops"]
    names = [f["fileName"] for f in httpx.get(f"{base}/api/v1/dags?sort=name&order=desc").json()["dags"]]
    assert names == sorted(names, reverse=True) and len(names) == 4
    assert httpx.get(f"{base}/api/v1/dags?sort=size").status_code == 400
    spec = httpx.get(f"{base}/api/v1/dags/greet/spec").json()
    assert isinstance(spec["valueReferenceNotices"], list)
    notices = httpx.get(f"{base}/api/v1/dags/parent/spec").json()["valueReferenceNotices"]
    for n in notices:
        check(n, "ValueReferenceNotice")
