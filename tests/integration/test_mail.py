"""mail.send (and Dagu 1.x `executor: mail`) and a run's notifications — mail_on failure/success
with error_mail / info_mail (prefix, attach_logs), a step's mail_on_error — sent through the DAG's
smtp: to a real SMTP server (aiosmtpd, tests/smtpd.py) that records what it receives: plain relay,
and STARTTLS with a login whose password comes from a secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import smtpd
from tests.conftest import run_dagctl


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[smtpd.Server]:
    yield from smtpd.serve(tmp_path / "smtp")


def _parts(msg: smtpd.EmailMessage) -> tuple[str, str, dict[str, bytes]]:
    text = msg.get_body(("plain",))
    page = msg.get_body(("html",))
    files = {p.get_filename() or "": p.get_payload(decode=True) for p in msg.iter_attachments()}
    return (  # (as sent: CRLF line ends)
        text.get_content().replace("\r\n", "\n") if text is not None else "",
        page.get_content().replace("\r\n", "\n") if page is not None else "",
        {k: v for k, v in files.items() if isinstance(v, bytes)},
    )


def test_mail_send_and_the_1x_executor_deliver_with_attachments(tmp_path: Path, relay: smtpd.Server) -> None:
    (tmp_path / "report.csv").write_text("a,b\n1,2\n")
    (tmp_path / "m.yaml").write_text(
        f"""working_dir: .
{relay.yaml()}env:
  - WHO: ops@example.org
steps:
  - id: send
    action: mail.send
    with:
      from: dagd@example.org
      to: [$WHO, second@example.org]
      subject: nightly report
      message: |
        all good
        see the file
      attachments: [report.csv]
  - name: legacy
    depends: send
    executor:
      type: mail
      config:
        to: old@example.org
        from: dagd@example.org
        subject: from 1.x
        message: hello
"""
    )
    r = run_dagctl(["run", "m.yaml"], tmp_path)
    assert r.code == 0, r.stderr
    first, second = relay.wait_for(2)
    assert first.sender == "dagd@example.org" and first.recipients == ["ops@example.org", "second@example.org"]
    assert first.message["Subject"] == "nightly report"
    text, _, files = _parts(first.message)
    assert text == "all good\nsee the file\n"
    assert files == {"report.csv": b"a,b\n1,2\n"}
    assert second.recipients == ["old@example.org"] and second.message["Subject"] == "from 1.x"
    rid = json.loads(run_dagctl(["history", "m", "--json"], tmp_path).stdout)[0]["id"]
    doc = json.loads(run_dagctl(["status", "m", rid, "--json"], tmp_path).stdout)
    out = Path(doc["steps"][0]["stdout_path"]).read_text()
    assert out.startswith("sending email\n-----\nfrom: dagd@example.org\nto: ops@example.org, second@example.org\n")
    assert out.endswith("-----\nsending email succeed.\n")


def test_notifications_on_failure_success_and_a_steps_error(tmp_path: Path, relay: smtpd.Server) -> None:
    common = f"""{relay.yaml()}mail_on:
  failure: true
  success: true
error_mail:
  from: dagd@example.org
  to: oncall@example.org
  prefix: "[ALERT]"
  attach_logs: true
info_mail:
  from: dagd@example.org
  to: [team@example.org]
  prefix: "[OK]"
"""
    (tmp_path / "bad.yaml").write_text(
        common
        + """steps:
  - id: extract
    run: echo extracted 42 rows
  - id: load
    depends: extract
    run: echo "<load> failing" >&2; exit 7
"""
    )
    assert run_dagctl(["run", "bad.yaml"], tmp_path).code == 1
    (alert,) = relay.wait_for(1)
    assert alert.recipients == ["oncall@example.org"]
    assert alert.message["Subject"] == "[ALERT] bad (failed)"
    text, page, files = _parts(alert.message)
    assert "Status: failed" in text and "load: failed" in text and "exit status 7" in text
    assert "<td>load</td>" in page and "<td>exit status 7</td>" in page
    assert "&lt;load&gt; failing" in page and "<load>" not in page  # its command, escaped
    assert "<th>Command</th>" in page and "echo extracted 42 rows" in page
    assert files == {"extract.out": b"extracted 42 rows\n", "load.out": b""}  # each step's stdout

    (tmp_path / "good.yaml").write_text(
        common
        + """steps:
  - id: flaky
    run: exit 3
    mail_on_error: true
    continue_on: failure
  - id: after
    depends: flaky
    run: echo fine
"""
    )
    r = run_dagctl(["run", "good.yaml"], tmp_path)
    _, step_mail, info = relay.wait_for(3)
    assert step_mail.message["Subject"] == "[ALERT] good (running)"  # sent when the step failed
    assert "flaky: failed" in _parts(step_mail.message)[0]
    assert info.recipients == ["team@example.org"], r.stderr
    assert info.message["Subject"].startswith("[OK] good (")
    assert _parts(info.message)[2] == {}  # no attach_logs on info_mail


def test_starttls_login_with_a_secret_password_and_a_failure_to_send_changes_no_run(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret-smtp-pw")
    gen = smtpd.serve(tmp_path / "tls", tls=True, login=("mailer", "s3cret-smtp-pw"))
    server = next(gen)
    try:
        assert server.cert is not None
        (tmp_path / "t.yaml").write_text(
            f"""secrets:
  - name: SMTP_PASSWORD
    provider: file
    key: {tmp_path}/pw
{server.yaml(username="mailer", password="${SMTP_PASSWORD}")}mail_on:
  success: true
info_mail:
  from: dagd@example.org
  to: team@example.org
steps:
  - run: echo done
"""
        )
        r = run_dagctl(["run", "t.yaml"], tmp_path, {"SSL_CERT_FILE": str(server.cert)})
        assert r.code == 0, r.stderr
        (got,) = server.wait_for(1)
        assert got.login == "mailer" and got.message["Subject"] == "t (succeeded)"
        assert "s3cret-smtp-pw" not in r.stderr

        # a wrong password: the run still succeeds; why no mail went is said
        (tmp_path / "pw").write_text("wrong")
        r = run_dagctl(["run", "t.yaml"], tmp_path, {"SSL_CERT_FILE": str(server.cert)})
        assert r.code == 0, r.stderr
        assert "info_mail not sent" in r.stderr and "535" in r.stderr, r.stderr
        # an untrusted certificate: refused, not sent in clear
        r = run_dagctl(["run", "t.yaml"], tmp_path)
        assert r.code == 0 and "info_mail not sent" in r.stderr and "CERTIFICATE_VERIFY_FAILED" in r.stderr, r.stderr
        assert len(server.got) == 1
    finally:
        gen.close()


def test_validate_names_mail_mistakes(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(
        """smtp:
  host: mail.example.org
  prot: 587
mail_on:
  failure: true
error_mail:
  from: a@example.org
  to: b@example.org
  atach_logs: true
steps:
  - action: mail.send
    with:
      from: a@example.org
      to: b@example.org
      subject: s
      body: wrong key
"""
    )
    r = run_dagctl(["validate", "v.yaml"], tmp_path)
    assert r.code == 1, r.stderr
    assert "smtp.prot" in r.stderr and "error_mail.atach_logs" in r.stderr and "does not take body" in r.stderr
    (tmp_path / "w.yaml").write_text("mail_on:\n  success: true\nsteps:\n  - run: echo\n")
    r = run_dagctl(["validate", "w.yaml"], tmp_path)
    assert r.code == 0 and "mail_on.success sends info_mail, which this DAG does not set" in r.stderr, r.stderr
