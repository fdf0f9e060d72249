"""The trust boundary, attacked: a system-mode dagd (as root, like the package's with its group),
driven by real local users — alice in the group, bob outside it — over the control socket and
over loopback HTTP. Every finding of issue 11 that a test can reach here is one assertion."""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import strangers
from tests.conftest import run_dagctl
from tests.integration.test_daemon import Daemon, http_answers, start_daemon, wait_until
from tests.integration.test_http_api import free_port


@dataclass
class Host:
    daemon: Daemon
    base: str
    socket: str
    alice: strangers.User
    bob: strangers.User

    def log(self) -> str:
        return (self.daemon.root / "dagd.log").read_text(errors="replace")

    def alive(self) -> bool:
        """dagd is running and answers daemon.status on its socket."""
        if self.daemon.proc.poll() is not None:
            return False
        return bool(self.call("daemon.status").get("result", {}).get("pid"))

    def call(self, method: str, params: object = None) -> dict:  # type: ignore[type-arg]
        req = {"jsonrpc": "2.0", "id": 1, "method": method} | ({"params": params} if params is not None else {})
        return self.daemon.rpc(json.dumps(req).encode() + b"\n")[0]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    alice, bob = strangers.user(strangers.ALICE), strangers.user(strangers.BOB)
    run_dir = Path(tempfile.mkdtemp(prefix="dagd-trust-", dir="/tmp"))  # a place bob can reach
    run_dir.chmod(0o755)
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "example.yaml").write_text("steps:\n  - run: echo hello\n")
    port = free_port()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"group": strangers.GROUP, "http_bind": f"127.0.0.1:{port}"}))
    sock = str(run_dir / "dagd.sock")
    d = start_daemon(tmp_path, {"DAGD_SOCKET": sock}, ("--config", str(tmp_path / "config.yaml")), user=False)
    base = f"http://127.0.0.1:{port}"
    h = Host(d, base, sock, alice, bob)
    wait_until(lambda: http_answers(base))
    yield h
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(timeout=30)
    d.notify.close()
    for p in run_dir.iterdir():
        p.unlink()
    run_dir.rmdir()


# ---- HTTP: one rule with the socket ------------------------------------------------------------


def _routes(h: Host) -> list[tuple[str, str]]:
    """Every (method, concrete path) of our OpenAPI document, plus UI paths."""
    doc = httpx.get(h.base + "/api/v1/openapi.json").json()  # as root: allowed by uid
    values = {
        "fileName": "example",
        "file_name": "example",
        "name": "example",
        "dagRunId": "r1",
        "run_id": "r1",
        "stepName": "s",
        "step_name": "s",
        "path": "x",
    }
    out = []
    for path, ops in doc["paths"].items():
        concrete = path
        for key, value in values.items():
            concrete = concrete.replace("{" + key + "}", value)
        out += [(method.upper(), concrete) for method in ops if method in ("get", "post", "put", "delete", "patch")]
    return [*out, ("GET", "/"), ("GET", "/dags/example"), ("GET", "/assets/x.js")]


def test_a_stranger_is_refused_on_every_route_but_health(host: Host) -> None:
    routes = _routes(host)
    assert len(routes) > 25
    for method, path in routes:
        body = json.dumps({"name": "pwn", "spec": "steps:\n  - run: id > /tmp/bob-was-here\n"})
        code, _, text = host.bob.curl(method, host.base + path, body=body if method != "GET" else None)
        if path == "/api/v1/health":
            assert code == 200
            continue
        if method == "POST" and path.startswith("/api/v1/webhooks/"):  # its own token decides (test_webhooks)
            assert code == 404 and json.loads(text)["message"] == "no webhook for example", text
            continue
        assert code == 401, (method, path, code, text)
        assert "dagctl ui" in json.loads(text)["message"]
    code, headers, page = host.bob.curl("GET", host.base + "/dags/example", "Accept: text/html")
    assert code == 401 and headers["content-type"].startswith("text/html") and "dagctl ui" in page  # a browser
    assert not (host.daemon.root / "dags" / "pwn.yaml").exists()
    assert (host.daemon.root / "dags" / "example.yaml").read_text() == "steps:\n  - run: echo hello\n"
    assert host.alive()


def test_a_member_gets_in_by_uid_and_is_audited(host: Host) -> None:
    code, _, text = host.alice.curl("GET", host.base + "/api/v1/dags")
    assert code == 200 and json.loads(text)["dags"][0]["fileName"] == "example"
    code, _, text = host.alice.curl("POST", host.base + "/api/v1/dags/example/start", body="{}")
    assert code == 200, text
    run_id = json.loads(text)["dagRunId"]
    # a member's browser visiting another site cannot drive dagd with its uid (CSRF)
    code, _, _ = host.alice.curl(
        "POST", host.base + "/api/v1/dags/example/start", "Origin: http://evil.example", body="{}"
    )
    assert code == 403
    assert host.call("run.status", {"name": "example", "run_id": run_id})["result"]["id"] == run_id
    deadline = time.monotonic() + 10
    while "POST /api/v1/dags/example/start -> 200" not in host.log():  # written as the response ends
        assert time.monotonic() < deadline
        time.sleep(0.05)
    line = next(x for x in host.log().splitlines() if "POST /api/v1/dags/example/start -> 200" in x)
    assert "NOTICE" in line and f"uid={host.alice.uid} ({strangers.ALICE})" in line
    assert "POST /api/v1/dags/example/start -> 403" in host.log()  # refused attempts are audited too


def test_the_login_link_lets_a_stranger_in_once(host: Host) -> None:
    member = strangers.Relay(host.alice, host.socket)  # what `dagctl ui` asks, as alice
    try:
        url = member.replies(b'{"jsonrpc": "2.0", "id": 1, "method": "daemon.login_link"}\n')[0]["result"]["url"]
    finally:
        member.close()
    assert url.startswith(host.base + "/login?token=")
    code, headers, _ = host.bob.curl("GET", url)
    assert code == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = cookie.split(";", 1)[0]
    code, _, _ = host.bob.curl("GET", host.base + "/api/v1/dags", f"Cookie: {session}")
    assert code == 200
    code, _, _ = host.bob.curl("GET", url)  # a link works once
    assert code == 401
    code, _, _ = host.bob.curl("GET", host.base + "/api/v1/dags", "Cookie: dagd_session=forged")
    assert code == 401
    assert f"login by session of {strangers.ALICE} (uid={host.alice.uid})" in host.log()
    assert f"daemon.login_link by uid={host.alice.uid}" in host.log()


def test_dagctl_ui_prints_a_login_link(host: Host, tmp_path: Path) -> None:
    r = run_dagctl(["ui", "--no-open"], tmp_path, {"DAGD_SOCKET": host.socket})
    assert r.code == 0, r.stderr
    assert r.stdout.strip().startswith(host.base + "/login?token=")
    assert httpx.get(r.stdout.strip(), follow_redirects=False).status_code == 303


# ---- the control socket ------------------------------------------------------------------------

HOSTILE = [
    b"[" * 1100 + b"\n",
    b"{" * 100_000 + b"\n",
    b'{"jsonrpc": "2.0", "id": 1, "method": "run.status", "params": {"name": [1]}}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "run.dequeue", "params": {"name": "example", "run_id": [1]}}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "run.retry", "params": {"name": "example", "run_id": [1]}}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "run.history", "params": {"limit": 99999999999999999999999}}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "run.history", "params": {"status": {"a": 1}}}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "dag.validate", "params": {"file": 5}}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "dag.validate", "params": {"file": "/etc/shadow"}}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "run.start", "params": {"name": "example", "run_id": "../../../tmp/x/pwned"}}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "run.start", "params": {"name": "example", "run_id": "zz\\n"}}\n',
    b'{"jsonrpc": "2.0", "id": 1, "method": "run.start", "params": {"name": "x\\n"}}\n',
    b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "daemon.status"}\n',
    b"\xff\xfe\x00binary junk\n",
    b"x" * (2 * 1024 * 1024),
]


def test_hostile_lines_from_a_member_get_errors_and_dagd_stays_up(host: Host) -> None:
    for payload in HOSTILE:
        replies = host.daemon.rpc(payload)
        assert replies and all("error" in r for r in replies), payload[:80]
        assert all(-32700 <= r["error"]["code"] <= -32600 for r in replies), (payload[:80], replies)
        assert host.alive(), payload[:80]
    assert "shadow" not in json.dumps(host.call("dag.validate", {"file": "/etc/shadow"}))
    assert not Path("/tmp/x/pwned").exists()
    assert "Traceback" not in host.log()


def test_a_stranger_is_refused_before_a_byte_is_read(host: Host) -> None:
    os.chmod(host.socket, 0o666)  # even with a socket mode that lets everyone connect
    relay = strangers.Relay(host.bob, host.socket)
    try:
        for payload in [*HOSTILE, b'{"jsonrpc": "2.0", "id": 1, "method": "events.subscribe"}\n']:
            replies = relay.replies(payload)
            assert [r["error"]["code"] for r in replies] == [-32003], payload[:80]
            assert host.alive()
        # alice (group member) is served; bob's subscription got nothing while a run happened
        member = strangers.Relay(host.alice, host.socket)
        try:
            assert member.replies(b'{"jsonrpc": "2.0", "id": 1, "method": "daemon.status"}\n')[0]["result"]["pid"]
        finally:
            member.close()
    finally:
        relay.close()
    assert "refused pid=" in host.log() and f"uid={host.bob.uid}" in host.log()


def test_idle_connections_are_bounded_per_uid(host: Host) -> None:
    socks = []
    try:
        for _ in range(200):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(host.socket)
            socks.append(s)
        s = socks[-1]
        s.settimeout(10)
        assert json.loads(s.makefile().readline())["error"]["code"] == -32005  # past 128 for one uid
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 10
    while not host.alive():  # served again once dagd has seen those connections close
        assert time.monotonic() < deadline


# ---- a protocol fuzzer ------------------------------------------------------------------------

METHODS = [
    "daemon.status",
    "daemon.reload",
    "daemon.login_link",
    "dag.list",
    "dag.suspend",
    "dag.resume",
    "dag.validate",
    "run.start",
    "run.enqueue",
    "run.dequeue",
    "run.stop",
    "run.retry",
    "run.status",
    "run.history",
    "run.logs",
    "events.subscribe",
]
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)


def _nested(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4))


_json = st.recursive(_scalars, _nested, max_leaves=12)
_names = st.sampled_from(["example", "nope", "../x", "x\n", "", "a" * 300]) | st.text(max_size=30)
_params = _json | st.fixed_dictionaries(
    {},
    optional={
        "name": _names | _json,
        "run_id": _names | _json,
        "params": st.lists(st.text(max_size=20), max_size=3) | _json,
        "limit": st.integers() | _json,
        "status": st.sampled_from(["failed", "running", "bogus"]) | _json,
        "step": _names,
        "stream": st.sampled_from(["stdout", "stderr", "x"]),
        "offset": st.integers(),
        "spec": st.text(max_size=200) | st.just("steps:\n  - run: echo fuzz\n"),
        "file": _json,
    },
)
_request = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0"]) | _scalars,
        "method": st.sampled_from(METHODS) | st.text(max_size=20),
    },
    optional={"id": _json, "params": _params},
)
LINES = st.one_of(
    _request.map(lambda r: json.dumps(r).encode() + b"\n"),
    st.lists(_request, min_size=1, max_size=3).map(lambda rs: b"".join(json.dumps(r).encode() + b"\n" for r in rs)),
    st.binary(max_size=400),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"\n"),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass") + b"\n"),
)


def test_fuzzed_lines_never_take_dagd_down(host: Host) -> None:
    os.chmod(host.socket, 0o666)
    member = strangers.Relay(host.alice, host.socket)
    stranger = strangers.Relay(host.bob, host.socket)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(line=LINES)
    def attack(line: bytes) -> None:
        if b"events.subscribe" in line:
            line = line.replace(b"events.subscribe", b"events.subscribed")  # a stream never ends by itself
        for relay, refused in ((member, False), (stranger, True)):
            raw = relay.send(line)
            assert not raw.startswith(b"OSERROR"), raw
            replies = [json.loads(x) for x in raw.splitlines() if x.strip()]
            if refused:
                assert [r["error"]["code"] for r in replies] == [-32003]
            else:
                assert all(r.get("jsonrpc") == "2.0" and ("result" in r or "error" in r) for r in replies), replies
        assert host.alive()

    try:
        attack()
    finally:
        member.close()
        stranger.close()
    assert "Traceback" not in host.log()


def test_names_and_run_ids_are_matched_in_full_over_http(host: Host) -> None:
    for body in ({"name": "x\n"}, {"name": "../x"}, {"name": ".hidden"}, {"name": "-flag"}):
        r = httpx.post(host.base + "/api/v1/dags", json=body)
        assert r.status_code == 400, (body, r.text)
    for rid in ("zz\n", "../../../tmp/x/pwned", "a/b", ""):
        r = httpx.post(host.base + "/api/v1/dags/example/start", json={"dagRunId": rid})
        assert r.status_code in (200, 400), r.text
        if rid:
            assert r.status_code == 400, (rid, r.text)
    assert not any(p.name.startswith("x") for p in (host.daemon.root / "dags").iterdir())
    assert not Path("/tmp/x/pwned").exists()


def test_thousands_of_idle_connections_are_not_held(host: Host) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    socks = []
    try:
        for _ in range(3000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(host.socket)
            socks.append(s)
        last = socks[-1]
        last.settimeout(10)
        assert json.loads(last.makefile().readline())["error"]["code"] == -32005  # answered, then closed
        deadline = time.monotonic() + 10
        while (held := len(os.listdir(f"/proc/{host.daemon.proc.pid}/fd"))) >= 400:
            assert time.monotonic() < deadline, held  # 128 held for this uid, the rest closed by dagd
            time.sleep(0.05)
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    deadline = time.monotonic() + 10
    while not host.alive():
        assert time.monotonic() < deadline
