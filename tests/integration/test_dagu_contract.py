"""The contract: every operation of Dagu's REST API (../shared/dagu/api-v1.yaml) that dagd serves
is called against a real dagd (48 today) — its success and its errors (a missing DAG or run, a bad body, a
conflict, a wrong webhook token) — and each answer's status must be one Dagu documents for that
operation (or its `default`), its JSON body valid against the schema Dagu gives for it. A served
operation missing from the plan below fails the test, so a new route cannot skip the contract."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from tests.conftest import DAGU
from tests.integration.test_daemon import Daemon, wait_until
from tests.integration.test_http_api import serving

DAGS = {
    "hello.yaml": "labels: [team=ops]\nsteps:\n  - {id: a, run: echo hello}\n  - {id: b, depends: a, run: echo b}\n",
    "parent.yaml": "steps:\n  - id: delegate\n    call: hello\n",
    "gate.yaml": "max_active_runs: 1\nsteps:\n  - id: wait\n    run: while [ ! -e {gate} ]; do sleep 0.02; done\n",
}
SPEC = "steps:\n  - {id: a, run: echo made}\n"


def _norm(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


@pytest.fixture(scope="module")
def dagu_api() -> dict[str, Any]:
    return dict(yaml.safe_load((DAGU / "api-v1.yaml").read_text()))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Daemon, str, Path]]:
    with serving(tmp_path, DAGS) as (d, base):
        yield d, base, tmp_path


class Contract:
    def __init__(self, base: str, doc: dict[str, Any]) -> None:
        self.base, self.doc = base, doc
        self.ops: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if method in ("get", "post", "put", "delete", "patch"):
                    self.ops[(method.upper(), _norm("/api/v1" + path))] = (op["operationId"], op)
        self.called: set[str] = set()

    def schema(self, node: dict[str, Any]) -> dict[str, Any]:
        return {**node, "components": self.doc["components"]}

    def call(
        self,
        method: str,
        template: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **params: str,
    ) -> Any:
        """One request; its status and JSON body checked against Dagu's operation."""
        op_id, op = self.ops[(method, _norm(template.split("?")[0]))]
        self.called.add(op_id)
        path = template
        for key, value in params.items():
            path = path.replace("{" + key + "}", value)
        kwargs: dict[str, Any] = {"timeout": 60}
        if body is not None:
            kwargs["content" if isinstance(body, bytes) else "json"] = body
        r = httpx.request(method, self.base + path, headers=headers, **kwargs)
        assert r.status_code == status, (op_id, method, path, r.status_code, r.text[:400])
        documented = op.get("responses", {})
        answer = documented.get(str(status)) or documented.get("default")
        assert answer is not None, f"{op_id}: Dagu documents no {status} and no default"
        content = (answer.get("content") or {}).get("application/json")
        if content and r.headers.get("content-type", "").startswith("application/json"):
            try:
                jsonschema.validate(r.json(), self.schema(content["schema"]))
            except jsonschema.ValidationError as exc:
                raise AssertionError(f"{op_id} {status}: {exc.message} at {list(exc.absolute_path)}") from None
        elif content:
            raise AssertionError(f"{op_id} {status}: Dagu answers JSON, dagd sent {r.headers.get('content-type')}")
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


def test_every_served_operation_answers_as_dagu_documents_it(
    api: tuple[Daemon, str, Path], dagu_api: dict[str, Any]
) -> None:
    _, base, _ = api
    c = Contract(base, dagu_api)
    ours = httpx.get(f"{base}/api/v1/openapi.json").json()["paths"]
    served = {c.ops[(m.upper(), _norm(p))][0] for p, ops in ours.items() for m in ops if (m.upper(), _norm(p)) in c.ops}

    # reads: what exists, and what does not
    c.call("GET", "/api/v1/health", 200)
    workers = wait_until(lambda: c.call("GET", "/api/v1/workers", 200)["workers"])  # after the first heartbeat
    assert isinstance(workers, list) and workers[0]["healthStatus"] == "healthy"
    c.call("GET", "/api/v1/metrics", 200)
    c.call("GET", "/api/v1/dags", 200)
    c.call("GET", "/api/v1/dags?sort=bogus", 400)
    c.call("GET", "/api/v1/dags/labels", 200)
    c.call("GET", "/api/v1/dags/tags", 200)
    c.call("GET", "/api/v1/dags/{f}", 200, f="hello")
    c.call("GET", "/api/v1/dags/{f}", 404, f="nosuch")
    c.call("GET", "/api/v1/dags/{f}/spec", 200, f="hello")
    c.call("GET", "/api/v1/dags/{f}/spec", 404, f="nosuch")
    c.call("POST", "/api/v1/dags/validate", 200, {"spec": SPEC})
    c.call("POST", "/api/v1/dags/validate", 200, {"spec": "steps: [{"})  # invalid YAML: valid=false
    c.call("POST", "/api/v1/dags/validate", 400, b"[1]")

    # runs: one finished (with a sub-DAG run), one running, one queued behind it
    done = c.call("POST", "/api/v1/dags/{f}/start-sync", 200, {"timeout": 60, "dagRunId": "r1"}, f="hello")
    assert done["dagRun"]["status"] == 4
    c.call("POST", "/api/v1/dags/{f}/start-sync", 400, {}, f="hello")
    c.call("POST", "/api/v1/dags/{f}/start-sync", 200, {"timeout": 60, "dagRunId": "p1"}, f="parent")
    c.call("POST", "/api/v1/dags/{f}/start", 200, {"dagRunId": "g1"}, f="gate")
    wait_until(lambda: httpx.get(f"{base}/api/v1/dag-runs/gate/g1").json()["dagRunDetails"]["status"] == 1)
    c.call("POST", "/api/v1/dags/{f}/start", 409, {"singleton": True}, f="gate")
    c.call("POST", "/api/v1/dags/{f}/start", 400, b"{", f="gate")
    c.call("POST", "/api/v1/dags/{f}/enqueue", 200, {"dagRunId": "q1"}, f="gate")
    c.call("POST", "/api/v1/dags/{f}/enqueue", 409, {"singleton": True}, f="gate")

    c.call("GET", "/api/v1/dag-runs", 200)
    c.call("GET", "/api/v1/dag-runs?status=bogus", 400)
    c.call("GET", "/api/v1/dag-runs/{n}", 200, n="hello")
    c.call("GET", "/api/v1/dags/{f}/dag-runs", 200, f="hello")
    c.call("GET", "/api/v1/dags/{f}/dag-runs/{r}", 200, f="hello", r="r1")
    c.call("GET", "/api/v1/dags/{f}/dag-runs/{r}", 404, f="hello", r="nosuch")
    for r in ("r1", "latest"):
        c.call("GET", "/api/v1/dag-runs/{n}/{r}", 200, n="hello", r=r)
    c.call("GET", "/api/v1/dag-runs/{n}/{r}", 404, n="hello", r="nosuch")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/log", 200, n="hello", r="r1")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/log", 404, n="hello", r="nosuch")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/steps/{s}/log", 200, n="hello", r="r1", s="a")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/steps/{s}/log", 404, n="hello", r="r1", s="nosuch")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/outputs", 200, n="hello", r="r1")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/outputs", 404, n="hello", r="nosuch")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/spec", 200, n="hello", r="r1")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/spec", 404, n="hello", r="nosuch")
    subs = c.call("GET", "/api/v1/dag-runs/{n}/{r}/sub-dag-runs", 200, n="parent", r="p1")["subRuns"]
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/sub-dag-runs", 404, n="parent", r="nosuch")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/sub-dag-runs/{s}", 200, n="parent", r="p1", s=subs[0]["dagRunId"])
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/sub-dag-runs/{s}", 404, n="parent", r="p1", s="nosuch")
    c.call("GET", "/api/v1/queues", 200)
    c.call("GET", "/api/v1/queues/{q}", 200, q="gate")
    c.call("GET", "/api/v1/queues/{q}", 404, q="nosuch")
    assert c.call("GET", "/api/v1/queues/{q}/items", 200, q="gate")["items"][0]["dagRunId"] == "q1"

    # changes
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/dequeue", 200, n="gate", r="q1")
    c.call("GET", "/api/v1/dag-runs/{n}/{r}/dequeue", 404, n="gate", r="q1")
    c.call("POST", "/api/v1/dag-runs/{n}/{r}/stop", 200, n="gate", r="g1")
    c.call("POST", "/api/v1/dag-runs/{n}/{r}/stop", 404, n="gate", r="g1")  # nothing running now
    c.call("POST", "/api/v1/dags/{f}/stop-all", 200, f="gate")
    c.call("POST", "/api/v1/dags/{f}/stop-all", 404, f="nosuch")
    c.call("POST", "/api/v1/dag-runs/{n}/{r}/retry", 200, {}, n="hello", r="r1")
    c.call("POST", "/api/v1/dag-runs/{n}/{r}/retry", 404, {}, n="hello", r="nosuch")
    c.call("POST", "/api/v1/dags/{f}/suspend", 200, {"suspend": True}, f="hello")
    c.call("POST", "/api/v1/dags/{f}/suspend", 200, {"suspend": False}, f="hello")
    c.call("POST", "/api/v1/dags/{f}/suspend", 400, {"suspend": "yes"}, f="hello")
    c.call("POST", "/api/v1/dags/{f}/suspend", 404, {"suspend": True}, f="nosuch")
    c.call("DELETE", "/api/v1/dag-runs/{n}/{r}", 204, n="gate", r="q1")
    c.call("DELETE", "/api/v1/dag-runs/{n}/{r}", 404, n="gate", r="q1")

    # a run of a spec sent with it (kept in the run's log folder; no DAG file appears)
    inline = "steps:\n  - {id: s, run: echo inline $1}\n"
    c.call("POST", "/api/v1/dag-runs", 200, {"spec": inline, "name": "adhoc", "dagRunId": "i1", "params": "one"})
    finished = wait_until(
        lambda: (
            (d := httpx.get(f"{base}/api/v1/dag-runs/adhoc/i1").json()).get("dagRunDetails", {}).get("status") == 4
            and d
        )
    )
    assert finished
    assert c.call("GET", "/api/v1/dag-runs/{n}/{r}/spec", 200, n="adhoc", r="i1")["spec"] == inline
    assert (
        "inline one"
        in c.call("GET", "/api/v1/dag-runs/{n}/{r}/steps/{s}/log", 200, n="adhoc", r="i1", s="s")["content"]
    )
    c.call("POST", "/api/v1/dag-runs", 409, {"spec": inline, "name": "adhoc", "dagRunId": "i1"})
    c.call("POST", "/api/v1/dag-runs", 400, {"spec": "steps: 3", "name": "adhoc"})
    c.call("POST", "/api/v1/dag-runs", 400, {"name": "adhoc"})
    c.call("POST", "/api/v1/dag-runs/enqueue", 200, {"spec": inline, "name": "adhoc2", "dagRunId": "i2"})
    c.call("POST", "/api/v1/dag-runs/enqueue", 400, {"spec": inline, "name": "../x"})
    assert httpx.get(f"{base}/api/v1/dags/adhoc").status_code == 404

    c.call("POST", "/api/v1/dags", 201, {"name": "made", "spec": SPEC})
    c.call("POST", "/api/v1/dags", 409, {"name": "made", "spec": SPEC})
    c.call("POST", "/api/v1/dags", 400, {"name": "bad", "spec": "steps: 3"})
    c.call("PUT", "/api/v1/dags/{f}/spec", 200, {"spec": SPEC.replace("made", "changed")}, f="made")
    c.call("PUT", "/api/v1/dags/{f}/spec", 400, {"spec": "steps: 3"}, f="made")

    # webhooks
    c.call("GET", "/api/v1/dags/{f}/webhook", 404, f="made")
    token = c.call("POST", "/api/v1/dags/{f}/webhook", 201, f="made")["token"]
    c.call("POST", "/api/v1/dags/{f}/webhook", 409, f="made")
    c.call("GET", "/api/v1/dags/{f}/webhook", 200, f="made")
    c.call("GET", "/api/v1/webhooks", 200)
    c.call("POST", "/api/v1/webhooks/{f}", 401, {}, f="made")
    c.call("POST", "/api/v1/webhooks/{f}", 404, {}, f="nosuch")
    token = c.call("POST", "/api/v1/dags/{f}/webhook/regenerate", 200, f="made")["token"]
    c.call("POST", "/api/v1/dags/{f}/webhook/regenerate", 404, f="nosuch")
    bearer = {"Authorization": f"Bearer {token}"}
    c.call("POST", "/api/v1/webhooks/{f}", 200, {"dagRunId": "w1"}, f="made", headers=bearer)
    c.call("POST", "/api/v1/webhooks/{f}", 409, {"dagRunId": "w1"}, f="made", headers=bearer)
    c.call("POST", "/api/v1/webhooks/{f}", 400, {"payload": 3}, f="made", headers=bearer)
    c.call("POST", "/api/v1/dags/{f}/webhook/toggle", 200, {"enabled": False}, f="made")
    c.call("POST", "/api/v1/webhooks/{f}", 403, {}, f="made", headers=bearer)
    c.call("POST", "/api/v1/dags/{f}/webhook/toggle", 400, {}, f="made")
    c.call("POST", "/api/v1/dags/{f}/webhook/toggle", 404, {"enabled": True}, f="nosuch")
    c.call("PUT", "/api/v1/dags/{f}/webhook/profile-selection", 200, {"allowedProfiles": []}, f="made")
    c.call("PUT", "/api/v1/dags/{f}/webhook/profile-selection", 400, {"allowedProfiles": ["prod"]}, f="made")
    c.call("POST", "/api/v1/dags/{f}/webhook/hmac/enable", 200, {"authMode": "token_and_hmac"}, f="made")
    c.call("POST", "/api/v1/dags/{f}/webhook/hmac/enable", 400, {"authMode": "sometimes"}, f="made")
    c.call("POST", "/api/v1/dags/{f}/webhook/hmac/enable", 404, {"authMode": "hmac_only"}, f="nosuch")
    observe = {"authMode": "token_and_hmac", "enforcementMode": "observe"}
    c.call("POST", "/api/v1/dags/{f}/webhook/hmac/configure", 200, observe, f="made")
    c.call("POST", "/api/v1/dags/{f}/webhook/hmac/configure", 400, {"enforcementMode": "strict"}, f="made")
    c.call("POST", "/api/v1/dags/{f}/webhook/hmac/regenerate", 200, f="made")
    c.call("POST", "/api/v1/dags/{f}/webhook/hmac/disable", 200, f="made")
    c.call("POST", "/api/v1/dags/{f}/webhook/hmac/regenerate", 400, f="made")
    c.call("POST", "/api/v1/dags/{f}/webhook/hmac/disable", 404, f="nosuch")
    c.call("DELETE", "/api/v1/dags/{f}/webhook", 204, f="made")
    c.call("DELETE", "/api/v1/dags/{f}/webhook", 404, f="made")

    c.call("DELETE", "/api/v1/dags/{f}", 204, f="made")
    c.call("DELETE", "/api/v1/dags/{f}", 404, f="made")

    assert served - c.called == set(), f"served but not in the contract plan: {sorted(served - c.called)}"
    assert len(served) >= 48
