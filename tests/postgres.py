"""A real PostgreSQL for the tests: Debian's server binaries, a fresh cluster made by initdb in a
temporary directory and run by pg_ctl as the `postgres` system user, listening only on a Unix
socket in that directory (no TCP port). Trust authentication for local connections. `make test`
installs postgresql; the scale-out tests share this fixture."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def _as(pw: pwd.struct_passwd) -> list[str]:
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]


def bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


@dataclass(frozen=True)
class Server:
    socket_dir: str
    user: str = "postgres"
    database: str = "postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql:///{self.database}?host={self.socket_dir}&user={self.user}"

    def restart(self) -> None:
        """pg_ctl restart (fast): every client connection is cut; the server is back when it returns."""
        bin_dir = bindir()
        pw = pwd.getpwnam("postgres")
        subprocess.run(
            [
                *_as(pw),
                f"{bin_dir}/pg_ctl",
                "-D",
                os.path.join(self.socket_dir, "data"),
                "-m",
                "fast",
                "-w",
                "restart",
                "-l",
                os.path.join(self.socket_dir, "log"),
            ],  # (the server's output there, not in our pipes)
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.socket_dir,
            timeout=120,
        )

    def fresh(self, name: str) -> str:
        """A new, empty database on this server; its DSN."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return f"postgresql:///{name}?host={self.socket_dir}&user={self.user}"

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run SQL with Debian's psql; its unaligned, tuples-only output."""
        p = subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.socket_dir,
                "-U",
                self.user,
                "-d",
                database or self.database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        return p.stdout


def serve() -> Iterator[Server]:
    """initdb + pg_ctl start (which waits until the server accepts connections); stopped and
    removed when the generator is closed."""
    bin_dir = bindir()
    assert bin_dir is not None, "make test installs postgresql"
    pw = pwd.getpwnam("postgres")
    root = tempfile.mkdtemp(prefix="dagd-pg-")
    os.chown(root, pw.pw_uid, pw.pw_gid)
    as_postgres = _as(pw)
    data = os.path.join(root, "data")
    try:
        subprocess.run(
            [
                *as_postgres,
                f"{bin_dir}/initdb",
                "-D",
                data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=root,
        )
        options = f"-k {root} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [
                *as_postgres,
                f"{bin_dir}/pg_ctl",
                "-D",
                data,
                "-o",
                options,
                "-l",
                os.path.join(root, "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
            cwd=root,
            timeout=120,
        )
        try:
            yield Server(root)
        finally:
            subprocess.run(
                [*as_postgres, f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                capture_output=True,
                cwd=root,
                timeout=120,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def logs(server: Server) -> str:
    return Path(server.socket_dir, "log").read_text(errors="replace")
