"""Webhooks as Dagu defines them, against a real dagd over real HTTP: the token and HMAC rules,
payload and headers reaching the run, idempotent run ids, every management route checked against
Dagu's schemas, and a stranger (another local user, with curl) who gets in with the token and
nowhere without it — nor anywhere else with it."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import strangers
from tests.integration.test_daemon import Daemon, wait_until
from tests.integration.test_http_api import check, start_with_http

HOOKED = """
webhook:
  forward_headers: [X-GitHub-Event, x-request-id]
steps:
  - id: capture
    run: |
      printf '%s' "$WEBHOOK_PAYLOAD" > {out}/payload.json
      printf '%s' "$WEBHOOK_HEADERS" > {out}/headers.json
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Daemon, str, Path]]:
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "deploy.yaml").write_text(HOOKED.replace("{out}", str(out)))
    (tmp_path / "dags" / "other.yaml").write_text("steps:\n  - run: 'true'\n")
    d, base = start_with_http(tmp_path)
    yield d, base, out
    d.proc.terminate()
    d.proc.wait(timeout=30)


def _finished(base: str, rid: str) -> dict | None:  # type: ignore[type-arg]
    doc = httpx.get(f"{base}/api/v1/dag-runs/deploy/{rid}").json()
    return doc if doc.get("dagRunDetails", {}).get("status") in (4, 2, 3) else None


def test_a_webhook_is_created_shown_once_and_triggers_with_its_token(api: tuple[Daemon, str, Path]) -> None:
    _, base, out = api
    assert httpx.get(f"{base}/api/v1/dags/deploy/webhook").status_code == 404
    created = httpx.post(f"{base}/api/v1/dags/deploy/webhook")
    assert created.status_code == 201, created.text
    check(created.json(), "WebhookCreateResponse")
    token = created.json()["token"]
    details = created.json()["webhook"]
    assert details["authMode"] == "token_only" and details["enabled"] and token.startswith(details["tokenPrefix"])
    assert httpx.post(f"{base}/api/v1/dags/deploy/webhook").status_code == 409  # one per DAG
    shown = httpx.get(f"{base}/api/v1/dags/deploy/webhook").json()
    check(shown, "WebhookDetails")
    assert token not in json.dumps(shown) and "lastUsedAt" not in shown

    hook = f"{base}/api/v1/webhooks/deploy"
    body = {"dagRunId": "hook_1", "payload": {"ref": "main", "commits": [1, 2], "a": {"z": 1, "b": None}}}
    headers = {"Authorization": f"Bearer {token}", "X-GitHub-Event": "push", "Cookie": "s=secret"}
    r = httpx.post(hook, json=body, headers={**headers, "X-Request-Id": "abc"})
    assert r.status_code == 200, r.text
    check(r.json(), "WebhookResponse")
    assert r.json() == {"dagRunId": "hook_1", "dagName": "deploy"}
    doc = wait_until(lambda: _finished(base, "hook_1"))
    assert doc["dagRunDetails"]["status"] == 4, doc
    assert (out / "payload.json").read_text() == '{"a":{"b":null,"z":1},"commits":[1,2],"ref":"main"}'
    assert json.loads((out / "headers.json").read_text()) == {"x-github-event": "push", "x-request-id": "abc"}
    assert doc["dagRunDetails"]["triggerType"] == "webhook"
    assert "WEBHOOK_PAYLOAD" not in json.dumps(doc["dagRunDetails"].get("params", ""))  # not a param
    assert httpx.get(f"{base}/api/v1/dags/deploy/webhook").json()["lastUsedAt"]

    again = httpx.post(hook, json=body, headers=headers)
    assert again.status_code == 409 and "hook_1" in again.json()["message"]  # the run id is an idempotency key
    for wrong in ({}, {"Authorization": "Bearer dagd_wh_nope"}, {"Authorization": token}):
        r = httpx.post(hook, json={"payload": {}}, headers=wrong)
        assert r.status_code == 401, (wrong, r.text)
        check(r.json(), "Error")
    assert httpx.post(hook, content=b"{not json", headers=headers).status_code == 400
    assert httpx.post(hook, json={"payload": [1]}, headers=headers).status_code == 400
    assert httpx.post(hook, json={}, headers={**headers, "X-Dagu-Profile": "prod"}).status_code == 403

    listed = httpx.get(f"{base}/api/v1/webhooks").json()
    check(listed, "WebhookListResponse")
    assert [w["dagName"] for w in listed["webhooks"]] == ["deploy"]

    off = httpx.post(f"{base}/api/v1/dags/deploy/webhook/toggle", json={"enabled": False})
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert httpx.post(hook, json={}, headers=headers).status_code == 403
    httpx.post(f"{base}/api/v1/dags/deploy/webhook/toggle", json={"enabled": True})

    renewed = httpx.post(f"{base}/api/v1/dags/deploy/webhook/regenerate").json()
    check(renewed, "WebhookCreateResponse")
    assert httpx.post(hook, json={}, headers=headers).status_code == 401  # the old token is dead
    r = httpx.post(hook, json={}, headers={"Authorization": f"Bearer {renewed['token']}"})
    assert r.status_code == 200 and r.json()["dagRunId"]
    assert (out / "payload.json").exists()

    assert httpx.delete(f"{base}/api/v1/dags/deploy/webhook").status_code == 204
    gone = httpx.post(hook, json={}, headers={"Authorization": f"Bearer {renewed['token']}"})
    assert gone.status_code == 404 and gone.json()["message"] == "no webhook for deploy"
    nodag = httpx.post(f"{base}/api/v1/webhooks/nosuch", json={}, headers=headers)
    assert nodag.status_code == 404 and nodag.json()["message"] == "no webhook for nosuch"  # (the same answer)


def _signed(secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def test_hmac_signatures_strict_and_observed(api: tuple[Daemon, str, Path]) -> None:
    _, base, _ = api
    token = httpx.post(f"{base}/api/v1/dags/deploy/webhook").json()["token"]
    hook = f"{base}/api/v1/webhooks/deploy"
    on = httpx.post(f"{base}/api/v1/dags/deploy/webhook/hmac/enable", json={"authMode": "hmac_only"})
    assert on.status_code == 200, on.text
    check(on.json(), "WebhookHMACSecretResponse")
    secret = on.json()["hmacSecret"]
    assert on.json()["webhook"]["hmac"]["enforcementMode"] == "strict"
    assert secret not in httpx.get(f"{base}/api/v1/dags/deploy/webhook").text

    raw = json.dumps({"payload": {"n": 1}}).encode()
    ok = httpx.post(hook, content=raw, headers={"X-Dagu-Signature": _signed(secret, raw)})
    assert ok.status_code == 200, ok.text  # no token needed in hmac_only
    assert httpx.post(hook, content=raw, headers={"X-Dagu-Signature": _signed("other", raw)}).status_code == 401
    assert httpx.post(hook, content=raw, headers={"X-Dagu-Signature": "sha256=xyz"}).status_code == 401
    assert httpx.post(hook, content=raw, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    tampered = raw.replace(b"1", b"2")
    assert httpx.post(hook, content=tampered, headers={"X-Dagu-Signature": _signed(secret, raw)}).status_code == 401
    refused = httpx.post(
        f"{base}/api/v1/dags/deploy/webhook/hmac/configure",
        json={"authMode": "hmac_only", "enforcementMode": "observe"},
    )
    assert refused.status_code == 400  # hmac_only with observe would let anyone in

    observe = httpx.post(
        f"{base}/api/v1/dags/deploy/webhook/hmac/configure",
        json={"authMode": "token_and_hmac", "enforcementMode": "observe"},
    )
    assert observe.status_code == 200 and observe.json()["hmac"]["enforcementMode"] == "observe"
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.post(hook, content=raw, headers=bearer).status_code == 200  # observed, let through
    assert httpx.post(hook, content=raw, headers={"X-Dagu-Signature": _signed(secret, raw)}).status_code == 401
    httpx.post(
        f"{base}/api/v1/dags/deploy/webhook/hmac/configure",
        json={"authMode": "token_and_hmac", "enforcementMode": "strict"},
    )
    assert httpx.post(hook, content=raw, headers=bearer).status_code == 401
    both = {**bearer, "X-Dagu-Signature": _signed(secret, raw)}
    assert httpx.post(hook, content=raw, headers=both).status_code == 200

    renewed = httpx.post(f"{base}/api/v1/dags/deploy/webhook/hmac/regenerate").json()["hmacSecret"]
    assert renewed != secret
    assert httpx.post(hook, content=raw, headers=both).status_code == 401
    off = httpx.post(f"{base}/api/v1/dags/deploy/webhook/hmac/disable")
    assert off.status_code == 200 and off.json()["authMode"] == "token_only" and not off.json()["hmac"]["enabled"]
    assert httpx.post(hook, content=raw, headers=bearer).status_code == 200


def test_a_dag_file_may_not_forward_credentials(api: tuple[Daemon, str, Path]) -> None:
    _, base, _ = api
    spec = "webhook:\n  forward_headers: [Authorization]\nsteps:\n  - run: 'true'\n"
    r = httpx.put(f"{base}/api/v1/dags/other/spec", json={"spec": spec})
    assert r.status_code == 400 and "Authorization is never forwarded: it carries credentials" in r.text, r.text


def test_a_stranger_gets_in_with_the_token_only_and_nowhere_else(api: tuple[Daemon, str, Path]) -> None:
    d, base, out = api
    bob = strangers.user(strangers.BOB)
    token = httpx.post(f"{base}/api/v1/dags/deploy/webhook").json()["token"]
    hook = f"{base}/api/v1/webhooks/deploy"
    bearer = f"Authorization: Bearer {token}"
    code, _, text = bob.curl("POST", hook, bearer, body='{"dagRunId": "from_bob", "payload": {"who": "bob"}}')
    assert code == 200, text
    wait_until(lambda: _finished(base, "from_bob"))
    assert (out / "payload.json").read_text() == '{"who":"bob"}'
    # the token opens this DAG's webhook, nothing else
    for method, path in (
        ("GET", "/api/v1/dags"),
        ("POST", "/api/v1/dags/other/start"),
        ("POST", "/api/v1/dags/deploy/webhook/regenerate"),
        ("GET", "/api/v1/webhooks"),
    ):
        code, _, text = bob.curl(method, base + path, bearer, body="{}" if method == "POST" else None)
        assert code in (401, 429), (method, path, code, text)
    code, _, text = bob.curl("POST", f"{base}/api/v1/webhooks/other", bearer, body="{}")
    assert code == 404, text
    # guessing: wrong tokens count as failed logins of the address, then it waits
    codes = [bob.curl("POST", hook, f"Authorization: Bearer dagd_wh_guess{i}", body="{}")[0] for i in range(12)]
    assert codes[:5] == [401] * 5 and codes[-1] == 429, codes
    assert d.proc.poll() is None
