"""Reading step logs: the tail of a file, or what a growing file gained since a position.

Plain blocking reads: callers on the event loop run them in a worker thread (Service)."""

from __future__ import annotations

TAIL = 4 * 1024 * 1024  # a log shown whole: at most its last 4 MiB
CHUNK = 256 * 1024  # a live log: at most this much per read


def read_tail(path: str | None, limit: int = TAIL) -> bytes:
    """The last `limit` bytes of a log; when that cuts the file, from the first whole line."""
    if not path:
        return b""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read(limit)
    except OSError:
        return b""
    if size > limit and b"\n" in data:
        data = data[data.index(b"\n") + 1 :]
    return data


def read_from(path: str | None, pos: int, limit: int = CHUNK) -> bytes:
    """Up to `limit` new bytes of a growing log from byte `pos`, cut at the last whole line
    when the limit is reached."""
    if not path:
        return b""
    try:
        with open(path, "rb") as fh:
            fh.seek(pos)
            data = fh.read(limit)
    except OSError:
        return b""
    if len(data) == limit and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]
    return data
