"""The HTTP API of a real dagd over real HTTP: Dagu's shapes, SSE, metrics, the security baseline."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests import strangers
from tests.conftest import DAGU
from tests.integration.test_daemon import Daemon, activated_env, http_answers, start_daemon, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_with_http(root: Path, extra_env: dict[str, str | None] | None = None) -> tuple[Daemon, str]:
    """dagd with its HTTP server on a free loopback port, once it answers."""
    port = free_port()
    d = start_daemon(root, extra_env, args=("--http-bind", f"127.0.0.1:{port}"))
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_answers(base))
    return d, base


@contextlib.contextmanager
def serving(root: Path, dags: dict[str, str]) -> Iterator[tuple[Daemon, str]]:
    """dagd over HTTP with these DAG files, stopped after. `{gate}` in a file names a path that,
    once the test creates it, lets a waiting step end (it is created at the end too)."""
    (root / "dags").mkdir()
    for name, text in dags.items():
        (root / "dags" / name).write_text(text.replace("{gate}", str(root / "gate")))
    d, base = start_with_http(root)
    try:
        yield d, base
    finally:
        (root / "gate").touch()
        d.proc.terminate()
        d.proc.wait(timeout=30)


def hash_password(secret: str) -> str:
    """A password hash for http_auth.users, made as an operator makes it: dagd --hash-password."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "dagd.daemon", "--hash-password"],
        input=secret + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.yaml").write_text(
        "description: says hello\nlabels: [team=ops]\nschedule: '0 3 * * *'\nsteps:\n  - {id: a, run: echo hello}\n  - {id: b, depends: a, run: sleep 0.3}\n"
    )
    d, base = start_with_http(tmp_path)
    yield d, base
    d.proc.terminate()
    d.proc.wait(timeout=30)


def dagu_schema(name: str) -> dict:  # type: ignore[type-arg]
    doc = yaml.safe_load((DAGU / "api-v1.yaml").read_text())
    return {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}


def check(instance: object, name: str) -> None:
    import jsonschema

    jsonschema.validate(instance, dagu_schema(name))


def test_health_and_dags_match_dagus_schemas(api: tuple[Daemon, str]) -> None:
    _, base = api
    health = httpx.get(base + "/api/v1/health").json()
    check(health, "HealthResponse")
    dags = httpx.get(base + "/api/v1/dags").json()
    assert [f["fileName"] for f in dags["dags"]] == ["hello"]
    check(dags["dags"][0], "DAGFile")
    assert dags["dags"][0]["dag"]["description"] == "says hello" and dags["dags"][0]["nextRun"]


def test_start_a_run_follow_it_and_read_its_details(api: tuple[Daemon, str]) -> None:
    _, base = api
    events: list[str] = []

    def listen() -> None:
        with httpx.stream("GET", base + "/api/v1/events", timeout=30) as r:
            for line in r.iter_lines():
                events.append(line)
                if "RunFinished" in line:
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(0.5)
    r = httpx.post(base + "/api/v1/dags/hello/start", json={})
    assert r.status_code == 200, r.text
    run_id = r.json()["dagRunId"]
    t.join(timeout=20)
    assert any("StepChanged" in e for e in events) and any("RunFinished" in e for e in events)
    details = httpx.get(f"{base}/api/v1/dag-runs/hello/{run_id}").json()["dagRunDetails"]
    check(details, "DAGRunSummary")
    assert details["statusLabel"] == "succeeded" and details["status"] == 4
    for node in details["nodes"]:
        check(node, "Node")
        assert node["statusLabel"] == "succeeded" and node["maxRssKb"] > 0
    metrics = httpx.get(base + "/api/v1/metrics").text
    assert 'dagu_dag_runs_total{dag="hello",status="succeeded"} 1' in metrics
    assert "# TYPE dagu_dag_run_duration_seconds histogram" in metrics
    assert 'dagu_dag_run_duration_seconds_bucket{dag="hello",le="5"} 1' in metrics  # a 0.3 s run
    assert 'dagu_dag_run_duration_seconds_count{dag="hello"} 1' in metrics


def test_security_baseline(api: tuple[Daemon, str]) -> None:
    _, base = api
    assert httpx.get(base + "/api/v1/health", headers={"Host": "evil.example"}).status_code == 421  # DNS rebinding
    r = httpx.post(base + "/api/v1/dags/hello/start", json={}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403  # CSRF
    r = httpx.post(base + "/api/v1/dags/hello/start", json={}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    for bad in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e", "a%00b"):
        r = httpx.get(f"{base}/api/v1/dag-runs/{bad}/x")
        assert r.status_code in (400, 404) and "Traceback" not in r.text
    r = httpx.get(f"{base}/api/v1/dag-runs/hello/nope")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = httpx.post(base + "/api/v1/dags/hello/start", content=b"{not json")
    assert r.status_code == 400 and json.loads(r.text)["message"]


def test_a_non_loopback_bind_without_auth_is_refused(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "dagd.daemon", "--user", "--http-bind", "0.0.0.0:18090"],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "DAGD_STATE_DIR": str(tmp_path / "s"),
            "DAGD_SOCKET": str(tmp_path / "s.sock"),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0 and "without authentication" in r.stderr


def test_spec_edit_validates_before_saving(api: tuple[Daemon, str]) -> None:
    d, base = api
    path = d.root / "dags" / "hello.yaml"
    before = path.read_text()
    spec = httpx.get(base + "/api/v1/dags/hello/spec").json()
    assert spec["spec"] == before and spec["dag"]["name"] == "hello"
    check(spec["dag"], "DAGDetails")
    bad = httpx.put(
        base + "/api/v1/dags/hello/spec", json={"spec": "steps:\n  - run: echo a b\n    timeout_sec: soon\n"}
    )
    assert bad.status_code == 400 and any("timeout_sec" in e for e in bad.json()["errors"])
    assert path.read_text() == before  # untouched
    good = httpx.put(
        base + "/api/v1/dags/hello/spec", json={"spec": "description: edited\nsteps:\n  - run: echo edited\n"}
    )
    assert good.status_code == 200 and good.json() == {"errors": []}
    assert "edited" in path.read_text()
    dags = httpx.get(base + "/api/v1/dags").json()["dags"]
    assert dags[0]["dag"]["description"] == "edited"


def test_validate_enqueue_suspend_runs_logs_and_retry(api: tuple[Daemon, str]) -> None:
    _, base = api
    v = httpx.post(base + "/api/v1/dags/validate", json={"spec": "steps: []\n"}).json()
    assert v["valid"] is False and v["errors"]
    assert httpx.post(base + "/api/v1/dags/validate", json={"spec": "steps:\n  - run: echo ok then\n"}).json()["valid"]
    assert httpx.post(base + "/api/v1/dags/hello/suspend", json={"suspend": True}).status_code == 200
    assert httpx.get(base + "/api/v1/dags").json()["dags"][0]["suspended"] is True
    rid = httpx.post(base + "/api/v1/dags/hello/enqueue", json={}).json()["dagRunId"]
    deadline = time.monotonic() + 20
    while httpx.get(f"{base}/api/v1/dag-runs/hello/{rid}").json()["dagRunDetails"]["statusLabel"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    runs = httpx.get(base + "/api/v1/dags/hello/dag-runs").json()["dagRuns"]
    assert [r["dagRunId"] for r in runs] == [rid]
    log = httpx.get(f"{base}/api/v1/dag-runs/hello/{rid}/steps/a/log").json()
    check(log, "Log")
    assert log["content"] == "hello"
    assert "==> a (succeeded) <==" in httpx.get(f"{base}/api/v1/dag-runs/hello/{rid}/log").json()["content"]
    assert httpx.post(f"{base}/api/v1/dag-runs/hello/{rid}/retry", json={"dagRunId": rid}).status_code == 200
    assert httpx.post(base + "/api/v1/dags/hello/stop-all").json() == {"errors": []}


def test_dag_details_runs_listing_and_queues(api: tuple[Daemon, str]) -> None:
    d, base = api
    detail = httpx.get(base + "/api/v1/dags/hello").json()
    assert detail["dag"]["name"] == "hello" and detail["latestDAGRun"]["statusLabel"] == "not_started"
    check(detail["dag"], "DAGDetails")
    (d.root / "dags" / "slow.yaml").write_text("max_active_runs: 1\nsteps:\n  - run: sleep 1.5\n")
    d.ctl("reload")
    a = httpx.post(base + "/api/v1/dags/slow/enqueue", json={}).json()["dagRunId"]
    b = httpx.post(base + "/api/v1/dags/slow/enqueue", json={}).json()["dagRunId"]
    wait_until(
        lambda: httpx.get(f"{base}/api/v1/dag-runs/slow/{a}").json()["dagRunDetails"]["statusLabel"] == "running"
    )
    q = httpx.get(base + "/api/v1/queues").json()
    check(q, "QueuesResponse")
    slow = next(x for x in q["queues"] if x["name"] == "slow")
    assert (slow["runningCount"], slow["queuedCount"]) == (1, 1) and slow["running"][0]["dagRunId"] == a
    runs = httpx.get(base + "/api/v1/dag-runs", params={"name": "slow"}).json()
    check(runs, "DAGRunsPageResponse")
    assert {r["dagRunId"] for r in runs["dagRuns"]} == {a, b}


def test_create_delete_and_outputs(api: tuple[Daemon, str]) -> None:
    d, base = api
    spec = "steps:\n  - {id: calc, run: echo 42, output: RESULT_VALUE}\n"
    r = httpx.post(base + "/api/v1/dags", json={"name": "calc", "spec": spec})
    assert r.status_code == 201 and r.json() == {"name": "calc"}
    assert (d.root / "dags" / "calc.yaml").read_text() == spec
    assert httpx.post(base + "/api/v1/dags", json={"name": "calc"}).status_code == 409
    assert httpx.post(base + "/api/v1/dags", json={"name": "../escape"}).status_code == 400
    assert httpx.post(base + "/api/v1/dags", json={"name": "broken", "spec": "steps: ["}).status_code == 400
    rid = httpx.post(base + "/api/v1/dags/calc/start", json={}).json()["dagRunId"]
    deadline = time.monotonic() + 20
    while httpx.get(f"{base}/api/v1/dag-runs/calc/{rid}").json()["dagRunDetails"]["statusLabel"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    out = httpx.get(f"{base}/api/v1/dag-runs/calc/{rid}/outputs").json()
    check(out, "DAGRunOutputs")
    assert out["outputs"] == {"resultValue": "42"} and out["metadata"]["status"] == "succeeded"
    assert httpx.delete(base + "/api/v1/dags/calc").status_code == 204
    assert not (d.root / "dags" / "calc.yaml").exists()
    assert httpx.get(base + "/api/v1/dags/calc").status_code == 404


def test_our_openapi_document_lists_every_route(api: tuple[Daemon, str]) -> None:
    _, base = api
    doc = httpx.get(base + "/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "dagd API"
    for path in (
        "/api/v1/health",
        "/api/v1/dags",
        "/api/v1/dags/{file_name}/start",
        "/api/v1/dag-runs/{name}/{run_id}",
        "/api/v1/events",
    ):
        assert path in doc["paths"], path


def test_a_taken_port_is_a_clean_start_up_error(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "dagd.daemon", "--user", "--http-bind", f"127.0.0.1:{port}"],
            env={
                "PATH": os.environ["PATH"],
                "HOME": str(tmp_path),
                "DAGD_STATE_DIR": str(tmp_path / "s"),
                "DAGD_SOCKET": str(tmp_path / "s.sock"),
            },
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert r.returncode == 1 and "Address already in use" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s.sock").exists()


def test_start_sync_waits_for_the_end_or_answers_408(api: tuple[Daemon, str]) -> None:
    d, base = api
    r = httpx.post(base + "/api/v1/dags/hello/start-sync", json={"timeout": 30}, timeout=40)
    assert r.status_code == 200, r.text
    run = r.json()["dagRun"]
    check(run, "DAGRunDetails")
    assert run["statusLabel"] == "succeeded" and [n["statusLabel"] for n in run["nodes"]] == ["succeeded"] * 2
    (d.root / "dags" / "slow.yaml").write_text("steps:\n  - run: sleep 5\n")
    deadline = time.monotonic() + 10
    while httpx.get(base + "/api/v1/dags/slow").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    t0 = time.monotonic()
    r = httpx.post(base + "/api/v1/dags/slow/start-sync", json={"timeout": 1}, timeout=40)
    assert r.status_code == 408 and r.json()["dagRunId"] and time.monotonic() - t0 < 4
    busy = httpx.post(base + "/api/v1/dags/slow/start-sync", json={"timeout": 1, "singleton": True})
    assert busy.status_code == 409
    assert httpx.post(base + "/api/v1/dags/hello/start-sync", json={}).status_code == 400  # timeout is required
    httpx.post(base + "/api/v1/dags/slow/stop-all")


def test_run_list_pages_with_a_cursor_and_filters_by_status(api: tuple[Daemon, str]) -> None:
    _, base = api
    ids = []
    for i in range(5):
        r = httpx.post(base + "/api/v1/dags/hello/start-sync", json={"timeout": 30, "dagRunId": f"run-{i}"}, timeout=40)
        ids.append(r.json()["dagRun"]["dagRunId"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        q = f"/api/v1/dag-runs?name=hello&limit=2{'&cursor=' + cursor if cursor else ''}"
        page = httpx.get(base + q).json()
        check(page, "DAGRunsPageResponse")
        seen += [r["dagRunId"] for r in page["dagRuns"]]
        pages += 1
        cursor = page.get("nextCursor")
        if not cursor:
            break
    assert seen == list(reversed(ids)) and pages == 3
    assert httpx.get(base + "/api/v1/dag-runs?status=4&name=hello").json()["dagRuns"]
    assert httpx.get(base + "/api/v1/dag-runs?status=2&name=hello").json()["dagRuns"] == []
    assert httpx.get(base + "/api/v1/dag-runs?cursor=garbage!").status_code == 400
    assert httpx.get(base + "/api/v1/dag-runs?limit=0").status_code == 400
    # a time window (Dagu's fromDate/toDate, Unix seconds): runs started within it
    started = {r["dagRunId"]: r["startedAt"] for r in httpx.get(base + "/api/v1/dag-runs?name=hello").json()["dagRuns"]}
    third = int(dt.datetime.fromisoformat(started["run-2"]).timestamp())
    window = httpx.get(f"{base}/api/v1/dag-runs?name=hello&fromDate={third}&toDate={third + 3600}").json()
    check(window, "DAGRunsPageResponse")
    assert {"run-2", "run-3", "run-4"} <= {r["dagRunId"] for r in window["dagRuns"]}
    first = int(dt.datetime.fromisoformat(started["run-0"]).timestamp())
    assert httpx.get(f"{base}/api/v1/dag-runs?name=hello&toDate={first - 1}").json()["dagRuns"] == []
    later = httpx.get(f"{base}/api/v1/dag-runs?name=hello&fromDate={third + 3600}").json()["dagRuns"]
    assert later == []
    assert httpx.get(base + "/api/v1/dag-runs?fromDate=-1").status_code == 400
    # labels (Dagu's filter): runs of the DAGs that have them all
    for wanted in ("team=ops", "team", "team=ops,team"):  # hello.yaml: labels [team=ops]
        mine = httpx.get(base + f"/api/v1/dag-runs?labels={wanted}").json()
        check(mine, "DAGRunsPageResponse")
        assert len(mine["dagRuns"]) == 5 and {r["name"] for r in mine["dagRuns"]} == {"hello"}, wanted
    for other in ("team=dev", "nightly", "team=ops,nightly"):
        assert httpx.get(base + f"/api/v1/dag-runs?labels={other}").json()["dagRuns"] == [], other
    assert httpx.get(base + "/api/v1/dag-runs?labels=a&tags=a").status_code == 400


def test_log_paging_head_offset_limit_and_live_stream(api: tuple[Daemon, str]) -> None:
    d, base = api
    (d.root / "dags" / "talk.yaml").write_text(
        "steps:\n  - id: talk\n    run: for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done\n"
    )
    deadline = time.monotonic() + 10
    while httpx.get(base + "/api/v1/dags/talk").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    rid = httpx.post(base + "/api/v1/dags/talk/start", json={}).json()["dagRunId"]
    while httpx.get(f"{base}/api/v1/dag-runs/talk/{rid}").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    text = ""
    events = []
    with httpx.stream("GET", f"{base}/api/v1/dag-runs/talk/{rid}/steps/talk/log/stream", timeout=30) as r:
        event = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
                events.append(event)
            elif line.startswith("data:") and event == "chunk":
                text += json.loads(line[5:])["text"]
            if event == "end":
                break
    assert text.splitlines() == [f"line {i}" for i in range(1, 6)]
    assert events.count("chunk") >= 2  # it arrived while the step ran, not in one piece at the end
    url = f"{base}/api/v1/dag-runs/talk/{rid}/steps/talk/log"
    head = httpx.get(url + "?head=2").json()
    check(head, "Log")
    assert head["content"] == "line 1\nline 2" and head["totalLines"] == 5 and head["hasMore"]
    assert httpx.get(url + "?offset=3&limit=2").json()["content"] == "line 3\nline 4"
    assert httpx.get(url + "?tail=1").json()["content"] == "line 5"


def test_dag_list_filters_pages_and_counts_runs(api: tuple[Daemon, str]) -> None:
    d, base = api
    for i in range(3):
        (d.root / "dags" / f"extra{i}.yaml").write_text(f"labels: [batch{i % 2}]\nsteps:\n  - run: sleep 2\n")
    deadline = time.monotonic() + 10
    while len(httpx.get(base + "/api/v1/dags?perPage=100").json()["dags"]) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page = httpx.get(base + "/api/v1/dags?perPage=3&page=2").json()
    assert [f["fileName"] for f in page["dags"]] == ["hello"] and page["pagination"]["totalPages"] == 2
    assert [f["fileName"] for f in httpx.get(base + "/api/v1/dags?name=EXTRA").json()["dags"]] == [
        "extra0",
        "extra1",
        "extra2",
    ]
    assert [f["fileName"] for f in httpx.get(base + "/api/v1/dags?tags=batch1").json()["dags"]] == ["extra1"]
    httpx.post(base + "/api/v1/dags/extra0/start", json={})
    httpx.post(base + "/api/v1/dags/extra0/enqueue", json={})
    while True:
        f = httpx.get(base + "/api/v1/dags?name=extra0").json()["dags"][0]
        if f["runningCount"] == 1:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert f["queuedCount"] == 1
    httpx.post(base + "/api/v1/dags/extra0/stop-all")


def test_the_web_ui_is_served_with_a_fallback_for_client_routes(api: tuple[Daemon, str]) -> None:
    from dagd.http.app import UI_DIR

    _, base = api
    if not (UI_DIR / "index.html").is_file():
        pytest.fail("the web UI is not built (make web)")
    index = httpx.get(base + "/")
    assert index.status_code == 200 and '<div id="root">' in index.text
    assert index.headers["content-type"].startswith("text/html")
    deep = httpx.get(base + "/dags/hello/runs/abc")
    assert deep.status_code == 200 and deep.text == index.text
    asset = next(p for p in (UI_DIR / "assets").iterdir() if p.suffix == ".js")
    r = httpx.get(f"{base}/assets/{asset.name}")
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
    assert r.headers["content-type"].startswith("text/javascript")
    for probe in ("/..%2F..%2Fpyproject.toml", "/assets/..%2F..%2Fapp.py", "/%2e%2e/%2e%2e/etc/passwd"):
        r = httpx.get(base + probe)
        assert r.text == index.text, probe  # never a file outside the UI folder
    missing = httpx.get(base + "/api/v1/no-such-route")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_basic_users_and_bearer_tokens_guard_everything_but_health(tmp_path: Path) -> None:
    import base64
    import hashlib

    hashed = hash_password("s3cret pass")
    assert hashed.startswith("scrypt$") and "s3cret" not in hashed
    token = "tok-" + "x" * 40
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.yaml").write_text("steps:\n  - run: echo hi\n")
    port = free_port()
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "http_bind": f"0.0.0.0:{port}",  # off loopback: allowed because auth is configured
                "http_auth": {
                    "users": {"alice": hashed},
                    "tokens": ["sha256:" + hashlib.sha256(token.encode()).hexdigest()],
                },
            }
        )
    )
    d = start_daemon(tmp_path, args=("--config", str(tmp_path / "config.yaml")))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_answers(base))
        assert httpx.get(base + "/api/v1/health", timeout=2).status_code == 200  # open for probes
        bob = strangers.user(strangers.BOB)  # root gets in by its uid over loopback; bob must log in
        for path in ("/api/v1/dags", "/", "/dags/hello", "/api/v1/events"):
            code, headers, _ = bob.curl("GET", base + path)
            assert code == 401 and headers["www-authenticate"].startswith("Basic"), path
        assert httpx.get(base + "/api/v1/dags").status_code == 200  # root, by the uid of its socket
        alice = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret pass").decode()}
        wrong = {"Authorization": "Basic " + base64.b64encode(b"alice:guess").decode()}
        assert httpx.get(base + "/api/v1/dags", headers=alice).status_code == 200
        assert httpx.get(base + "/", headers=alice).status_code == 200
        assert httpx.get(base + "/api/v1/dags", headers=wrong).status_code == 401
        assert httpx.get(base + "/api/v1/dags", headers={"Authorization": "Basic !!!"}).status_code == 401
        assert httpx.get(base + "/api/v1/dags", headers={"Authorization": "Bearer nope"}).status_code == 401
        # a browser replays basic credentials cross-site: those state changes stay refused
        cross = {**alice, "Origin": "http://evil.example"}
        assert httpx.post(base + "/api/v1/dags/hello/start", json={}, headers=cross).status_code == 403
        assert httpx.post(base + "/api/v1/dags/hello/start", json={}, headers=alice).status_code == 200
        bearer = {"Authorization": f"Bearer {token}", "Origin": "http://automation.example"}
        assert httpx.post(base + "/api/v1/dags/hello/start", json={}, headers=bearer).status_code == 200
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=30)


def test_a_malformed_http_auth_section_is_a_clear_start_up_error(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "config.yaml").write_text("http_auth:\n  users:\n    bob: plaintext-password\n")
    r = subprocess.run(
        [sys.executable, "-m", "dagd.daemon", "--user", "--config", str(tmp_path / "config.yaml")],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DAGD_STATE_DIR": str(tmp_path / "s")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0 and "http_auth.users.bob: not a password hash" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_http_port_can_come_from_socket_activation(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.yaml").write_text("steps:\n  - run: echo hi\n")
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(str(tmp_path / "control.sock"))
    control.listen(16)
    http = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    http.bind(("127.0.0.1", 0))
    http.listen(16)
    port = http.getsockname()[1]
    unused = free_port()
    env = activated_env(tmp_path, "control:http")
    # what systemd does for dagd.socket with both ListenStream= lines: fds 3 and 4, named
    launcher = (
        f"import os, sys; os.dup2({control.fileno()}, 3); os.dup2({http.fileno()}, 4); "
        "os.environ['LISTEN_PID'] = str(os.getpid()); "
        f"os.execv(sys.executable, [sys.executable, '-m', 'dagd.daemon', '--user', '--http-bind', '127.0.0.1:{unused}'])"
    )
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", launcher], env=env, pass_fds=(control.fileno(), http.fileno()), stderr=log
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/dags", timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, (tmp_path / "log").read_text()
                time.sleep(0.1)
        assert r.status_code == 200 and [f["fileName"] for f in r.json()["dags"]] == ["hello"]
        with pytest.raises(httpx.ConnectError):  # the configured address was not bound as well
            httpx.get(f"http://127.0.0.1:{unused}/api/v1/health", timeout=2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        control.close()
        http.close()


def test_sub_dag_runs_are_listed_under_their_parent(api: tuple[Daemon, str]) -> None:
    d, base = api
    (d.root / "dags" / "parent.yaml").write_text("steps:\n  - id: delegate\n    call: hello\n")
    deadline = time.monotonic() + 10
    while httpx.get(base + "/api/v1/dags/parent").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    run = httpx.post(base + "/api/v1/dags/parent/start-sync", json={"timeout": 30}, timeout=40).json()["dagRun"]
    subs = httpx.get(f"{base}/api/v1/dag-runs/parent/{run['dagRunId']}/sub-dag-runs").json()
    check(subs["subRuns"][0], "SubDAGRunDetail")
    assert [(s["dagName"], s["statusLabel"]) for s in subs["subRuns"]] == [("hello", "succeeded")]
    child = httpx.get(f"{base}/api/v1/dag-runs/hello/{subs['subRuns'][0]['dagRunId']}").json()["dagRunDetails"]
    assert (child["rootDAGRunName"], child["rootDAGRunId"]) == ("parent", run["dagRunId"])
    assert (child["parentDAGRunName"], child["parentDAGRunId"]) == ("parent", run["dagRunId"])
    by_file = httpx.get(f"{base}/api/v1/dags/parent/dag-runs/{run['dagRunId']}").json()
    check(by_file["dagRun"], "DAGRunDetails")
    assert by_file["dagRun"]["subRuns"][0]["name"] == "hello"
    assert httpx.get(f"{base}/api/v1/dags/parent/dag-runs/nope").status_code == 404


def test_a_read_only_dags_folder_is_a_clear_403(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.yaml").write_text("steps:\n  - run: echo hi\n")
    d, base = start_with_http(tmp_path)
    try:
        # what ProtectSystem=strict without ReadWritePaths does: the folder is on a read-only mount
        subprocess.run(["mount", "--bind", "-o", "ro", str(tmp_path / "dags"), str(tmp_path / "dags")], check=True)
        try:
            spec = "steps:\n  - run: echo changed\n"
            for r in (
                httpx.post(base + "/api/v1/dags", json={"name": "new", "spec": spec}),
                httpx.put(base + "/api/v1/dags/hello/spec", json={"spec": spec}),
                httpx.delete(base + "/api/v1/dags/hello"),
            ):
                assert r.status_code == 403 and "is read-only for dagd" in r.json()["message"], r.text
        finally:
            subprocess.run(["umount", str(tmp_path / "dags")], check=True)
        assert (tmp_path / "dags" / "hello.yaml").read_text() == "steps:\n  - run: echo hi\n"
        assert d.proc.poll() is None
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=30)


def test_a_passed_socket_on_every_interface_without_credentials_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "dags").mkdir()
    http = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    http.bind(("0.0.0.0", 0))  # what `ListenStream=8090` gives: every interface
    http.listen(16)
    env = activated_env(tmp_path, "http")
    launcher = (
        f"import os, sys; os.dup2({http.fileno()}, 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
        "os.execv(sys.executable, [sys.executable, '-m', 'dagd.daemon', '--user'])"  # http_bind says loopback
    )
    try:
        p = subprocess.run(
            [sys.executable, "-c", launcher],
            env=env,
            pass_fds=(http.fileno(),),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        http.close()
    assert p.returncode != 0
    assert "refusing to serve HTTP on 0.0.0.0:" in p.stderr and "without authentication" in p.stderr
    assert "Traceback" not in p.stderr


def _client(address: str) -> httpx.Client:
    """An HTTP client whose connections come from `address` (a loopback address of its own)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_password_checks_leave_the_loop_free_cost_the_same_and_are_rate_limited(tmp_path: Path) -> None:
    import base64
    import statistics

    hashed = hash_password("right")
    (tmp_path / "dags").mkdir()
    port = free_port()
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"http_bind": f"127.0.0.1:{port}", "http_auth": {"users": {"alice": hashed}}})
    )
    d = start_daemon(tmp_path, args=("--config", str(tmp_path / "config.yaml")))
    base = f"http://127.0.0.1:{port}"

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    try:
        wait_until(lambda: http_answers(base))
        # 8 clients (each from its own address, under the per-address limit) guess passwords
        stop = threading.Event()

        def guess(i: int) -> None:
            with _client(f"127.0.0.{10 + i}") as c:
                for n in range(9):
                    if stop.is_set():
                        return
                    assert c.get(base + "/api/v1/dags", headers=basic("alice", f"guess{n}")).status_code == 401

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        latencies = []
        while any(t.is_alive() for t in threads):
            began = time.perf_counter()
            assert httpx.get(base + "/api/v1/health", timeout=10).status_code == 200
            latencies.append(time.perf_counter() - began)
        stop.set()
        for t in threads:
            t.join()
        # was ~0.6 s with hashing on the loop; the loop watch (conftest) proves no step held it
        assert statistics.median(latencies) < 0.25, latencies

        # an unknown user costs what a known one does (no user enumeration by timing)
        def cost(user: str, address: str) -> float:
            with _client(address) as c:
                began = time.perf_counter()
                assert c.get(base + "/api/v1/dags", headers=basic(user, "nope")).status_code == 401
                return time.perf_counter() - began

        known = statistics.median(cost("alice", f"127.0.1.{i}") for i in range(1, 6))
        unknown = statistics.median(cost("mallory", f"127.0.2.{i}") for i in range(1, 6))
        assert 1 / 3 < unknown / known < 3, (known, unknown)

        # ten failures from one address: that address waits, even with the right password
        with _client("127.0.3.1") as c:
            for _ in range(10):
                assert c.get(base + "/api/v1/dags", headers=basic("alice", "bad")).status_code == 401
            r = c.get(base + "/api/v1/dags", headers=basic("alice", "right"))
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        with _client("127.0.3.2") as c:
            assert c.get(base + "/api/v1/dags", headers=basic("alice", "right")).status_code == 200
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=30)


def test_a_dag_file_deleted_behind_dagds_back_is_a_404_not_a_500(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "gone.yaml").write_text("steps:\n  - run: echo hi\n")
    port = free_port()
    d = start_daemon(tmp_path, args=("--http-bind", f"127.0.0.1:{port}", "--poll", "3600"))  # no folder scan now
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_answers(base))
        (tmp_path / "dags" / "gone.yaml").unlink()
        r = httpx.get(base + "/api/v1/dags/gone/spec")
        assert r.status_code == 404 and "cannot read the file of gone" in r.json()["message"], r.text
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=30)
