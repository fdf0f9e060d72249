"""Dagu's live-update stream (/api/v1/events/stream?topic=, the session/topic protocol of Dagu's
web UI, ui/src/hooks/SSEManager.ts) against a real dagd: each topic's payload is exactly what
its REST route answers, changes arrive without polling, topics come and go by session, and
strangers, forged topics and closed sessions get nowhere."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import strangers
from tests.integration.test_daemon import Daemon, wait_until
from tests.integration.test_http_api import serving


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Daemon, str, Path]]:
    dags = {
        "hello.yaml": "steps:\n  - {id: a, run: echo hi}\n",
        "gate.yaml": "steps:\n  - id: wait\n    run: while [ ! -e {gate} ]; do sleep 0.02; done\n",
    }
    with serving(tmp_path, dags) as (d, base):
        yield d, base, tmp_path


class Stream:
    """One EventSource-like reader: (event, id, data) tuples as they arrive."""

    def __init__(self, url: str) -> None:
        self.events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.seen: list[str] = []  # every event passed by next(): its topic, or its kind
        self.client = httpx.Client(timeout=30)
        self.response = self.client.send(self.client.build_request("GET", url), stream=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event, ident, data = "message", "", ""
        try:
            for line in self.response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("id:"):
                    ident = line[3:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line and data:
                    self.events.put((event, ident, json.loads(data)))
                    event, ident, data = "message", "", ""
        except httpx.HTTPError:
            pass

    def next(self, want: str = "message", topic: str | None = None) -> Any:
        """The next event of that kind (and topic); others are passed over. Waits on the stream."""
        while True:
            event, _, data = self.events.get(timeout=20)
            self.seen.append(data.get("topic", event))
            if event == want and (topic is None or data.get("topic") == topic):
                return data

    def close(self) -> None:
        self.response.close()
        self.client.close()


def test_topics_carry_their_rest_payloads_and_follow_changes(api: tuple[Daemon, str, Path]) -> None:
    _, base, root = api
    s = Stream(f"{base}/api/v1/events/stream?topic=dag:hello&topic=bogus:x&topic=dagrun:a/b/c&remoteNode=local")
    try:
        assert s.response.status_code == 200 and s.response.headers["content-type"].startswith("text/event-stream")
        control = s.next("control")
        assert control["subscribed"] == ["dag:hello"]
        assert {e["topic"]: e["code"] for e in control["errors"]} == {
            "bogus:x": "invalid_topic",
            "dagrun:a/b/c": "invalid_topic",
        }
        first = s.next(topic="dag:hello")
        assert first["payload"] == httpx.get(f"{base}/api/v1/dags/hello").json()

        assert httpx.post(f"{base}/api/v1/dags/gate/start", json={"dagRunId": "g1"}).status_code == 200
        added = httpx.post(
            f"{base}/api/v1/events/stream/topics",
            json={"sessionID": control["sessionID"], "add": ["dagrun:gate/g1", "queues:"], "remove": ["dag:hello"]},
        )
        assert added.status_code == 200, added.text
        assert added.json() == {"subscribed": ["dagrun:gate/g1", "queues:"], "errors": []}
        running = s.next(topic="dagrun:gate/g1")["payload"]["dagRunDetails"]
        assert running["status"] == 1 and running["nodes"][0]["status"] == 1
        (root / "gate").touch()
        done = s.next(topic="dagrun:gate/g1")["payload"]
        assert done["dagRunDetails"]["status"] == 4  # pushed by the run's events, no poll by us
        assert done == httpx.get(f"{base}/api/v1/dag-runs/gate/g1").json()

        del s.seen[:]
        assert httpx.post(f"{base}/api/v1/dags/hello/start", json={"dagRunId": "h1"}).status_code == 200
        s.next(topic="queues:")  # the refresh that would have carried hello's change
        assert "dag:hello" not in s.seen  # removed: nothing more for it
        many = [f"dag:n{i}" for i in range(70)] + ["dagslist:" + "x" * 5000]
        r = httpx.post(f"{base}/api/v1/events/stream/topics", json={"sessionID": control["sessionID"], "add": many})
        codes = {e["code"] for e in r.json()["errors"]}
        assert codes == {"too_many_topics", "invalid_topic"} and len(r.json()["subscribed"]) == 64
    finally:
        s.close()
    mutate = f"{base}/api/v1/events/stream/topics"
    wait_until(lambda: httpx.post(mutate, json={"sessionID": control["sessionID"], "add": []}).status_code == 404)
    assert httpx.post(f"{base}/api/v1/events/stream/topics", json={"sessionID": "guess", "add": []}).status_code == 404


def test_a_stranger_gets_no_stream_and_cannot_steer_one(api: tuple[Daemon, str, Path]) -> None:
    _, base, _ = api
    bob = strangers.user(strangers.BOB)
    code, _, text = bob.curl("GET", f"{base}/api/v1/events/stream?topic=dag:hello")
    assert code == 401, text
    s = Stream(f"{base}/api/v1/events/stream?topic=dag:hello")
    try:
        sid = s.next("control")["sessionID"]
        body = json.dumps({"sessionID": sid, "add": ["dagruns:"]})
        code, _, text = bob.curl("POST", f"{base}/api/v1/events/stream/topics", body=body)
        assert code == 401, text
    finally:
        s.close()


def test_the_run_logs_topic_gives_dagus_run_logs_view(api: tuple[Daemon, str, Path]) -> None:
    _, base, _ = api
    assert httpx.post(f"{base}/api/v1/dags/hello/start-sync", json={"timeout": 60, "dagRunId": "l1"}).status_code == 200
    s = Stream(f"{base}/api/v1/events/stream?topic=dagrunlogs:hello/l1?tail=5")
    try:
        assert s.next("control")["subscribed"] == ["dagrunlogs:hello/l1?tail=5"]
        payload = s.next(topic="dagrunlogs:hello/l1?tail=5")["payload"]
        log = httpx.get(f"{base}/api/v1/dag-runs/hello/l1/log?tail=5").json()
        assert payload["schedulerLog"] == {k: log[k] for k in ("content", "lineCount", "totalLines", "hasMore")}
        (step,) = payload["stepLogs"]
        assert step["stepName"] == "a" and step["status"] == 4 and step["statusLabel"] == "succeeded"
        assert step["hasStdout"] and step["startedAt"] and step["finishedAt"]
    finally:
        s.close()
