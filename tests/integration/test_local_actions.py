"""The builtin actions that work on this host without a server: file.*, archive.*, outputs.write,
wait.* (against a local HTTP server) and git.checkout / git.worktree.* (against a local bare
repository made with Debian's git) — Dagu's defaults, its result lines and its refusals."""

from __future__ import annotations

import json
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_steps


def _json(step: dict[str, Any]) -> dict[str, Any]:
    lines = Path(step["stdout_path"]).read_text().splitlines()
    doc = json.loads(lines[-1])
    assert isinstance(doc, dict)
    return doc


def test_file_operations_with_daguss_defaults(tmp_path: Path) -> None:
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("alpha")
    (tmp_path / "src" / "sub" / "b.log").write_text("beta!")
    steps = run_steps(
        tmp_path,
        "f",
        f"""working_dir: {tmp_path}
type: graph
steps:
  - id: write
    action: file.write
    with: {{path: out/new.txt, content: hello, create_dirs: true}}
  - id: again
    depends: write
    action: file.write
    continue_on: failure
    with: {{path: out/new.txt, content: second}}
  - id: replace
    depends: again
    action: file.write
    with: {{path: out/new.txt, content: replaced, overwrite: true, mode: "0640"}}
  - id: stat
    depends: replace
    action: file.stat
    with: {{path: out/new.txt}}
  - id: missing
    action: file.stat
    with: {{path: nothing-here, missing_ok: true}}
  - id: read
    depends: replace
    action: file.read
    with: {{path: out/new.txt, format: json}}
  - id: copy
    action: file.copy
    with: {{source: src, destination: copied, recursive: true}}
  - id: copy_dir_no_recursive
    action: file.copy
    continue_on: failure
    with: {{source: src, destination: copied2}}
  - id: list
    depends: copy
    action: file.list
    with: {{path: copied, recursive: true, pattern: "*.txt"}}
  - id: move
    depends: list
    action: file.move
    with: {{source: copied/a.txt, destination: moved/a.txt, create_dirs: true}}
  - id: mkdir
    action: file.mkdir
    with: {{path: made/deep/er}}
  - id: delete_dir
    depends: move
    action: file.delete
    continue_on: failure
    with: {{path: copied}}
  - id: delete_dry
    depends: delete_dir
    action: file.delete
    with: {{path: copied, recursive: true, dry_run: true}}
  - id: legacy
    depends: delete_dry
    executor: {{type: file, config: {{path: copied, recursive: true}}}}
    command: delete
""",
        code=1,  # partially succeeded: the refused steps were continued past
    )
    assert _json(steps["write"]) == {
        "operation": "write",
        "path": f"{tmp_path}/out/new.txt",
        "bytes": 5,
        "created": True,
    }
    assert "the file exists" in steps["again"]["error"]
    assert (tmp_path / "out" / "new.txt").read_text() == "replaced"
    assert _json(steps["stat"])["mode"] == "0640" and _json(steps["stat"])["size"] == 8
    assert _json(steps["missing"])["exists"] is False
    assert _json(steps["read"])["content"] == "replaced"
    assert _json(steps["copy"])["files"] == 2 and _json(steps["copy"])["bytes"] == 10
    assert "only with recursive" in steps["copy_dir_no_recursive"]["error"]
    assert [e["path"] for e in _json(steps["list"])["entries"]] == ["a.txt"]
    assert (tmp_path / "moved" / "a.txt").read_text() == "alpha"
    assert (tmp_path / "made" / "deep" / "er").is_dir()
    assert "recursive: true is required" in steps["delete_dir"]["error"]
    assert _json(steps["delete_dry"])["dryRun"] is True
    assert _json(steps["legacy"])["deleted"] is True and not (tmp_path / "copied").exists()
    assert (tmp_path / "src" / "sub" / "b.log").exists()  # the source was copied, not moved


def test_archives_round_trip_and_refuse_escaping_members(tmp_path: Path) -> None:
    (tmp_path / "data" / "logs").mkdir(parents=True)
    (tmp_path / "data" / "one.txt").write_text("1")
    (tmp_path / "data" / "logs" / "x.log").write_text("log")
    with tarfile.open(tmp_path / "evil.tar", "w") as tf:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        import io

        tf.addfile(info, io.BytesIO(b"bad"))
    steps = run_steps(
        tmp_path,
        "a",
        f"""working_dir: {tmp_path}
steps:
  - id: tgz
    action: archive.create
    with: {{source: data, destination: out/data.tar.gz, exclude: ["*.log"]}}
  - id: zip
    action: archive.create
    with: {{source: data, destination: out/data.zip}}
  - id: list
    depends: zip
    action: archive.list
    with: {{source: out/data.zip}}
  - id: untar
    depends: tgz
    action: archive.extract
    with: {{source: out/data.tar.gz, destination: restored, strip_components: 1}}
  - id: evil
    action: archive.extract
    continue_on: failure
    with: {{source: evil.tar, destination: safe}}
""",
        code=1,
    )
    assert _json(steps["tgz"])["files"] == 1
    with zipfile.ZipFile(tmp_path / "out" / "data.zip") as zf:
        assert sorted(zf.namelist()) == ["data/logs/x.log", "data/one.txt"]
    assert sorted(e["name"] for e in _json(steps["list"])["entries"]) == ["data/logs/x.log", "data/one.txt"]
    assert (tmp_path / "restored" / "one.txt").read_text() == "1"
    assert not (tmp_path / "restored" / "logs").exists()
    assert "would land outside" in steps["evil"]["error"] and not (tmp_path / "escaped.txt").exists()


class _Flip(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200 if type(self).hits >= 3 else 503)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def flipping() -> Iterator[str]:
    _Flip.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flip)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ready"
    server.shutdown()
    server.server_close()


def test_waits_and_outputs_write(tmp_path: Path, flipping: str) -> None:
    steps = run_steps(
        tmp_path,
        "w",
        f"""working_dir: {tmp_path}
steps:
  - id: touch
    run: sleep 0.3; touch appeared
  - id: file
    action: wait.file
    with: {{path: appeared, poll_interval: 100ms}}
  - id: http
    action: wait.http
    with: {{url: "{flipping}", poll_interval: 50ms}}
  - id: short
    action: wait.duration
    with: {{duration: 200ms}}
  - id: past
    executor: {{type: wait, config: {{until: "2020-01-01T00:00:00Z"}}}}
    command: until
  - id: forever
    action: wait.file
    timeout_sec: 1
    continue_on: failure
    with: {{path: never-there}}
  - id: publish
    action: outputs.write
    with:
      values: {{region: eu-west, count: 3, tags: [a, b]}}
  - id: use
    depends: publish
    run: echo "${{steps.publish.outputs.region}} ${{steps.publish.outputs.count}}" '${{steps.publish.outputs.tags}}'
""",
        code=1,
    )
    assert _json(steps["file"])["state"] == "exists"
    assert _json(steps["http"])["attempts"] == 3
    assert _json(steps["short"])["waited_seconds"] == 0.2
    assert _json(steps["past"])["operation"] == "until"
    assert steps["forever"]["exit_code"] == 124
    assert Path(steps["use"]["stdout_path"]).read_text() == 'eu-west 3 ["a", "b"]\n'


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_checkout_and_worktrees_against_a_local_bare_repository(tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    _git("init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp_path)
    seed = tmp_path / "seed"
    _git("clone", "-q", str(origin), str(seed), cwd=tmp_path)
    for k, v in {"user.email": "t@example.org", "user.name": "t"}.items():
        _git("config", k, v, cwd=seed)
    (seed / "v.txt").write_text("one\n")
    _git("add", ".", cwd=seed)
    _git("commit", "-q", "-m", "one", cwd=seed)
    first = _git("rev-parse", "HEAD", cwd=seed)
    _git("tag", "v1", cwd=seed)
    (seed / "v.txt").write_text("two\n")
    _git("commit", "-q", "-am", "two", cwd=seed)
    _git("push", "-q", "origin", "main", "v1", cwd=seed)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    steps = run_steps(
        tmp_path,
        "g",
        f"""working_dir: {tmp_path}
type: graph
steps:
  - id: head
    action: git.checkout
    with: {{repository: {origin}, path: co}}
  - id: tag
    depends: head
    action: git.checkout
    with: {{repository: {origin}, path: co, ref: v1, depth: 1}}
  - id: commit
    action: git.checkout
    with: {{repository: "file://{origin}", path: pinned, ref: {first}}}
  - id: refuse
    action: git.checkout
    continue_on: failure
    with: {{repository: {origin}, path: busy}}
  - id: wt
    depends: tag
    working_dir: {tmp_path}/co
    action: git.worktree.add
    with: {{branch: feature, create_branch: true, path: ../feature-wt}}
  - id: wt_rm
    depends: wt
    working_dir: {tmp_path}/co
    action: git.worktree.remove
    with: {{branch: feature, delete_branch: true}}
""",
        code=1,
    )
    assert (tmp_path / "co" / "v.txt").read_text() == "one\n"  # the tag, after main
    assert _json(steps["head"])["ref"] == "HEAD"
    assert _json(steps["commit"])["commit"] == first and (tmp_path / "pinned" / "v.txt").read_text() == "one\n"
    assert "is not a git checkout" in Path(steps["refuse"]["stderr_path"]).read_text()
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert _json(steps["wt"])["branch"] == "feature"
    assert steps["wt_rm"]["status"] == "succeeded" and not (tmp_path / "feature-wt").exists()
    assert "feature" not in _git("branch", "--list", cwd=tmp_path / "co")


def test_artifacts_data_state_and_routes(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("name,qty\nbolt,3\nnut,7\n")
    dag = f"""working_dir: {tmp_path}
type: graph
params: [TARGET=blue]
steps:
  - id: art
    action: artifact.write
    with: {{path: reports/today.txt, content: all good}}
  - id: art_list
    depends: art
    action: artifact.list
    with: {{recursive: true}}
  - id: art_escape
    action: artifact.write
    continue_on: failure
    with: {{path: ../outside.txt, content: x}}
  - id: convert
    action: data.convert
    with: {{from: csv, to: json, input: rows.csv}}
  - id: to_csv
    action: data.convert
    with: {{from: yaml, to: tsv, data: "- {{a: 1, b: x}}\\n- {{a: 2}}\\n"}}
  - id: pick
    action: data.pick
    with: {{from: json, data: '{{"items": [{{"n": "first"}}, {{"n": "second"}}]}}', select: ".items[1].n", raw: true}}
  - id: bump
    action: state.diff
    with: {{key: last_seen, value: {{count: 1}}}}
  - id: read
    depends: bump
    action: state.get
    with: {{key: last_seen}}
  - id: route
    action: router.route
    with:
      value: ${{TARGET}}
      routes:
        "blue": [blue]
        "re:^(green|red)$": [other]
  - id: blue
    run: echo blue ran
  - id: other
    run: echo other ran
"""
    steps = run_steps(tmp_path, "s", dag, code=1)
    written = json.loads(Path(steps["art"]["stdout_path"]).read_text())["path"]
    assert Path(written).read_text() == "all good" and "/artifacts/s/" in written
    assert [e["path"] for e in _json(steps["art_list"])["entries"]] == ["reports/today.txt"]
    assert "must stay inside the run's artifacts folder" in steps["art_escape"]["error"]
    assert json.loads(Path(steps["convert"]["stdout_path"]).read_text()) == [
        {"name": "bolt", "qty": "3"},
        {"name": "nut", "qty": "7"},
    ]
    assert Path(steps["to_csv"]["stdout_path"]).read_text() == "a\tb\n1\tx\n2\t\n"
    assert Path(steps["pick"]["stdout_path"]).read_text() == "second\n"
    first = _json(steps["bump"])
    assert first["changed"] is True and first["version"] == 1
    assert _json(steps["read"])["value"] == {"count": 1}
    assert steps["blue"]["status"] == "succeeded" and steps["other"]["status"] == "skipped"
    # a second run: the state is kept, the same value is no change
    again = run_steps(tmp_path, "s", dag, code=1)
    assert _json(again["bump"])["changed"] is False and _json(again["bump"])["version"] == 1


def test_retry_policy_applies_to_actions_dagd_does_itself(tmp_path: Path, flipping: str) -> None:
    steps = run_steps(
        tmp_path,
        "rp",
        f"""steps:
  - id: call
    action: http.request
    retry_policy: {{limit: 3, interval_sec: 0}}
    with: {{method: GET, url: "{flipping}", silent: true}}
""",
    )
    assert steps["call"]["status"] == "succeeded" and steps["call"]["attempt"] == 3
    assert Path(steps["call"]["stderr_path"]).read_text().count("retrying in 0s") == 2


def test_template_render_speaks_gos_text_template_as_dagu_does(tmp_path: Path) -> None:
    steps = run_steps(
        tmp_path,
        "t",
        f"""working_dir: {tmp_path}
type: graph
params:
  - name: TPL
    default: "Hi {{{{ .who }}}}"
steps:
  - id: report
    action: template.render
    with:
      template: |
        # {{{{ .title }}}}
        {{{{- $items := .domains | split "," }}}}
        Total: {{{{ $items | count }}}}
        {{{{- range $i, $d := $items }}}}
        {{{{ $i | add 1 }}}}. {{{{ $d | upper }}}}
        {{{{- end }}}}
        {{{{ if .extra | empty }}}}No extras.{{{{ else }}}}Extras!{{{{ end }}}}
        owner={{{{ get .app "owner" | default "unknown" }}}} slug={{{{ .app.name | trim | lower | replace " " "-" }}}}
        sorted={{{{ .tags | uniq | sortAlpha | join "," }}}} literal=${{NOT_RESOLVED}}
      data:
        title: Sites
        domains: a.com,b.org
        extra: []
        app: {{name: "  My App  "}}
        tags: [b, a, b]
  - id: to_file
    action: template.render
    with:
      template_ref: ${{params.TPL}}
      data: {{who: ops}}
      output: out/greeting.txt
  - id: missing
    action: template.render
    continue_on: failure
    with: {{template: "{{{{ .undefined_key }}}}", data: {{name: x}}}}
  - id: blocked
    action: template.render
    continue_on: failure
    with: {{template: '{{{{ env "HOME" }}}}'}}
  - id: legacy
    type: template
    script: "{{{{ .n }}}} and {{{{ .n | add 1 }}}}"
    config: {{data: {{n: 41}}}}
""",
        code=1,
    )
    assert Path(steps["report"]["stdout_path"]).read_text() == (
        "# Sites\nTotal: 2\n1. A.COM\n2. B.ORG\nNo extras.\nowner=unknown slug=my-app\n"
        "sorted=a,b literal=${NOT_RESOLVED}\n"
    )
    assert (tmp_path / "out" / "greeting.txt").read_text() == "Hi ops"
    assert "execution error" in steps["missing"]["error"] and "undefined_key" in steps["missing"]["error"]
    assert "not available" in steps["blocked"]["error"]
    assert Path(steps["legacy"]["stdout_path"]).read_text() == "41 and 42"
