"""`redis.<command>` (Dagu 1.x `type: redis` with `command:` in its config, and every shell-less
step of a DAG with a DAG-level `redis:`): one Redis command — or a `pipeline`, a Lua `script` —
through redis-py, in a worker thread.

Connection: the DAG's `redis:` with the step's `with:` over it — `url` or host, port, username,
password, db, tls (tls_ca, tls_cert, tls_key, tls_skip_verify), max_retries, timeout. The command
takes Dagu's fields: key / keys, value / values, field / fields, ttl, nx, xx, keep_ttl, count,
match, start / stop, score, min / max, with_scores, position / pivot, channel, message, stream,
stream_id, stream_fields, max_len, group, consumer, block, no_ack. `lock:` holds a Redis lock
(SET NX with `lock_timeout`, retried `lock_retry` times `lock_wait` ms apart) around the work. The
result is printed as Dagu prints it: `output_format` json (the default: indented by two spaces),
jsonl, raw or csv, nil as `null_value`."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

import trio

from dagd.engine.step import StepFailed
from dagd.spec.executors import REDIS_CONNECTION as CONNECTION
from dagd.spec.executors import REDIS_KEYS as KEYS


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _need(c: Mapping[str, Any], key: str, command: str) -> Any:
    v = c.get(key)
    if v is None or v == "" or v == []:
        raise StepFailed(f"redis {command} needs {key}")
    return v


def _keys(c: Mapping[str, Any], command: str) -> list[str]:
    keys = [str(k) for k in c.get("keys") or []] or ([str(c["key"])] if c.get("key") else [])
    if not keys:
        raise StepFailed(f"redis {command} needs key or keys")
    return keys


def _values(c: Mapping[str, Any], command: str) -> list[str]:
    values = [_text(v) for v in c.get("values") or []] or ([_text(c["value"])] if c.get("value") is not None else [])
    if not values:
        raise StepFailed(f"redis {command} needs value or values")
    return values


def _pairs(m: Any, what: str, command: str) -> list[str]:
    if not isinstance(m, Mapping) or not m:
        raise StepFailed(f"redis {command} needs {what} (a mapping)")
    return [x for k, v in m.items() for x in (str(k), _text(v))]


def _set(c: Mapping[str, Any]) -> list[Any]:
    args: list[Any] = ["SET", _need(c, "key", "SET"), _text(_need(c, "value", "SET"))]
    if c.get("keep_ttl"):
        args.append("KEEPTTL")
    elif c.get("ttl"):
        args += ["EX", int(c["ttl"])]
    if c.get("nx"):
        args.append("NX")
    elif c.get("xx"):
        args.append("XX")
    return args


def _z_range(name: str) -> Callable[[Mapping[str, Any]], list[Any]]:
    def build(c: Mapping[str, Any]) -> list[Any]:
        if name == "ZRANGEBYSCORE":
            args = [name, _need(c, "key", name), str(c.get("min", "-inf")), str(c.get("max", "+inf"))]
        else:
            args = [name, _need(c, "key", name), int(c.get("start", 0)), int(c.get("stop", -1))]
        return args + (["WITHSCORES"] if c.get("with_scores") else [])

    return build


def _xadd(c: Mapping[str, Any]) -> list[Any]:
    args: list[Any] = ["XADD", _need(c, "stream", "XADD")]
    if c.get("max_len"):
        args += ["MAXLEN", "~", int(c["max_len"])]
    return [*args, str(c.get("stream_id") or "*"), *_pairs(c.get("stream_fields"), "stream_fields", "XADD")]


def _xread(group: bool) -> Callable[[Mapping[str, Any]], list[Any]]:
    def build(c: Mapping[str, Any]) -> list[Any]:
        name = "XREADGROUP" if group else "XREAD"
        args: list[Any] = [name]
        if group:
            args += ["GROUP", _need(c, "group", name), _need(c, "consumer", name)]
        if c.get("count"):
            args += ["COUNT", int(c["count"])]
        if c.get("block") is not None:
            args += ["BLOCK", int(c["block"])]
        if group and c.get("no_ack"):
            args.append("NOACK")
        default = ">" if group else "0"
        return [*args, "STREAMS", _need(c, "stream", name), str(c.get("stream_id") or default)]

    return build


def _simple(name: str, *fields: str) -> Callable[[Mapping[str, Any]], list[Any]]:
    """NAME followed by the named fields (key, field, value …), each required."""

    def build(c: Mapping[str, Any]) -> list[Any]:
        return [*name.split(), *(_text(_need(c, f, name)) for f in fields)]

    return build


BUILD: dict[str, Callable[[Mapping[str, Any]], list[Any]]] = {
    "GET": _simple("GET", "key"),
    "SET": _set,
    "SETNX": _simple("SETNX", "key", "value"),
    "SETEX": lambda c: [
        "SETEX",
        _need(c, "key", "SETEX"),
        int(_need(c, "ttl", "SETEX")),
        _text(_need(c, "value", "SETEX")),
    ],
    "GETSET": _simple("GETSET", "key", "value"),
    "MGET": lambda c: ["MGET", *_keys(c, "MGET")],
    "MSET": lambda c: ["MSET", *_values(c, "MSET")],
    "INCR": _simple("INCR", "key"),
    "INCRBY": _simple("INCRBY", "key", "value"),
    "INCRBYFLOAT": _simple("INCRBYFLOAT", "key", "value"),
    "DECR": _simple("DECR", "key"),
    "DECRBY": _simple("DECRBY", "key", "value"),
    "APPEND": _simple("APPEND", "key", "value"),
    "STRLEN": _simple("STRLEN", "key"),
    "DEL": lambda c: ["DEL", *_keys(c, "DEL")],
    "EXISTS": lambda c: ["EXISTS", *_keys(c, "EXISTS")],
    "EXPIRE": _simple("EXPIRE", "key", "ttl"),
    "EXPIREAT": _simple("EXPIREAT", "key", "value"),
    "TTL": _simple("TTL", "key"),
    "PTTL": _simple("PTTL", "key"),
    "PERSIST": _simple("PERSIST", "key"),
    "KEYS": lambda c: ["KEYS", str(c.get("match") or c.get("key") or "*")],
    "SCAN": lambda c: [
        "SCAN",
        int(c.get("start", 0)),
        "MATCH",
        str(c.get("match") or "*"),
        "COUNT",
        int(c.get("count") or 10),
    ],
    "TYPE": _simple("TYPE", "key"),
    "RENAME": _simple("RENAME", "key", "value"),
    "RENAMENX": _simple("RENAMENX", "key", "value"),
    "HGET": _simple("HGET", "key", "field"),
    "HSET": lambda c: [
        "HSET",
        _need(c, "key", "HSET"),
        *(
            _pairs(c["fields"], "fields", "HSET")
            if c.get("fields")
            else [str(_need(c, "field", "HSET")), _text(_need(c, "value", "HSET"))]
        ),
    ],
    "HSETNX": _simple("HSETNX", "key", "field", "value"),
    "HMGET": lambda c: [
        "HMGET",
        _need(c, "key", "HMGET"),
        *[str(f) for f in (c.get("fields") or [c.get("field")]) if f],
    ],
    "HMSET": lambda c: ["HSET", _need(c, "key", "HMSET"), *_pairs(c.get("fields"), "fields", "HMSET")],
    "HGETALL": _simple("HGETALL", "key"),
    "HDEL": lambda c: ["HDEL", _need(c, "key", "HDEL"), *[str(f) for f in (c.get("fields") or [c.get("field")]) if f]],
    "HEXISTS": _simple("HEXISTS", "key", "field"),
    "HINCRBY": _simple("HINCRBY", "key", "field", "value"),
    "HINCRBYFLOAT": _simple("HINCRBYFLOAT", "key", "field", "value"),
    "HKEYS": _simple("HKEYS", "key"),
    "HVALS": _simple("HVALS", "key"),
    "HLEN": _simple("HLEN", "key"),
    "LPUSH": lambda c: ["LPUSH", _need(c, "key", "LPUSH"), *_values(c, "LPUSH")],
    "RPUSH": lambda c: ["RPUSH", _need(c, "key", "RPUSH"), *_values(c, "RPUSH")],
    "LPOP": lambda c: ["LPOP", _need(c, "key", "LPOP"), *([int(c["count"])] if c.get("count") else [])],
    "RPOP": lambda c: ["RPOP", _need(c, "key", "RPOP"), *([int(c["count"])] if c.get("count") else [])],
    "BLPOP": lambda c: ["BLPOP", *_keys(c, "BLPOP"), int(c.get("block") or 0) / 1000],
    "BRPOP": lambda c: ["BRPOP", *_keys(c, "BRPOP"), int(c.get("block") or 0) / 1000],
    "LRANGE": lambda c: ["LRANGE", _need(c, "key", "LRANGE"), int(c.get("start", 0)), int(c.get("stop", -1))],
    "LLEN": _simple("LLEN", "key"),
    "LINDEX": lambda c: ["LINDEX", _need(c, "key", "LINDEX"), int(c.get("start", 0))],
    "LSET": lambda c: ["LSET", _need(c, "key", "LSET"), int(c.get("start", 0)), _text(_need(c, "value", "LSET"))],
    "LINSERT": lambda c: [
        "LINSERT",
        _need(c, "key", "LINSERT"),
        str(c.get("position") or "BEFORE").upper(),
        _text(_need(c, "pivot", "LINSERT")),
        _text(_need(c, "value", "LINSERT")),
    ],
    "LREM": lambda c: ["LREM", _need(c, "key", "LREM"), int(c.get("count") or 0), _text(_need(c, "value", "LREM"))],
    "LTRIM": lambda c: ["LTRIM", _need(c, "key", "LTRIM"), int(c.get("start", 0)), int(c.get("stop", -1))],
    "SADD": lambda c: ["SADD", _need(c, "key", "SADD"), *_values(c, "SADD")],
    "SREM": lambda c: ["SREM", _need(c, "key", "SREM"), *_values(c, "SREM")],
    "SMEMBERS": _simple("SMEMBERS", "key"),
    "SISMEMBER": _simple("SISMEMBER", "key", "value"),
    "SCARD": _simple("SCARD", "key"),
    "SPOP": lambda c: ["SPOP", _need(c, "key", "SPOP"), *([int(c["count"])] if c.get("count") else [])],
    "SRANDMEMBER": lambda c: [
        "SRANDMEMBER",
        _need(c, "key", "SRANDMEMBER"),
        *([int(c["count"])] if c.get("count") else []),
    ],
    "SDIFF": lambda c: ["SDIFF", *_keys(c, "SDIFF")],
    "SINTER": lambda c: ["SINTER", *_keys(c, "SINTER")],
    "SUNION": lambda c: ["SUNION", *_keys(c, "SUNION")],
    "ZADD": lambda c: [
        "ZADD",
        _need(c, "key", "ZADD"),
        float(_need(c, "score", "ZADD")),
        _text(_need(c, "value", "ZADD")),
    ],
    "ZREM": lambda c: ["ZREM", _need(c, "key", "ZREM"), *_values(c, "ZREM")],
    "ZRANGE": _z_range("ZRANGE"),
    "ZREVRANGE": _z_range("ZREVRANGE"),
    "ZRANGEBYSCORE": _z_range("ZRANGEBYSCORE"),
    "ZSCORE": _simple("ZSCORE", "key", "value"),
    "ZRANK": _simple("ZRANK", "key", "value"),
    "ZREVRANK": _simple("ZREVRANK", "key", "value"),
    "ZCARD": _simple("ZCARD", "key"),
    "ZCOUNT": lambda c: ["ZCOUNT", _need(c, "key", "ZCOUNT"), str(c.get("min", "-inf")), str(c.get("max", "+inf"))],
    "ZINCRBY": lambda c: [
        "ZINCRBY",
        _need(c, "key", "ZINCRBY"),
        float(_need(c, "score", "ZINCRBY")),
        _text(_need(c, "value", "ZINCRBY")),
    ],
    "ZPOPMIN": lambda c: ["ZPOPMIN", _need(c, "key", "ZPOPMIN"), int(c.get("count") or 1)],
    "ZPOPMAX": lambda c: ["ZPOPMAX", _need(c, "key", "ZPOPMAX"), int(c.get("count") or 1)],
    "PUBLISH": lambda c: ["PUBLISH", _need(c, "channel", "PUBLISH"), _text(_need(c, "message", "PUBLISH"))],
    "XADD": _xadd,
    "XREAD": _xread(False),
    "XREADGROUP": _xread(True),
    "XACK": lambda c: [
        "XACK",
        _need(c, "stream", "XACK"),
        _need(c, "group", "XACK"),
        str(_need(c, "stream_id", "XACK")),
    ],
    "XLEN": _simple("XLEN", "stream"),
    "XRANGE": lambda c: [
        "XRANGE",
        _need(c, "stream", "XRANGE"),
        str(c.get("start") or "-"),
        str(c.get("stop") or "+"),
        *(["COUNT", int(c["count"])] if c.get("count") else []),
    ],
    "XREVRANGE": lambda c: [
        "XREVRANGE",
        _need(c, "stream", "XREVRANGE"),
        str(c.get("stop") or "+"),
        str(c.get("start") or "-"),
        *(["COUNT", int(c["count"])] if c.get("count") else []),
    ],
    "XGROUP CREATE": lambda c: [
        "XGROUP",
        "CREATE",
        _need(c, "stream", "XGROUP CREATE"),
        _need(c, "group", "XGROUP CREATE"),
        str(c.get("stream_id") or "$"),
        "MKSTREAM",
    ],
    "XGROUP DESTROY": _simple("XGROUP DESTROY", "stream", "group"),
    "XGROUP DELCONSUMER": _simple("XGROUP DELCONSUMER", "stream", "group", "consumer"),
    "XINFO GROUPS": _simple("XINFO GROUPS", "stream"),
    "XINFO STREAM": _simple("XINFO STREAM", "stream"),
    "XPENDING": _simple("XPENDING", "stream", "group"),
    "PING": lambda c: ["PING"],
    "ECHO": _simple("ECHO", "message"),
    "INFO": lambda c: ["INFO", *([str(c["key"])] if c.get("key") else [])],
    "DBSIZE": lambda c: ["DBSIZE"],
    "FLUSHDB": lambda c: ["FLUSHDB"],
    "FLUSHALL": lambda c: ["FLUSHALL"],
    "TIME": lambda c: ["TIME"],
    "CLIENT ID": lambda c: ["CLIENT", "ID"],
    "CLIENT LIST": lambda c: ["CLIENT", "LIST"],
}


def command_name(action: str, config: Mapping[str, Any]) -> str:
    """`with.command` (1.x config.command), else the action's own word (`redis.hgetall`)."""
    name = str(config.get("command") or action.partition(".")[2]).strip().upper().replace("_", " ")
    return " ".join(name.split())


def settings(dag_redis: Mapping[str, Any] | None, config: Mapping[str, Any], action: str) -> dict[str, Any]:
    extra = sorted(str(k) for k in config if str(k) not in KEYS)
    if extra:
        raise StepFailed(f"{action}: {', '.join(extra)} is not a setting of redis")
    cfg = {**{k: v for k, v in (dag_redis or {}).items() if k in CONNECTION}, **config}
    mode = str(cfg.get("mode") or "standalone")
    if mode != "standalone":
        raise StepFailed(f"redis mode {mode} is not supported by dagd (standalone servers only)")
    fmt = str(cfg.get("output_format") or "json")
    if fmt not in ("json", "jsonl", "raw", "csv"):
        raise StepFailed(f"invalid output_format: {fmt} (must be json, jsonl, raw, or csv)")
    if not cfg.get("pipeline") and not (cfg.get("script") or cfg.get("script_file") or cfg.get("script_sha")):
        name = command_name(action, cfg)
        if name not in BUILD:
            raise StepFailed(f"redis: unsupported command {name!r}")
    return cfg


def _client(cfg: Mapping[str, Any], cwd: str) -> Any:
    import redis

    timeout = float(cfg.get("timeout") or 30)
    common: dict[str, Any] = {
        "decode_responses": True,
        "protocol": 2,  # RESP2: what every server speaks (redis-py 8 would ask for RESP3)
        "socket_timeout": timeout,
        "socket_connect_timeout": min(timeout, 10.0),
    }
    if cfg.get("tls"):

        def path(k: str) -> str | None:
            p = cfg.get(k)
            return None if not p else str(p) if os.path.isabs(str(p)) else os.path.join(cwd, str(p))

        common |= {
            "ssl": True,
            "ssl_ca_certs": path("tls_ca"),
            "ssl_certfile": path("tls_cert"),
            "ssl_keyfile": path("tls_key"),
        }
        if cfg.get("tls_skip_verify"):
            common |= {"ssl_cert_reqs": "none", "ssl_check_hostname": False}
    if cfg.get("url"):
        client = redis.Redis.from_url(str(cfg["url"]), **common)
    else:
        client = redis.Redis(
            host=str(cfg.get("host") or "localhost"),
            port=int(cfg.get("port") or 6379),
            db=int(cfg.get("db") or 0),
            username=cfg.get("username") or None,
            password=cfg.get("password") or None,
            **common,
        )
    client.response_callbacks.clear()  # replies as the server sends them ("OK", integers, lists)
    return client


def _shape(name: str, reply: Any) -> Any:
    """Replies whose shape Dagu gives as a map: HGETALL; ZRANGE … WITHSCORES as Score/Member."""
    if name == "HGETALL" and isinstance(reply, list):
        return dict(zip(reply[::2], reply[1::2], strict=False))
    return reply


def _one(client: Any, c: Mapping[str, Any], name: str) -> Any:
    args = BUILD[name](c)
    reply = client.execute_command(*args)
    if name in ("ZRANGE", "ZREVRANGE", "ZRANGEBYSCORE", "ZPOPMIN", "ZPOPMAX") and (
        c.get("with_scores") or name.startswith("ZPOP")
    ):
        return [{"Score": float(s), "Member": m} for m, s in zip(reply[::2], reply[1::2], strict=False)]
    return _shape(name, reply)


def _script(client: Any, cfg: Mapping[str, Any], cwd: str) -> Any:
    keys = [str(k) for k in cfg.get("script_keys") or []]
    args = [_text(a) for a in cfg.get("script_args") or []]
    if cfg.get("script_sha"):
        return client.execute_command("EVALSHA", str(cfg["script_sha"]), len(keys), *keys, *args)
    text = cfg.get("script")
    if not text:
        p = str(cfg["script_file"])
        with open(p if os.path.isabs(p) else os.path.join(cwd, p), encoding="utf-8") as fh:
            text = fh.read()
    return client.execute_command("EVAL", str(text), len(keys), *keys, *args)


def _pipeline(client: Any, cfg: Mapping[str, Any]) -> Any:
    steps = cfg.get("pipeline")
    if not isinstance(steps, Sequence) or isinstance(steps, str):
        raise StepFailed("redis pipeline is a list of commands (each with command, key, value …)")
    names = []
    pipe = client.pipeline(transaction=bool(cfg.get("multi")))
    if cfg.get("watch"):
        pipe.watch(*[str(k) for k in cfg["watch"]])
        pipe.multi()
    for item in steps:
        if not isinstance(item, Mapping) or not item.get("command"):
            raise StepFailed("each pipeline entry needs a command")
        name = command_name("redis.", item)
        if name not in BUILD:
            raise StepFailed(f"redis: unsupported command {name!r} in pipeline")
        names.append(name)
        pipe.execute_command(*BUILD[name](item))
    replies = pipe.execute()
    return [_shape(n, r) for n, r in zip(names, replies, strict=True)]


@contextlib.contextmanager
def _lock(client: Any, cfg: Mapping[str, Any]) -> Any:
    name = cfg.get("lock")
    if not name:
        yield
        return
    token = uuid.uuid4().hex
    ttl = int(cfg.get("lock_timeout") or 30)
    retry = cfg.get("lock_retry")
    tries = 3 if retry is None else int(retry)
    for attempt in range(tries + 1):
        if client.execute_command("SET", str(name), token, "NX", "EX", ttl):
            break
        if attempt == tries:
            raise StepFailed(f"redis: lock {name} is held by another run")
        time.sleep(int(cfg.get("lock_wait") or 100) / 1000)
    try:
        yield
    finally:
        release = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
        with contextlib.suppress(Exception):
            client.execute_command("EVAL", release, 1, str(name), token)


def _write(out: BinaryIO, fmt: str, null: str, value: Any) -> None:
    text = io.StringIO()
    if fmt == "json":
        text.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    elif fmt == "jsonl":
        items = (
            value
            if isinstance(value, list)
            else [{k: v} for k, v in value.items()]
            if isinstance(value, dict)
            else [value]
        )
        for item in items:
            text.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n")
    elif fmt == "raw":

        def raw(v: Any) -> None:
            if v is None:
                text.write(null + "\n")
            elif isinstance(v, list):
                for x in v:
                    raw(x)
            elif isinstance(v, dict):
                for k, x in v.items():
                    text.write(f"{k}: {x}\n")
            else:
                text.write(f"{v}\n")

        raw(value)
    else:
        sheet = csv.writer(text, lineterminator="\n")
        if isinstance(value, dict):
            sheet.writerow(["key", "value"])
            sheet.writerows([k, null if v is None else v] for k, v in value.items())
        elif isinstance(value, list):
            sheet.writerows([[null if v is None else _text(v)] for v in value])
        else:
            sheet.writerow([null if value is None else value])
    data = text.getvalue().encode()
    out.write(data)


def _work(action: str, cfg: Mapping[str, Any], cwd: str, out: BinaryIO, holder: list[Any]) -> None:
    import redis

    client = _client(cfg, cwd)
    holder.append(client)
    try:
        with _lock(client, cfg):
            if cfg.get("pipeline"):
                value = _pipeline(client, cfg)
            elif cfg.get("script") or cfg.get("script_file") or cfg.get("script_sha"):
                value = _script(client, cfg, cwd)
            else:
                value = _one(client, cfg, command_name(action, cfg))
        limit = int(cfg.get("max_result_size") or 0)
        if limit and len(json.dumps(value)) > limit:
            raise StepFailed(f"redis: the result is larger than max_result_size ({limit} bytes)")
        _write(out, str(cfg.get("output_format") or "json"), str(cfg.get("null_value", "null")), value)
    except redis.RedisError as exc:
        raise StepFailed(f"redis: {exc}") from None
    finally:
        client.close()


async def run(action: str, cfg: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    holder: list[Any] = []
    try:
        await trio.to_thread.run_sync(_work, action, cfg, cwd, out, holder, abandon_on_cancel=True)
    except trio.Cancelled:
        for client in holder:  # a blocking command (BLPOP, XREAD BLOCK) ends with its connection
            with contextlib.suppress(Exception):
                client.connection_pool.disconnect()
        raise
