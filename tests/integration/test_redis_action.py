"""redis.<command>, Dagu 1.x `type: redis` and a DAG-level `redis:` against Debian's real
redis-server (tests/redisd.py): Dagu's fields and output formats, a pipeline, a Lua script, a
lock — and a stop ending a blocked command."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import redisd
from tests.conftest import run_steps

pytestmark = pytest.mark.skipif(not os.path.exists(redisd.SERVER), reason="make test installs redis-server")


@pytest.fixture(scope="module")
def redis() -> Iterator[redisd.Server]:
    yield from redisd.serve()


def _out(step: dict[str, Any]) -> str:
    return Path(step["stdout_path"]).read_text()


def test_commands_formats_pipelines_scripts_and_locks(tmp_path: Path, redis: redisd.Server) -> None:
    steps = run_steps(
        tmp_path,
        "r",
        f"""type: graph
env:
  - URL: "{redis.url}"
steps:
  - id: set
    action: redis.set
    with: {{url: "${{URL}}", key: "job:last", value: {{ok: true, n: 3}}, ttl: 600}}
  - id: get
    depends: set
    action: redis.get
    with: {{url: "${{URL}}", key: "job:last", output_format: raw}}
    output: LAST
  - id: hset
    action: redis.hset
    with: {{url: "${{URL}}", key: "h", fields: {{a: 1, b: two}}}}
  - id: hgetall
    depends: hset
    action: redis.hgetall
    with: {{url: "${{URL}}", key: "h"}}
  - id: zadd
    action: redis.zadd
    with: {{url: "${{URL}}", key: "z", score: 2.5, value: m1}}
  - id: zrange
    depends: zadd
    action: redis.zrange
    with: {{url: "${{URL}}", key: "z", with_scores: true, output_format: jsonl}}
  - id: push
    executor:
      type: redis
      config: {{url: "${{URL}}", command: RPUSH, key: "q", values: [x, y, z]}}
  - id: lrange
    depends: push
    action: redis.lrange
    with: {{url: "${{URL}}", key: "q", output_format: csv}}
  - id: pipe
    action: redis.pipeline
    with:
      url: "${{URL}}"
      multi: true
      pipeline:
        - {{command: INCR, key: counter}}
        - {{command: INCRBY, key: counter, value: 10}}
        - {{command: GET, key: counter}}
  - id: script
    action: redis.eval
    with: {{url: "${{URL}}", script: "return redis.call('strlen', KEYS[1]) + ARGV[1]", script_keys: ["job:last"], script_args: [100]}}
    depends: set
  - id: locked
    action: redis.incr
    with: {{url: "${{URL}}", key: "guarded", lock: "nightly", lock_timeout: 30}}
  - id: stream
    action: redis.xadd
    with: {{url: "${{URL}}", stream: "events", stream_fields: {{kind: done}}}}
  - id: wrong
    action: redis.get
    continue_on: failure
    with: {{host: 127.0.0.1, port: {redis.port}, password: wrong, key: x}}
""",
        code=1,
    )
    assert _out(steps["set"]) == '"OK"\n'
    assert _out(steps["get"]) == '{"ok":true,"n":3}\n' and steps["get"]["output_value"] == '{"ok":true,"n":3}'
    assert 0 < int(redis.cli("TTL", "job:last")) <= 600
    assert json.loads(_out(steps["hgetall"])) == {"a": "1", "b": "two"}
    assert _out(steps["zrange"]) == '{"Score":2.5,"Member":"m1"}\n'
    assert _out(steps["lrange"]) == "x\ny\nz\n"
    assert json.loads(_out(steps["pipe"])) == [1, 11, "11"]
    assert json.loads(_out(steps["script"])) == 117
    assert _out(steps["locked"]) == "1\n" and redis.cli("EXISTS", "nightly") == "0"  # released
    assert redis.cli("XLEN", "events") == "1"
    assert "WRONGPASS" in steps["wrong"]["error"] or "invalid username-password" in steps["wrong"]["error"]


def test_a_dag_level_redis_runs_commands_there_never_on_this_host(tmp_path: Path, redis: redisd.Server) -> None:
    steps = run_steps(
        tmp_path,
        "d",
        f"""working_dir: {tmp_path}
redis:
  url: "{redis.url}"
steps:
  - id: ping
    command: PING
  - id: shell
    depends: ping
    continue_on: failure
    run: touch host-was-touched
""",
        code=1,
    )
    assert _out(steps["ping"]) == '"PONG"\n'
    assert "unsupported command 'TOUCH HOST-WAS-TOUCHED'" in steps["shell"]["error"]
    assert not (tmp_path / "host-was-touched").exists()


def test_a_step_timeout_ends_a_blocked_command(tmp_path: Path, redis: redisd.Server) -> None:
    steps = run_steps(
        tmp_path,
        "b",
        f"""steps:
  - id: wait
    action: redis.blpop
    timeout_sec: 1
    with: {{url: "{redis.url}", key: "never-filled", block: 0}}
""",
        code=1,
    )
    assert steps["wait"]["exit_code"] == 124
    assert "cmd=blpop" not in redis.cli("CLIENT", "LIST")  # its connection went with the step
