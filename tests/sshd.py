"""A real OpenSSH server for the tests: Debian's sshd, started as root on a free loopback port
with its own host key, letting in one real local user (created with useradd, with a home, a
password and an authorized client key). `make test` installs openssh-server."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "dagdtest-ssh"
PASSWORD = "dagd-Test-pw-7"
SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class Server:
    port: int
    user: str
    home: str
    client_key: Path  # private key the server accepts for USER
    known_hosts: Path  # a known_hosts file naming this server's host key
    password: str

    def yaml(self, *, shell: str | None = None, strict: bool = False, indent: str = "  ") -> str:
        """The connection as YAML keys (for `ssh:` or `with:`)."""
        lines = [
            "host: 127.0.0.1",
            f'port: "{self.port}"',
            f"user: {self.user}",
            f"key: {self.client_key}",
        ]
        lines.append(f"known_host_file: {self.known_hosts}" if strict else "strict_host_key: false")
        if shell:
            lines.append(f"shell: {shell}")
        return "".join(f"{indent}{line}\n" for line in lines)

    def remote_pids(self, marker: str) -> list[int]:
        """The user's processes whose command line holds marker (zombies are dead: not counted)."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.stat(f"/proc/{pid}").st_uid != pwd.getpwnam(self.user).pw_uid:
                    continue
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read()
                with open(f"/proc/{pid}/stat") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmdline and state != "Z":
                out.append(int(pid))
        return out


def _ensure_user() -> str:
    for _ in range(100):  # two test workers may race on /etc/passwd's lock: try until it is there
        try:
            pw = pwd.getpwnam(USER)
            break
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], capture_output=True)
            time.sleep(0.05)
    else:
        pw = pwd.getpwnam(USER)
    for _ in range(100):
        if subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}", text=True, capture_output=True).returncode == 0:
            break
        time.sleep(0.05)
    return pw.pw_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(root: Path) -> Iterator[Server]:
    """Run sshd until the generator is closed; ready when it says it listens."""
    home = _ensure_user()
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    # sshd reads authorized keys as the user: they live in a folder the user may enter
    public = Path(tempfile.mkdtemp(prefix="dagd-sshd-"))
    os.chmod(public, 0o755)
    (public / "authorized_keys").write_text((root / "client_key.pub").read_text())
    os.chmod(public / "authorized_keys", 0o644)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    for _attempt in range(5):
        port = _free_port()
        config = root / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile none\n"
            f"AuthorizedKeysFile {public / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
            f"AllowUsers {USER}\nSubsystem sftp internal-sftp\nLogLevel INFO\n"
        )
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        first = proc.stderr.readline()  # "Server listening on …", or why not
        if "Server listening" in first:
            break
        proc.kill()
        proc.wait()
    else:
        raise RuntimeError(f"sshd did not start: {first}")
    log: list[str] = []  # sshd logs each connection: read it all, or its pipe fills and it stalls
    drain = threading.Thread(target=lambda: log.extend(proc.stderr or []), daemon=True)
    drain.start()
    host_key = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    try:
        yield Server(port, USER, home, root / "client_key", root / "known_hosts", PASSWORD)
    finally:
        proc.kill()
        proc.wait()
        drain.join(10)
        shutil.rmtree(public, ignore_errors=True)
