"""A real Redis for the tests: Debian's redis-server on a free loopback port with a password, no
persistence, in a temporary directory; ready when it says it accepts connections. `make test`
installs redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

SERVER = "/usr/bin/redis-server"
PASSWORD = "dagd-redis-pw"
SETTINGS = ("--appendonly", "no", "--daemonize", "no", "--loglevel", "notice", "--dir")


@dataclass(frozen=True)
class Server:
    port: int
    password: str = PASSWORD

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def cli(self, *args: str) -> str:
        p = subprocess.run(
            ["redis-cli", "--no-auth-warning", "-a", self.password, "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve() -> Iterator[Server]:
    root = tempfile.mkdtemp(prefix="dagd-redis-")
    port = _free_port()
    proc = subprocess.Popen(
        [SERVER, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD, "--save", "", *SETTINGS, root],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # until it says it is ready (or exits)
        seen.append(line)
        if "Ready to accept connections" in line:
            break
    else:
        raise RuntimeError("redis-server did not start: " + "".join(seen[-5:]))
    drain = threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True)
    drain.start()
    try:
        yield Server(port)
    finally:
        proc.kill()
        proc.wait()
        drain.join(10)
        shutil.rmtree(root, ignore_errors=True)
