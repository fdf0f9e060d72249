"""JSON-RPC 2.0 over a Unix stream socket: one JSON object per line, both ways (docs/rpc.md).

Hostile input is expected here. The caller's uid (SO_PEERCRED) is checked before a byte is read,
and a refused caller gets one line and a closed connection. Lines are bounded (1 MiB), JSON
nesting is bounded before parsing, params are typed per method (dagd.rpc.methods), and every
exception a handler raises becomes an error reply and a log line: nothing a client sends leaves
its connection's task. Idle connections time out; each uid holds a bounded number of them.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import socket
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from dagd import access
from dagd.access import Principal
from dagd.errors import ServiceError
from dagd.rpc.methods import convert, table
from dagd.service import Service

log = logging.getLogger("dagd.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL = -32603
FORBIDDEN = -32003
OVERLOADED = -32005
MAX_LINE = 1024 * 1024
MAX_DEPTH = 32
IDLE_TIMEOUT = 120.0  # seconds without a request before a connection is closed
PER_UID = 128  # connections one uid may hold at once
TOTAL = 1024
SUBSCRIPTION_BUFFER = 1000
REFUSE_DRAIN_SEC = 1.0


def peer(sock: Any) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def _valid_id(rid: Any) -> bool:
    return rid is None or (isinstance(rid, (int, str)) and not isinstance(rid, bool) and len(str(rid)) <= 200)


class Server:
    def __init__(self, svc: Service, login: Callable[[Principal], dict[str, Any]] | None = None) -> None:
        self.svc = svc
        self.methods = table(svc, login or _no_login)
        self.connections: Counter[int] = Counter()

    async def handle(self, stream: trio.SocketStream) -> None:
        """One connection, start to end; never raises."""
        try:
            async with stream:
                await self._connection(stream)
        except Exception:  # a bug here must cost one connection, never the daemon
            log.exception("control connection failed")

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            pid, uid, gid = peer(stream.socket)
        except OSError:
            pid, uid, gid = 0, -1, -1
        if not self.svc.rule.allows(uid, gid):
            log.warning(
                "control socket: refused pid=%d uid=%d gid=%d (%s only)", pid, uid, gid, self.svc.rule.describe()
            )
            await _refuse(
                stream, _error(None, FORBIDDEN, f"permission denied: only {self.svc.rule.describe()} may use dagd")
            )
            return
        if self.connections[uid] >= PER_UID or sum(self.connections.values()) >= TOTAL:
            log.warning("control socket: uid=%d holds %d connections, refusing more", uid, self.connections[uid])
            await _refuse(stream, _error(None, OVERLOADED, f"too many connections (at most {PER_UID} per user)"))
            return
        self.connections[uid] += 1
        try:
            await self._requests(stream, access.local(uid), pid)
        finally:
            self.connections[uid] -= 1
            if not self.connections[uid]:
                del self.connections[uid]

    async def _requests(self, stream: trio.SocketStream, who: Principal, pid: int) -> None:
        buf = bytearray()
        while True:
            newline = buf.find(b"\n")
            if newline < 0:
                if len(buf) > MAX_LINE:
                    await _send(stream, _error(None, INVALID_REQUEST, f"request longer than {MAX_LINE} bytes"))
                    return
                data = b""
                with trio.move_on_after(IDLE_TIMEOUT):
                    try:
                        data = await stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                if not data:
                    return  # the client hung up, or stayed silent past the idle timeout
                buf += data
                continue
            line = bytes(buf[:newline])
            del buf[: newline + 1]
            if not line.strip():
                continue
            reply = await self._one(line, stream, who, pid)
            if reply is None:
                return  # the connection became an event stream, which has ended
            if not await _send(stream, reply):
                return

    async def _one(self, line: bytes, stream: trio.SocketStream, who: Principal, pid: int) -> dict[str, Any] | None:
        if access.json_depth_exceeds(line, MAX_DEPTH):
            return _error(None, INVALID_REQUEST, f"JSON nested deeper than {MAX_DEPTH} levels")
        try:
            req = json.loads(line)
        except (ValueError, RecursionError) as exc:
            return _error(None, PARSE_ERROR, f"parse error: {str(exc)[:200]}")
        rid = req.get("id") if isinstance(req, dict) else None
        if not _valid_id(rid):
            return _error(None, INVALID_REQUEST, "id must be a number or a string of at most 200 characters")
        if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
            return _error(rid, INVALID_REQUEST, "not a JSON-RPC 2.0 request: {jsonrpc: '2.0', method, params?, id}")
        name = req["method"]
        if name == "events.subscribe":
            await self._stream_events(stream, rid)
            return None
        method = self.methods.get(name)
        if method is None:
            return _error(rid, METHOD_NOT_FOUND, f"unknown method {name[:100]!r}")
        try:
            params = convert(method.params, req.get("params"))
        except msgspec.ValidationError as exc:
            return _error(rid, INVALID_PARAMS, f"{name}: {exc}")
        try:
            result = await method.call(params, who)
        except ServiceError as exc:
            return _error(rid, exc.code, exc.message)
        except Exception as exc:
            log.exception("rpc %s failed", name)
            return _error(rid, INTERNAL, f"internal error ({type(exc).__name__}); see dagd's log")
        if method.mutating:
            run_id = getattr(params, "run_id", None) or (result.get("run_id") if isinstance(result, dict) else None)
            access.audit(who, name, f"control socket (pid {pid})", dag=getattr(params, "name", None), run_id=run_id)
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _stream_events(self, stream: trio.SocketStream, rid: Any) -> None:
        """Run events until the client hangs up; a reader too slow for the buffer is told and
        dropped (it can resynchronise from run.status)."""
        send, receive = trio.open_memory_channel[dict[str, Any]](SUBSCRIPTION_BUFFER)
        self.svc.subscribers.append(send)
        try:
            if not await _send(stream, {"jsonrpc": "2.0", "id": rid, "result": {"subscribed": True}}):
                return
            async with receive:
                async for doc in receive:
                    if not await _send(stream, {"jsonrpc": "2.0", "method": "event", "params": doc}):
                        return
            await _send(stream, _error(rid, OVERLOADED, "event stream dropped: the reader fell behind"))
        finally:
            if send in self.svc.subscribers:
                self.svc.subscribers.remove(send)
            await send.aclose()


def _no_login(who: Principal) -> dict[str, Any]:
    raise ServiceError(-32009, "dagd serves no HTTP (started with --no-http)")


async def _refuse(stream: trio.SocketStream, doc: dict[str, Any]) -> None:
    """Say no, then discard what the caller sent (unparsed, at most 64 KiB, at most 1 s) before
    closing: a Unix socket closed with unread bytes fails the caller's write with EPIPE, and a
    client that writes before it reads would never see the answer that says why."""
    if not await _send(stream, doc):
        return
    with trio.move_on_after(REFUSE_DRAIN_SEC), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_eof()
        discarded = 0
        while discarded < 65536:
            data = await stream.receive_some(4096)
            if not data:
                break
            discarded += len(data)


async def _send(stream: trio.SocketStream, doc: dict[str, Any]) -> bool:
    try:
        await stream.send_all(json.dumps(doc, default=str).encode() + b"\n")
        return True
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False


async def serve(
    path: str,
    svc: Service,
    mode: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    listener_fd: int | None = None,
    login: Callable[[Principal], dict[str, Any]] | None = None,
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
        if mode & 0o070 and svc.rule.group:  # system mode: the group may drive the daemon
            with contextlib.suppress(KeyError, PermissionError):
                os.chown(path, -1, grp.getgrnam(svc.rule.group).gr_gid)
        sock.listen(128)
    server = Server(svc, login)
    listener = trio.SocketListener(sock)
    task_status.started()
    await trio.serve_listeners(server.handle, [listener])
