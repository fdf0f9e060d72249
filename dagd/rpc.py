"""JSON-RPC 2.0 over a Unix stream socket: one JSON object per line, both ways.

Every method maps to one Service call (docs/rpc.md). `events.subscribe` turns the connection
into a stream of run events. SO_PEERCRED names the caller; every mutating call is logged with it.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from dagd.service import INVALID, Service, ServiceError

log = logging.getLogger("dagd.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INTERNAL = -32603
MAX_LINE = 1024 * 1024
MUTATING = {
    "run.start",
    "run.enqueue",
    "run.dequeue",
    "run.stop",
    "run.retry",
    "dag.suspend",
    "dag.resume",
    "daemon.reload",
}


FORBIDDEN = -32003


def allowed(uid: int, gid: int) -> bool:
    """Root, the daemon's own user, and members of group dagd; nobody else (SO_PEERCRED)."""
    if uid in (0, os.geteuid()):
        return True
    try:
        group = grp.getgrnam("dagd")
    except KeyError:
        return False
    if gid == group.gr_gid:
        return True
    import pwd

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return False
    return name in group.gr_mem


def peer(stream: trio.SocketStream) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end."""
    raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def methods(svc: Service) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
    def need(p: dict[str, Any], key: str) -> Any:
        if key not in p:
            raise ServiceError(INVALID, f"missing param {key!r}")
        return p[key]

    async def run_start(p: dict[str, Any]) -> Any:
        rid = await svc.enqueue(need(p, "name"), list(p.get("params") or []), run_id=p.get("run_id"))
        return {"run_id": rid}

    async def status(p: dict[str, Any]) -> Any:
        doc = await svc.db(svc.store.run, need(p, "name"), p.get("run_id"))
        if doc is None:
            raise ServiceError(-32004, f"no run of {p['name']}")
        return doc

    async def history(p: dict[str, Any]) -> Any:
        return await svc.db(svc.store.history, p.get("name"), int(p.get("limit", 20)), p.get("status"), p.get("run_id"))

    async def validate(p: dict[str, Any]) -> Any:
        from dagd.spec import SpecError, load_file

        try:
            loaded = load_file(need(p, "file"), strict=True)
        except SpecError as exc:
            return {"valid": False, "diagnostics": [d.as_json() for d in exc.diagnostics]}
        return {
            "valid": True,
            "dialect": loaded.dag.dialect.value,
            "diagnostics": [d.as_json() for d in loaded.diagnostics],
        }

    async def logs(p: dict[str, Any]) -> Any:
        doc = await status(p)
        key = "stderr_path" if p.get("stream") == "stderr" else "stdout_path"
        out = []
        for s in doc["steps"]:
            if p.get("step") not in (None, s["step"]):
                continue
            try:
                with open(s[key], "rb") as fh:
                    fh.seek(0, os.SEEK_END)
                    fh.seek(max(0, fh.tell() - MAX_LINE))
                    text = fh.read().decode("utf-8", errors="replace")
            except (OSError, TypeError):
                text = ""
            out.append({"step": s["step"], "status": s["status"], "text": text})
        if p.get("step") is not None and not out:
            raise ServiceError(-32004, f"run {doc['id']} has no step {p['step']!r}")
        return {"run_id": doc["id"], "steps": out}

    async def reload(p: dict[str, Any]) -> Any:
        return svc.reload()

    async def listing(p: dict[str, Any]) -> Any:
        return await svc.list_dags()

    async def daemon_status(p: dict[str, Any]) -> Any:
        return svc.status()

    return {
        "dag.list": listing,
        "dag.suspend": lambda p: svc.suspend(need(p, "name"), True),
        "dag.resume": lambda p: svc.suspend(need(p, "name"), False),
        "dag.validate": validate,
        "run.start": run_start,
        "run.enqueue": run_start,
        "run.dequeue": lambda p: svc.dequeue(need(p, "name"), need(p, "run_id")),
        "run.stop": lambda p: svc.stop(need(p, "name"), p.get("run_id")),
        "run.retry": lambda p: _wrap_retry(svc, need(p, "name"), need(p, "run_id")),
        "run.status": status,
        "run.history": history,
        "run.logs": logs,
        "daemon.status": daemon_status,
        "daemon.reload": reload,
    }


async def _wrap_retry(svc: Service, name: str, run_id: str) -> Any:
    return {"run_id": await svc.retry(name, run_id)}


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


async def handle(stream: trio.SocketStream, svc: Service) -> None:
    table = methods(svc)
    buf = b""
    try:
        pid, uid, gid = peer(stream)
    except OSError:
        pid, uid, gid = 0, -1, -1
    async with stream:
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            buf += data
            if len(buf) > MAX_LINE and b"\n" not in buf:
                await _send(stream, _error(None, INVALID_REQUEST, f"request larger than {MAX_LINE} bytes"))
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                reply = await _one(line, table, svc, stream, (pid, uid, gid))
                if reply is None:
                    return  # the connection became an event stream and has ended
                if not await _send(stream, reply):
                    return


async def _send(stream: trio.SocketStream, doc: dict[str, Any]) -> bool:
    try:
        await stream.send_all(json.dumps(doc, default=str).encode() + b"\n")
        return True
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False


async def _one(
    line: bytes, table: dict[str, Any], svc: Service, stream: trio.SocketStream, who: tuple[int, int, int]
) -> dict[str, Any] | None:
    try:
        req = json.loads(line)
    except ValueError as exc:
        return _error(None, PARSE_ERROR, f"parse error: {exc}")
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        return _error(req.get("id") if isinstance(req, dict) else None, INVALID_REQUEST, "not a JSON-RPC 2.0 request")
    rid, method, params = req.get("id"), req["method"], req.get("params") or {}
    if not isinstance(params, dict):
        return _error(rid, INVALID, "params must be an object")
    if method == "events.subscribe":
        await _stream_events(stream, svc, rid)
        return None
    fn = table.get(method)
    if fn is None:
        return _error(rid, METHOD_NOT_FOUND, f"unknown method {method!r}")
    if not allowed(who[1], who[2]):
        log.warning("rpc %s refused: pid=%d uid=%d gid=%d is neither root, dagd's user nor in group dagd", method, *who)
        return _error(rid, FORBIDDEN, "permission denied: root, dagd's own user and the dagd group may use this socket")
    if method in MUTATING:
        log.info("rpc %s %s by pid=%d uid=%d gid=%d", method, json.dumps(params)[:200], *who)
    try:
        result = await fn(params)
    except ServiceError as exc:
        return _error(rid, exc.code, exc.message)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        log.exception("rpc %s failed", method)
        return _error(rid, INTERNAL, f"{type(exc).__name__}: {exc}")
    return {"jsonrpc": "2.0", "id": rid, "result": result}


async def _stream_events(stream: trio.SocketStream, svc: Service, rid: Any) -> None:
    send, receive = trio.open_memory_channel[dict[str, Any]](1000)
    svc.subscribers.append(send)
    try:
        if not await _send(stream, {"jsonrpc": "2.0", "id": rid, "result": {"subscribed": True}}):
            return
        async for doc in receive:
            if not await _send(stream, {"jsonrpc": "2.0", "method": "event", "params": doc}):
                return
    finally:
        if send in svc.subscribers:
            svc.subscribers.remove(send)
        await send.aclose()


async def serve(
    path: str,
    svc: Service,
    mode: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    listener_fd: int | None = None,
) -> None:
    if listener_fd is not None:
        sock = trio.socket.fromfd(listener_fd, socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(path)
        os.chmod(path, mode)
        if mode & 0o070:  # system mode: the dagd group may drive the daemon
            with contextlib.suppress(KeyError, PermissionError):
                os.chown(path, -1, grp.getgrnam("dagd").gr_gid)
        sock.listen(128)
    listener = trio.SocketListener(sock)
    task_status.started()
    await trio.serve_listeners(lambda s: handle(s, svc), [listener])  # type: ignore[arg-type]
