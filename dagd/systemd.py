"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING), socket fds.

sdnotify swallows errors and drops non-latin-1 text, so messages are sent here over the
datagram socket directly (abstract `@` names included) and kept ASCII.
"""

from __future__ import annotations

import os
import socket
import time

import trio


class Notifier:
    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET", "")
        self.addr = ("\0" + addr[1:]) if addr.startswith("@") else addr
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        self.watchdog_sec = int(usec) / 1e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.addr)

    def send(self, *lines: str) -> bool:
        """One datagram to systemd; whether it went. Never blocks: when the notify socket's
        queue is full (systemd busy, or nobody reading) a blocking send would hold dagd's whole
        loop, so the message is dropped — status lines and watchdog pings come again later."""
        if not self.addr:
            return False
        text = "\n".join(lines).encode("ascii", "replace")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            try:
                s.sendto(text, self.addr)
            except OSError:
                return False
        return True

    async def say(self, *lines: str, within: float = 5.0) -> None:
        """send(), tried again (without holding the loop) while the queue is full: for what
        systemd must hear — READY=1 (it stops a Type=notify service that never says it), STOPPING=1."""
        deadline = trio.current_time() + within
        while self.addr and not self.send(*lines) and trio.current_time() < deadline:
            await trio.sleep(0.05)

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={int(time.monotonic() * 1e6)}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")


def listen_fds() -> dict[str, int]:
    """Sockets passed by systemd socket activation, by name (LISTEN_FDNAMES)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return {}
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    names = (os.environ.get("LISTEN_FDNAMES") or "").split(":")
    out = {}
    for i in range(count):
        name = names[i] if i < len(names) and names[i] else f"fd{i}"
        out[name] = 3 + i
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    return out
