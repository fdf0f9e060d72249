"""Real local users for the tests that attack: a group standing for `dagd`, a member (alice) and a
stranger (bob), created on this machine with useradd (the suite runs as root, as CI does).

Their processes run Debian's own /usr/bin/python3 and curl under setpriv, so they need nothing
from the checkout (which may sit in a directory they cannot enter)."""

from __future__ import annotations

import base64
import grp
import json
import pwd
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

GROUP = "dagdtest"
ALICE = "dagdtest-alice"  # a member of GROUP
BOB = "dagdtest-bob"  # nobody dagd knows


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def argv(self, *command: str) -> list[str]:
        groups = ",".join(str(g) for g in self.groups) or None
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            f"--groups={groups}" if groups else "--clear-groups",
            "--",
            *command,
        ]

    def run(self, *command: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*command), capture_output=True, text=True, timeout=timeout, input=stdin, cwd="/"
        )

    def curl(self, method: str, url: str, *headers: str, body: str | None = None) -> tuple[int, dict[str, str], str]:
        """(status, headers, body) of one HTTP request made by this user's own process."""
        args = ["curl", "-s", "-S", "-i", "-X", method, "--max-time", "20", url]
        for h in headers:
            args += ["-H", h]
        if body is not None:
            args += ["-H", "content-type: application/json", "--data-binary", "@-"]
        p = self.run(*args, stdin=body)
        assert p.returncode == 0, p.stderr
        head, _, text = p.stdout.replace("\r\n", "\n").partition("\n\n")
        lines = head.split("\n")
        status = int(lines[0].split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return status, hdrs, text


def _ensure() -> None:
    """Create the group and users once. Two test workers may race (useradd then fails to lock
    /etc/passwd, or finds the user made): try again until the entry is there."""
    import time

    def made(lookup: Callable[[str], object], name: str, create: list[str]) -> None:
        for _ in range(100):
            try:
                lookup(name)
                return
            except KeyError:
                subprocess.run(create, check=False, capture_output=True)
                time.sleep(0.05)
        lookup(name)

    made(grp.getgrnam, GROUP, ["groupadd", "--system", GROUP])
    nologin = ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    made(pwd.getpwnam, ALICE, ["useradd", *nologin, "--groups", GROUP, ALICE])
    made(pwd.getpwnam, BOB, ["useradd", *nologin, BOB])


def user(name: str) -> User:
    _ensure()
    pw = pwd.getpwnam(name)
    groups = tuple(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)
    return User(name, pw.pw_uid, pw.pw_gid, groups)


RELAY = r"""
import base64, socket, sys
path = sys.argv[1]
for line in sys.stdin:
    payload = base64.b64decode(line)
    out = b""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:  # dagd closed with our bytes unread: keep what it said
                break
            if not chunk:
                break
            out += chunk
    except OSError as exc:
        out = b"OSERROR " + str(exc).encode()
    finally:
        s.close()
    sys.stdout.write(base64.b64encode(out).decode() + "\n")
    sys.stdout.flush()
"""


class Relay:
    """A process of `who` that sends payloads to a Unix socket, one connection each, and returns
    the replies: the control socket as another user sees it, for many requests cheaply."""

    def __init__(self, who: User, path: str) -> None:
        self.proc = subprocess.Popen(
            who.argv("/usr/bin/python3", "-c", RELAY, path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
        )

    def send(self, payload: bytes) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(base64.b64encode(payload).decode() + "\n")
        self.proc.stdin.flush()
        return base64.b64decode(self.proc.stdout.readline())

    def replies(self, payload: bytes) -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(line) for line in self.send(payload).splitlines() if line.strip()]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
