"""Dagu's live-update stream for its web UI: GET /api/v1/events/stream?topic=T&topic=U opens a
session (first a `control` event: sessionID, subscribed, errors), then a message
`{"topic", "payload"}` whenever a topic's payload changes, and a `heartbeat` every 10 s;
POST /api/v1/events/stream/topics `{sessionID, add, remove}` changes a session's topics.

A topic names a REST read (`dagrun:NAME/ID` is GET /api/v1/dag-runs/NAME/ID); its payload is
that read's answer, fetched in-process through the same app (the Guard sees the stream's own
principal), so a topic shows exactly what the REST route would. Payloads are re-read when a run
or step event arrives (a quarter second later, so bursts coalesce) and every 2 s otherwise (queue
and file changes have no event; a comment line then finds a client that has gone). Bounded: 256 sessions, 64 topics each, topic text ≤ 4096."""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.types import ASGIApp

from dagd.http.common import error, read_json
from dagd.service import Service

MAX_SESSIONS = 256
MAX_TOPICS = 64
MAX_TOPIC = 4096
REFRESH = 2.0
HEARTBEAT = 10.0
# topic type → REST path under /api/v1 ({0}, {1}, … are the identifier's /-separated parts);
# list topics carry a query string as their identifier
ROUTES: dict[str, tuple[int, str]] = {
    "dagslist": (0, "/dags"),
    "dag": (1, "/dags/{0}"),
    "daghistory": (1, "/dags/{0}/dag-runs"),
    "dagruns": (0, "/dag-runs"),
    "dagrun": (2, "/dag-runs/{0}/{1}"),
    "subdagrun": (3, "/dag-runs/{0}/{1}/sub-dag-runs/{2}"),
    "steplog": (3, "/dag-runs/{0}/{1}/steps/{2}/log"),
    "queues": (0, "/queues"),
    "queueitems": (1, "/queues/{0}/items"),
    "dagrunlogs": (2, "/dag-runs/{0}/{1}/log"),  # + the run's nodes: Dagu's run-logs view (run_logs)
}
INTERNAL = "dagd.internal"  # scope key of an in-process read: the principal it reads as


def topic_path(topic: str) -> str:
    """The REST path (and query) a topic reads; ValueError saying why it cannot be served."""
    if len(topic) > MAX_TOPIC:
        raise ValueError(f"topics are at most {MAX_TOPIC} characters")
    kind, sep, ident = topic.partition(":")
    if not sep or kind not in ROUTES:
        raise ValueError(f"unknown topic type {kind!r}: dagd serves {', '.join(ROUTES)}")
    parts, template = ROUTES[kind]
    ident, _, query = ident.partition("?") if parts else ("", "", ident)
    query = urllib.parse.urlencode(urllib.parse.parse_qsl(query, keep_blank_values=True))
    if parts == 0:
        return "/api/v1" + template + (f"?{query}" if query else "")
    if query and kind != "dagrunlogs":
        raise ValueError(f"a {kind} topic takes no query")
    segments = ident.split("/")
    if len(segments) != parts or not all(segments) or any(s in (".", "..") for s in segments):
        raise ValueError(f"a {kind} topic is {kind}:" + "/".join(["…"] * parts))
    path = "/api/v1" + template.format(*(urllib.parse.quote(s, safe="") for s in segments))
    return path + (f"?{query}" if query else "")


def run_logs(log: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """Dagu's DAG-run logs payload: the run's own log and, per step, its status and streams."""
    nodes = run.get("dagRunDetails", {}).get("nodes") or []
    return {
        "schedulerLog": {k: log[k] for k in ("content", "lineCount", "totalLines", "hasMore")},
        "stepLogs": [
            {
                "stepName": n["step"]["name"],
                "status": n["status"],
                "statusLabel": n["statusLabel"],
                "startedAt": n.get("startedAt") or "",
                "finishedAt": n.get("finishedAt") or "",
                "hasStdout": bool(n.get("stdout")),
                "hasStderr": bool(n.get("stderr")),
            }
            for n in nodes
        ],
    }


@dataclass
class Session:
    owner: Any  # the principal that opened it: only it may change its topics
    topics: dict[str, str] = field(default_factory=dict)  # topic → REST path
    wake: trio.Event = field(default_factory=trio.Event)


def routes(svc: Service, app: Callable[[], ASGIApp]) -> list[Any]:
    sessions: dict[str, Session] = {}

    def subscribe(session: Session, topics: list[Any]) -> list[dict[str, str]]:
        errors = []
        for topic in topics:
            if not isinstance(topic, str):
                errors.append({"topic": str(topic), "code": "invalid_topic", "message": "a topic is a string"})
                continue
            try:
                path = topic_path(topic)
            except ValueError as exc:
                errors.append({"topic": topic, "code": "invalid_topic", "message": str(exc)})
                continue
            if topic not in session.topics and len(session.topics) >= MAX_TOPICS:
                errors.append({"topic": topic, "code": "too_many_topics", "message": f"at most {MAX_TOPICS}"})
                continue
            session.topics[topic] = path
        return errors

    async def fetch(scope: dict[str, Any], who: Any, path: str) -> Any:
        """GET `path` through the app, as `who`; the JSON answer, or None when it is not a 200."""
        target, _, query = path.partition("?")
        sub = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": target,
            "raw_path": target.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", dict(scope["headers"]).get(b"host", b""))],
            "client": scope.get("client"),
            "server": scope.get("server"),
            "state": {},
            INTERNAL: who,
        }
        status, body = [0], bytearray()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await app()(sub, receive, send)  # type: ignore[arg-type]
        return json.loads(body) if status[0] == 200 else None

    @get("/api/v1/events/stream")
    async def stream(request: Request[Any, Any, Any]) -> ServerSentEvent:
        who = request.scope.get("state", {}).get("who")
        if len(sessions) >= MAX_SESSIONS:
            raise HTTPException(status_code=429, detail=f"too many live-update sessions (at most {MAX_SESSIONS})")
        sid = secrets.token_urlsafe(18)
        session = sessions[sid] = Session(who)
        errors = subscribe(session, request.query_params.getall("topic", []))
        scope = dict(request.scope)
        send, receive = trio.open_memory_channel[dict[str, Any]](1000)
        svc.subscribers.append(send)

        async def messages() -> AsyncIterator[ServerSentEventMessage]:
            sent: dict[str, str] = {}
            number = 0
            control = {"sessionID": sid, "subscribed": list(session.topics), "errors": errors}
            try:
                yield ServerSentEventMessage(event="control", data=json.dumps(control))
                last_beat = trio.current_time()
                while True:
                    for topic, path in list(session.topics.items()):
                        payload = await fetch(scope, who, path)
                        if payload is not None and topic.startswith("dagrunlogs:"):
                            run = await fetch(scope, who, path.split("?")[0].removesuffix("/log"))
                            payload = run_logs(payload, run) if run is not None else None
                        if payload is None:
                            continue
                        text = json.dumps({"topic": topic, "payload": payload}, separators=(",", ":"))
                        digest = hashlib.sha256(text.encode()).hexdigest()
                        if sent.get(topic) != digest:
                            sent[topic] = digest
                            number += 1
                            yield ServerSentEventMessage(data=text, id=number)
                    for gone in set(sent) - set(session.topics):
                        del sent[gone]
                    if trio.current_time() - last_beat >= HEARTBEAT:
                        last_beat = trio.current_time()
                        yield ServerSentEventMessage(event="heartbeat", data="{}")
                    else:  # a comment line (EventSource ignores it): a client gone is noticed within 2 s
                        yield ServerSentEventMessage(comment="")
                    with trio.move_on_after(REFRESH):
                        async with trio.open_nursery() as waits:

                            async def on_event() -> None:
                                try:
                                    await receive.receive()
                                except (trio.EndOfChannel, trio.ClosedResourceError):  # dropped as slow:
                                    await trio.sleep_forever()  # the 2 s refresh carries on
                                await trio.sleep(0.25)  # a burst of step events: one refresh
                                waits.cancel_scope.cancel()

                            async def on_change() -> None:
                                await session.wake.wait()
                                waits.cancel_scope.cancel()

                            waits.start_soon(on_event)
                            waits.start_soon(on_change)
                    if session.wake.is_set():
                        session.wake = trio.Event()
                    while True:  # what else came meanwhile is covered by this refresh
                        try:
                            receive.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                            break
            finally:
                sessions.pop(sid, None)
                if send in svc.subscribers:
                    svc.subscribers.remove(send)

        return ServerSentEvent(messages(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @post("/api/v1/events/stream/topics", status_code=200)
    async def topics(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await read_json(request)
        sid, add, remove = body.get("sessionID"), body.get("add") or [], body.get("remove") or []
        if not isinstance(add, list) or not isinstance(remove, list):
            raise HTTPException(status_code=400, detail="add and remove are lists of topics")
        session = sessions.get(sid) if isinstance(sid, str) else None
        if session is None or session.owner != request.scope.get("state", {}).get("who"):
            return error(404, "no such live-update session (it ended): open a new stream")
        for topic in remove:
            session.topics.pop(topic, None) if isinstance(topic, str) else None
        errors = subscribe(session, add)
        session.wake.set()
        return Response({"subscribed": list(session.topics), "errors": errors}, status_code=200)

    return [stream, topics]
