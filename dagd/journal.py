"""dagd's logging: journald's native protocol under systemd (priorities and DAGD_* fields), `<N>`
priority prefixes on stderr when journald's socket does not answer, plain lines otherwise."""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import ClassVar

from dagd import access


class JournalFormatter(logging.Formatter):
    """`<N>` priority prefixes when stderr goes to journald; one line per event."""

    LEVELS: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        access.NOTICE: 5,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " | ")
        return f"<{self.LEVELS.get(record.levelno, 6)}>{text}"


def setup_logging() -> None:
    """Under systemd (JOURNAL_STREAM set) log natively to journald when its socket answers —
    priorities and structured fields (DAGD_USER, DAGD_DAG, DAGD_RUN_ID…) — else to stderr with
    `<N>` priority prefixes; without systemd, plain timestamped lines."""
    handler: logging.Handler
    if os.environ.get("JOURNAL_STREAM"):
        native = JournalHandler.connect(os.environ.get("DAGD_JOURNAL_SOCKET", "/run/systemd/journal/socket"))
        if native is not None:
            handler = native
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


class JournalHandler(logging.Handler):
    """journald's native protocol: one datagram of KEY=value lines per record (values with a
    newline in the binary form). A record journald cannot take goes to stderr instead."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.fallback = logging.StreamHandler(sys.stderr)
        self.fallback.setFormatter(JournalFormatter("%(name)s: %(message)s"))

    @classmethod
    def connect(cls, path: str) -> JournalHandler | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            return None
        return cls(sock)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = {
            "MESSAGE": f"{record.name}: {message}"[:48_000],
            "PRIORITY": str(JournalFormatter.LEVELS.get(record.levelno, 5 if record.levelno == access.NOTICE else 6)),
            "SYSLOG_IDENTIFIER": "dagd",
            "DAGD_LOGGER": record.name,
            **getattr(record, "journal", {}),
        }
        data = b""
        for key, value in fields.items():
            raw = str(value).encode("utf-8", "replace")
            if b"\n" in raw:
                data += key.encode() + b"\n" + len(raw).to_bytes(8, "little") + raw + b"\n"
            else:
                data += key.encode() + b"=" + raw + b"\n"
        try:
            self.sock.send(data)
        except OSError:
            self.fallback.emit(record)
