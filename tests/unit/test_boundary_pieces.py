"""The pure pieces of the trust boundary, attacked directly: names, the JSON depth check, live-log
masking at every chunk boundary, and the kernel's answer on who owns a loopback connection."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dagd import names, peers
from dagd.access import json_depth_exceeds
from dagd.masking import MASK, masked_slice


@pytest.mark.parametrize(
    "bad", ["x\n", "../x", "a/b", ".hidden", "-flag", "", "a" * 101, "tab\there", "nul\0", "é", 5, None]
)
def test_bad_dag_names_are_refused(bad: object) -> None:
    with pytest.raises(names.InvalidName):
        names.dag_name(bad)


@pytest.mark.parametrize("good", ["example", "_private", "a.b-c_d", "A1", "x" * 100])
def test_dagus_names_are_accepted(good: str) -> None:
    assert names.dag_name(good) == good


def test_run_ids_of_every_kind_we_make_are_valid() -> None:
    for rid in ("20261129_220000_ab12cd34", "sched_20261129T2200Z_3f2a9c1b7e40", "sub_3f2a", "r1_step_name_0"):
        assert names.run_id(rid) == rid
    for bad in ("zz\n", "../../../tmp/x/pwned", "a" * 201):
        with pytest.raises(names.InvalidName):
            names.run_id(bad)


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
        max_leaves=30,
    )
)
def test_the_depth_check_agrees_with_the_real_depth(value: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    text = json.dumps(value).encode()
    real = depth(value)
    assert json_depth_exceeds(text, real) is False
    assert json_depth_exceeds(text, real - 1) is (real > 0)


def test_the_depth_check_ignores_brackets_in_strings_and_is_fast_on_bombs() -> None:
    assert not json_depth_exceeds(json.dumps({"a": "[[[[[[[[[[", "b": '\\"[[[['}).encode(), 2)
    assert json_depth_exceeds(b"[" * 1_000_000, 32)


@given(
    st.text(alphabet="ab-\n", max_size=60),
    st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_a_live_log_read_in_any_chunks_never_shows_a_secret(noise: str, cuts: list[int]) -> None:
    secret = "hunter2"
    log = (noise[: len(noise) // 2] + secret + noise[len(noise) // 2 :] + secret).encode()
    shown, pos = b"", 0
    for cut in [*sorted(cuts), len(log)]:
        available = log[:cut]  # what the step has written so far
        if pos > len(available):
            continue
        out, used = masked_slice(available[pos:], [secret], final=False)
        assert secret.encode() not in out
        shown, pos = shown + out, pos + used
    out, used = masked_slice(log[pos:], [secret], final=True)  # the step is done
    shown += out
    assert secret.encode() not in shown
    assert shown == log.replace(secret.encode(), MASK.encode())


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_kernel_names_the_owner_of_a_loopback_client(family: int, host: str) -> None:
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(1)
    port = server.getsockname()[1]
    code = f"import socket, sys; s = socket.create_connection(({host!r}, {port})); sys.stdin.read()"
    client = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", code],
        stdin=subprocess.PIPE,
        cwd="/",
    )
    try:
        conn, addr = server.accept()
        me = conn.getsockname()[:2]
        assert peers._sock_diag_uid(addr[:2], me) == 65534
        assert peers._proc_net_uid(addr[:2], me) == 65534  # the fallback agrees
        assert peers.client_uid(addr[:2], me) == 65534
        conn.close()
    finally:
        assert client.stdin is not None
        client.stdin.close()
        client.wait(timeout=10)
        server.close()
    assert peers.client_uid((host, 1), (host, 2)) is None  # no such connection
    assert (
        peers.is_loopback("127.8.9.1") and peers.is_loopback("::ffff:127.0.0.1") and not peers.is_loopback("10.0.0.1")
    )


def test_the_loop_watch_names_a_step_that_holds_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    import time

    import trio

    from dagd.loopwatch import LoopWatch

    async def main() -> None:
        trio.lowlevel.add_instrument(LoopWatch(100))
        await trio.sleep(0)

        async def hog() -> None:
            end = time.thread_time() + 0.15
            while time.thread_time() < end:  # 150 ms of CPU without a checkpoint
                pass

        async def polite() -> None:
            for _ in range(20):
                await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hog, name="hog")
            nursery.start_soon(polite, name="polite")

    with caplog.at_level("ERROR", logger="dagd.loop"):
        trio.run(main)
    held = [r.getMessage() for r in caplog.records if "held" in r.getMessage()]
    assert len(held) == 1 and held[0].endswith("by one step of task hog"), held
