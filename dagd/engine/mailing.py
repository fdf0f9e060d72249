"""Mail: the `mail.send` action (Dagu 1.x `executor: mail`) and a run's notifications
(`mail_on` + `error_mail` / `info_mail`, a step's `mail_on_error`), sent through the DAG's `smtp:`.

As Dagu sends them: a notification's subject is `<prefix> <dag> (<status>)`, its body a summary
of the run and a table of its steps (#, step, started, finished, status, command, error) — here as
text and HTML alternatives —, and with `attach_logs` every step's stdout log attached. Without a
username the server is used as a relay (no login); with one, STARTTLS when the server offers it
(certificates verified), then login — never a password in clear text to a host other than this
one. Port 465 is implicit TLS. smtplib is blocking: it runs in a worker thread, 30 s per
operation."""

from __future__ import annotations

import html
import ipaddress
import mimetypes
import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, BinaryIO

import trio

from dagd.engine.step import StepFailed

TIMEOUT = 30.0
SMTP_KEYS = {"host", "port", "username", "password", "oauth"}
MAIL_KEYS = {"from", "to", "prefix", "attachlogs"}
SEND_KEYS = {"from", "to", "subject", "message", "attachments"}


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int
    username: str | None
    password: str | None


@dataclass(frozen=True)
class Mail:
    sender: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[str, ...] = ()


def _norm(config: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).replace("_", "").lower(): v for k, v in config.items()}


def smtp_settings(config: Mapping[str, Any] | None) -> Smtp:
    """The DAG's `smtp:` (its values already resolved), checked."""
    if not config:
        raise StepFailed("no smtp: is configured for this DAG (host, port, username, password)")
    c = _norm(config)
    unknown = sorted(str(k) for k, n in zip(config, c, strict=True) if n not in SMTP_KEYS)
    if unknown:
        raise StepFailed(f"smtp: {', '.join(unknown)} is not a setting (allowed: host, port, username, password)")
    if c.get("oauth"):
        raise StepFailed("smtp.oauth is not supported by dagd: use a username and an app password")
    host = str(c.get("host") or "")
    if not host:
        raise StepFailed("smtp.host is not set")
    port_text = str(c.get("port") or "25").strip()
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise StepFailed(f"smtp.port must be a number from 1 to 65535, got {port_text!r}")
    return Smtp(host, int(port_text), str(c["username"]) if c.get("username") else None, c.get("password") or None)


def recipients(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        out = [v.strip() for v in value.split(",")]
    elif isinstance(value, Sequence):
        out = [str(v).strip() for v in value]
    else:
        out = []
    out = [v for v in out if v]
    if not out:
        raise StepFailed(f"{what}: no valid recipients specified")
    for address in out:
        if any(ch in address for ch in "\r\n"):
            raise StepFailed(f"{what}: a recipient contains a line break")
    return tuple(out)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _message(mail: Mail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = mail.sender
    msg["To"] = ", ".join(mail.to)
    msg["Subject"] = " ".join(mail.subject.split())  # one line: no header injection
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="dagd")
    msg.set_content(mail.text)
    if mail.html is not None:
        msg.add_alternative(mail.html, subtype="html")
    for path in mail.attachments:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            continue  # a log a step never wrote (as Dagu: unreadable attachments are left out)
        kind, _ = mimetypes.guess_type(path)
        main, _, sub = (kind or "text/plain").partition("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=os.path.basename(path))
    return msg


def _send_blocking(smtp: Smtp, mail: Mail) -> None:
    msg = _message(mail)
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if smtp.port == 465:
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=TIMEOUT, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=TIMEOUT)
    with client:
        client.ehlo_or_helo_if_needed()
        if smtp.username is not None:
            secure = smtp.port == 465
            if not secure and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
                secure = True
            if not secure and not _loopback(smtp.host):
                raise StepFailed(
                    f"smtp: {smtp.host}:{smtp.port} offers no STARTTLS; dagd does not send a password in clear text"
                )
            client.login(smtp.username, smtp.password or "")
        client.send_message(msg, from_addr=mail.sender, to_addrs=list(mail.to))


async def send(smtp: Smtp, mail: Mail) -> None:
    """Send one mail; StepFailed says why it could not be sent."""
    try:
        await trio.to_thread.run_sync(_send_blocking, smtp, mail, abandon_on_cancel=True)
    except StepFailed:
        raise
    except smtplib.SMTPResponseException as exc:
        detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        raise StepFailed(f"smtp {smtp.host}:{smtp.port}: {exc.smtp_code} {detail}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise StepFailed(f"smtp {smtp.host}:{smtp.port}: recipients refused: {', '.join(exc.recipients)}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise StepFailed(
            f"smtp {smtp.host}:{smtp.port}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
        ) from None


# ---- mail.send ------------------------------------------------------------------------------

_SEND_LOG = "sending email\n-----\nfrom: {0}\nto: {1}\nsubject: {2}\nmessage: {3}\n-----\n"


def send_action_mail(config: Mapping[str, Any], cwd: str) -> Mail:
    c = _norm(config)
    unknown = sorted(str(k) for k, n in zip(config, c, strict=True) if n not in SEND_KEYS)
    if unknown:
        raise StepFailed(
            f"mail: {', '.join(unknown)} is not a setting (allowed: from, to, subject, message, attachments)"
        )
    to = recipients(c.get("to"), "mail")
    sender = str(c.get("from") or "")
    if not sender:
        raise StepFailed("mail: from is required")
    attachments = c.get("attachments") or []
    if isinstance(attachments, str):
        attachments = [attachments]
    paths = tuple(str(p) if os.path.isabs(str(p)) else os.path.join(cwd, str(p)) for p in attachments)
    for path in paths:
        if not os.path.isfile(path):
            raise StepFailed(f"mail: attachment {path} does not exist")
    message = str(c.get("message") or "")
    body = message if _looks_html(message) else None
    return Mail(sender, to, str(c.get("subject") or ""), message, body, paths)


async def run_send(
    smtp_config: Mapping[str, Any] | None, config: Mapping[str, Any], cwd: str, out: BinaryIO, err: BinaryIO
) -> None:
    """The mail.send step: what it sends on stdout (as Dagu writes it), then the result."""
    mail = send_action_mail(config, cwd)
    out.write(_SEND_LOG.format(mail.sender, ", ".join(mail.to), mail.subject, mail.text).encode())
    out.flush()
    smtp = smtp_settings(smtp_config)
    try:
        await send(smtp, mail)
    except StepFailed:
        err.write(b"error occurred.\n")
        raise
    out.write(b"sending email succeed.\n")


def _looks_html(text: str) -> bool:
    t = text.lstrip().lower()
    return t.startswith(("<!doctype html", "<html")) or ("<" in t and "</" in t and ">" in t)


# ---- notifications --------------------------------------------------------------------------


@dataclass(frozen=True)
class StepLine:
    name: str
    started: str
    finished: str
    status: str
    command: str
    error: str
    stdout: str


def mail_config(config: Mapping[str, Any] | None, what: str) -> tuple[str, tuple[str, ...], str, bool]:
    """(from, to, prefix, attach_logs) of an error_mail / info_mail."""
    if not config:
        raise StepFailed(f"{what} is not configured (from, to)")
    c = _norm(config)
    unknown = sorted(str(k) for k, n in zip(config, c, strict=True) if n not in MAIL_KEYS)
    if unknown:
        raise StepFailed(f"{what}: {', '.join(unknown)} is not a setting (allowed: from, to, prefix, attach_logs)")
    sender = str(c.get("from") or "")
    if not sender:
        raise StepFailed(f"{what}.from is not set")
    return sender, recipients(c.get("to"), what), str(c.get("prefix") or ""), bool(c.get("attachlogs"))


def notification(
    config: Mapping[str, Any] | None,
    what: str,
    dag: str,
    run_id: str,
    status: str,
    started: str,
    finished: str,
    params: str,
    error: str | None,
    steps: Sequence[StepLine],
) -> Mail:
    sender, to, prefix, attach = mail_config(config, what)
    subject = f"{prefix} {dag} ({status})".strip()
    rows = [
        f"{i}. {s.name}: {s.status}  {s.started} → {s.finished}  $ {s.command}"
        + (f"\n   error: {s.error}" if s.error else "")
        for i, s in enumerate(steps, 1)
    ]
    text = (
        f"DAG: {dag}\nRun: {run_id}\nStatus: {status}\nStarted: {started}\nFinished: {finished}\n"
        + (f"Params: {params}\n" if params else "")
        + (f"Error: {error}\n" if error else "")
        + "\nSteps:\n"
        + "\n".join(rows)
        + "\n"
    )
    e = html.escape
    cells = "".join(
        f"<tr><td>{i}</td><td>{e(s.name)}</td><td>{e(s.started)}</td><td>{e(s.finished)}</td>"
        f"<td>{e(s.status)}</td><td><code>{e(s.command)}</code></td><td>{e(s.error)}</td></tr>"
        for i, s in enumerate(steps, 1)
    )
    body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        f"<h2>{e(dag)} — {e(status)}</h2>"
        f"<p>Run <code>{e(run_id)}</code>, started {e(started)}, finished {e(finished)}</p>"
        + (f"<p>Params: <code>{e(params)}</code></p>" if params else "")
        + (f"<p>Error: {e(error)}</p>" if error else "")
        + '<table border="1" cellpadding="4" cellspacing="0"><tr><th>#</th><th>Step</th><th>Started At</th>'
        "<th>Finished At</th><th>Status</th><th>Command</th><th>Error</th></tr>"
        f"{cells}</table></body></html>"
    )
    attachments = tuple(s.stdout for s in steps if s.stdout) if attach else ()
    return Mail(sender, to, subject, text, body, attachments)
