"""A blocking JSON-RPC client for dagd's control socket (no trio on the CLI path)."""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from typing import Any


class DaemonUnavailable(Exception):
    pass


class PermissionDenied(DaemonUnavailable):
    """The socket exists but this user may not connect to it."""


class EventsDropped(Exception):
    """dagd stopped this event stream (the reader fell behind): resynchronise from run.status."""


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Client:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.ids = itertools.count(1)
        try:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        except PermissionError as exc:
            self.sock.close()
            raise PermissionDenied(exc.strerror or str(exc)) from None
        except OSError as exc:
            self.sock.close()
            raise DaemonUnavailable(f"no dagd answering at {path}: {exc.strerror or exc}") from None
        self.file = self.sock.makefile("rb")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def _send(self, method: str, params: dict[str, Any]) -> int:
        rid = next(self.ids)
        try:
            self.sock.sendall(
                json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode() + b"\n"
            )
        except OSError as exc:
            raise DaemonUnavailable(f"lost the connection to dagd: {exc.strerror or exc}") from None
        return rid

    def _read(self) -> dict[str, Any]:
        try:
            line = self.file.readline()
        except TimeoutError:
            raise DaemonUnavailable("dagd did not answer in time") from None
        except OSError as exc:
            raise DaemonUnavailable(f"lost the connection to dagd: {exc.strerror or exc}") from None
        if not line:
            raise DaemonUnavailable("dagd closed the connection")
        try:
            doc: dict[str, Any] = json.loads(line)
        except ValueError:
            raise DaemonUnavailable("dagd sent something that is not JSON-RPC") from None
        return doc

    def call(self, method: str, **params: Any) -> Any:
        self._send(method, params)
        doc = self._read()
        if "error" in doc:
            raise RpcError(doc["error"]["code"], doc["error"]["message"])
        return doc["result"]

    def events(self) -> Iterator[dict[str, Any]]:
        """Subscribe now; the iterator yields run events as the daemon announces them."""
        self.sock.settimeout(None)
        self.call("events.subscribe")
        return self._events()

    def _events(self) -> Iterator[dict[str, Any]]:
        while True:
            doc = self._read()
            if doc.get("method") == "event":
                yield doc["params"]
            elif "error" in doc:
                raise EventsDropped(doc["error"].get("message", "event stream dropped"))


def connect(path: str) -> Client | None:
    try:
        return Client(path)
    except DaemonUnavailable:
        return None
