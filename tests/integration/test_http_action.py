"""http.request (and Dagu 1.x `executor: http`) against a real HTTP server started here: what the
server receives (method, path, query, headers, body, multipart form and files), what the step
writes (status and headers, body; JSON mode; silent; a file), a status outside 2xx, a timeout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.conftest import run_dagctl


class Echo(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        seen = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        Echo.received.append(seen)
        if self.path.startswith("/slow"):
            time.sleep(5)
        status = 404 if self.path.startswith("/missing") else 200
        payload = json.dumps({"ok": status == 200, "method": self.command, "path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", "yes")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        return


class Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return  # a client that gave up (the timeout test) is expected here


@pytest.fixture
def server() -> Iterator[str]:
    httpd = Server(("127.0.0.1", 0), Echo)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Echo.received = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _steps(tmp_path: Path, name: str) -> dict[str, dict[str, Any]]:
    rid = json.loads(run_dagctl(["history", name, "--json"], tmp_path).stdout)[0]["id"]
    doc = json.loads(run_dagctl(["status", name, rid, "--json"], tmp_path).stdout)
    return {s["step"]: s for s in doc["steps"]}


def test_requests_reach_the_server_as_written_and_answers_come_back_as_dagu_writes_them(
    tmp_path: Path, server: str
) -> None:
    (tmp_path / "upload.txt").write_text("file content\n")
    (tmp_path / "h.yaml").write_text(
        f"""working_dir: .
steps:
  - id: get
    action: http.request
    with:
      method: GET
      url: {server}/items
      query: {{page: "2"}}
      headers: {{X-Token: abc}}
      json: true
      debug: true
    output: GOT
  - id: post
    depends: [get]
    action: http.request
    with:
      method: POST
      url: {server}/submit
      body: '{{"name": "dagd"}}'
      headers: {{Content-Type: application/json}}
      silent: true
  - id: upload
    depends: [post]
    action: http.request
    with:
      method: PUT
      url: {server}/upload
      form: {{kind: report}}
      files: {{doc: upload.txt}}
      output: saved/answer.json
  - id: missing
    depends: [upload]
    action: http.request
    with: {{method: GET, url: "{server}/missing"}}
    continue_on: failed
"""
    )
    r = run_dagctl(["run", "h.yaml"], tmp_path)
    assert r.code == 1, r.stderr  # (missing: 404, continued)
    steps = _steps(tmp_path, "h")
    got = json.loads(steps["get"]["output_value"])
    assert got["status_code"] == 200 and got["headers"]["X-Echo"] == ["yes"] and got["body"]["path"] == "/items?page=2"
    seen = {r["path"].split("?")[0]: r for r in Echo.received}
    get, post, upload = seen["/items"], seen["/submit"], seen["/upload"]
    debug = Path(steps["get"]["stderr_path"]).read_text()
    assert f"> GET {server}/items?page=2\n" in debug and "> x-token: abc\n" in debug and "< 200 OK\n" in debug
    assert get["headers"]["X-Token"] == "abc"
    assert post["method"] == "POST" and json.loads(post["body"]) == {"name": "dagd"}
    assert Path(steps["post"]["stdout_path"]).read_text() == '{"ok": true, "method": "POST", "path": "/submit"}'
    assert upload["headers"]["Content-Type"].startswith("multipart/form-data")
    assert 'name="kind"' in upload["body"] and "report" in upload["body"] and "file content" in upload["body"]
    assert json.loads((tmp_path / "saved" / "answer.json").read_text())["path"] == "/upload"
    assert Path(steps["upload"]["stdout_path"]).read_text().startswith("200 OK\nContent-Length: ")
    missing = steps["missing"]
    assert missing["status"] == "failed" and missing["error"] == "http status code not 2xx: 404"
    text = Path(missing["stdout_path"]).read_bytes().decode()
    assert text.startswith("404 Not Found\n") and "X-Echo: yes\r\n" in text and text.endswith('"path": "/missing"}')


def test_dagu_1x_http_steps_and_timeouts(tmp_path: Path, server: str) -> None:
    (tmp_path / "old.yaml").write_text(
        f"""steps:
  - name: notify
    executor: http
    command: POST {server}/hook
    script: |
      {{"timeout": 10, "headers": {{"X-From": "dagu-1"}}, "body": "hello", "silent": true}}
  - name: slow
    executor:
      type: http
      config:
        timeout: 1
    command: GET {server}/slow
    depends: [notify]
"""
    )
    started = time.monotonic()
    r = run_dagctl(["run", "old.yaml"], tmp_path)
    assert r.code == 1 and time.monotonic() - started < 4.5, r.stderr  # the slow answer was not waited for
    steps = _steps(tmp_path, "old")
    hook = Echo.received[0]
    assert hook["method"] == "POST" and hook["headers"]["X-From"] == "dagu-1" and hook["body"] == "hello"
    assert steps["notify"]["status"] == "succeeded"
    assert steps["slow"]["status"] == "failed" and "no answer within 1s" in steps["slow"]["error"]
