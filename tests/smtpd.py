"""A real SMTP server for the tests (aiosmtpd, in a thread of the test process) that records every
message it accepts, optionally with STARTTLS (a self-signed certificate made by openssl, which
dagd trusts through SSL_CERT_FILE) and a login it requires."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    login: str | None


@dataclass
class Server:
    port: int
    cert: Path | None  # the CA file a client must trust (STARTTLS servers)
    got: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """The first `count` messages, once they have arrived."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.got) >= count, timeout), self.got
            return list(self.got[:count])

    def yaml(self, *, username: str | None = None, password: str | None = None) -> str:
        out = f"smtp:\n  host: 127.0.0.1\n  port: {self.port}\n"
        if username:
            out += f"  username: {username}\n  password: {password}\n"
        return out


class _Handler:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self.server.arrived:
            self.server.got.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg, login))
            self.server.arrived.notify_all()
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(root: Path, *, tls: bool = False, login: tuple[str, str] | None = None) -> Iterator[Server]:
    context = None
    cert: Path | None = None
    root.mkdir(parents=True, exist_ok=True)
    if tls:
        cert, key = root / "cert.pem", root / "key.pem"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"),
                *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    server = Server(_free_port(), cert)

    def authenticator(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and login is not None
            and (data.login.decode(), data.password.decode()) == login
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    kwargs: dict[str, Any] = {"tls_context": context, "require_starttls": tls}
    if login is not None:
        kwargs |= {"authenticator": authenticator, "auth_required": True, "auth_require_tls": tls}
    controller = Controller(_Handler(server), hostname="127.0.0.1", port=server.port, **kwargs)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
