"""What the builtin executors need from a step, checked at load time.

dagd parses every executor step (so a file loads and `dagctl validate` judges it), and checks
the fields each of the common executors cannot do without — in either spelling: the current
`action:` + `with:` or Dagu 1.x's `executor:` + `config:` + `command:`/`script:`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagd.spec.fields import Ctx
from dagd.spec.model import Location

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
DOCKER_KEYS = frozenset(
    {"image", "command", "pull", "autoremove", "workingdir", "volumes", "platform", "container", "host"}
    | {"network", "containername", "exec"}
)


def check_action(
    ctx: Ctx,
    loc: Location,
    path: str,
    action: str,
    config: Mapping[str, Any],
    commands: tuple[str, ...],
    script: str | None,
) -> None:
    def need(what: str) -> None:
        ctx.error(loc, path, f"action {action} {what}")

    def odd(what: str) -> None:  # unknown keys: Dagu 1.x loaded them (its own fixtures have some)
        if ctx.classic:
            ctx.warn(loc, path, f"action {action} {what}; the step fails when it starts")
        else:
            need(what)

    if action in ("http.request", "jq.filter"):
        _unknown(odd, config, HTTP_KEYS if action == "http.request" else JQ_KEYS)
    if action == "http.request":
        if "url" in config:
            method = str(config.get("method", "GET")).upper()
            if method not in HTTP_METHODS:
                need(f"method must be one of {', '.join(sorted(HTTP_METHODS))}, got {method}")
        elif commands:
            parts = commands[0].split(None, 1)
            bare_url = len(parts) == 1 and parts[0].startswith(("http://", "https://"))  # GET implied
            if not bare_url and (len(parts) != 2 or parts[0].upper() not in HTTP_METHODS):
                need('needs "METHOD URL" as its command (e.g. GET https://example.com) or with.url')
        else:
            need("needs with.url (or a command such as GET https://example.com)")
    elif action == "ssh.run":
        if not commands and script is None and not config.get("command"):
            need("needs a command to run on the remote host")
        _unknown(odd, config, SSH_STEP_KEYS)
    elif action in ("sftp.upload", "sftp.download"):
        missing = [k for k in ("source", "destination") if not config.get(k)]
        if missing:
            need(f"needs {' and '.join(missing)} in with/config")
        _unknown(odd, config, SSH_STEP_KEYS | {"direction", "source", "destination"})
    elif action == "jq.filter":
        has_input = script is not None or "data" in config or "input" in config
        if not has_input:
            need("needs its input JSON: script (Dagu 1.x) or with.data / with.input")
        if "data" in config and "input" in config:
            need("takes exactly one of with.data or with.input")
    elif action in SQL_KEYS:
        engine = action.split(".")[0]
        _unknown(odd, config, SQL_KEYS[action] | (IMPORT_KEYS if action.endswith(".import") else set()))
        if not config.get("dsn"):
            need("needs dsn in with/config")
        imp = config.get("import")
        if isinstance(imp, Mapping):
            _unknown(lambda what: need(f"import {what}"), imp, IMPORT_KEYS)
        elif imp is None and not action.endswith(".import") and not commands and not script and not config.get("query"):
            need(f"needs a query (with.query, or the step's command or script) for {engine}")
    elif action in ACTION_KEYS or action.split(".")[0] in ("file", "archive", "wait", "artifact", "data", "state"):
        _unknown(odd, config, ACTION_KEYS.get(action) or ACTION_KEYS[action.split(".")[0]])
        if action == "outputs.write" and not isinstance(config.get("values"), Mapping):
            need("needs values: a mapping of output names to values")
        if action == "git.checkout" and not (config.get("repository") and config.get("path")):
            need("needs repository and path")
    elif action.startswith("redis."):
        _unknown(odd, config, REDIS_KEYS)
    elif action == "mail.send":
        missing = [k for k in ("to", "from", "subject") if not config.get(k)]
        if missing:
            need(f"needs {', '.join(missing)} in with/config")
        _unknown(odd, config, {"from", "to", "subject", "message", "attachments"})
    elif action in ("docker.run", "container.run"):
        if config and not any(config.get(k) for k in ("image", "container_name", "containerName", "name", "exec")):
            need("needs an image (or the name of a running container) in with/config")
        # Dagu's schema for it (dockerExecutorConfig) allows no other key; 1.x spelt them in camelCase
        unknown = sorted(str(k) for k in config if str(k).replace("_", "").lower() not in DOCKER_KEYS)
        if unknown:
            need(
                f"does not take {', '.join(unknown)} (allowed: "
                "image, command, pull, auto_remove, working_dir, volumes, platform, container, host, network, container_name, exec)"
            )


# Dagu's sshConfig / sshExecutorConfig (dag.schema.json), 1.x camelCase and `ip` included
SSH_KEYS = frozenset(
    {"user", "host", "ip", "port", "key", "password", "strict_host_key", "known_host_file", "shell", "timeout"}
    | {"bastion"}
)
SSH_STEP_KEYS = SSH_KEYS | {"command", "strict_host_key_checking"}


_SQL = {"dsn", "query", "params", "timeout", "transaction", "output_format", "headers", "null_string", "max_rows"}
_SQL |= {"streaming", "output_file", "import", "max_open_conns", "max_idle_conns"}
_PG = _SQL | {"conn_max_lifetime", "isolation_level", "advisory_lock"}
SQL_KEYS = {
    "sqlite.query": _SQL | {"file_lock"},
    "sqlite.import": _SQL | {"file_lock"},
    "postgres.query": _PG,
    "postgres.import": _PG,
}
IMPORT_KEYS = {"input_file", "table", "format", "has_header", "delimiter", "columns", "null_values", "batch_size"}
IMPORT_KEYS |= {"on_conflict", "conflict_target", "skip_rows", "max_rows", "dry_run"}


FILE_KEYS = {"path", "source", "destination", "content", "mode", "format", "pattern", "overwrite", "create_dirs"}
FILE_KEYS |= {"atomic", "recursive", "missing_ok", "dry_run", "include_dirs", "follow_symlinks", "max_bytes"}
ARCHIVE_KEYS = {"source", "destination", "format", "compression_level", "password", "overwrite", "preserve_paths"}
ARCHIVE_KEYS |= {"strip_components", "include", "exclude", "dry_run", "verbose", "follow_symlinks"}
ARCHIVE_KEYS |= {"verify_integrity", "continue_on_error"}
WAIT_KEYS = {"duration", "until", "path", "state", "url", "method", "status", "headers", "body", "poll_interval"}
WAIT_KEYS |= {"request_timeout"}
GIT_KEYS = {
    "git.checkout": {"repository", "ref", "path", "depth", "force", "token", "username", "password", "ssh_key_path"}
    | {"ssh_passphrase"},
    "git.worktree.add": {"branch", "path", "create_branch", "base"},
    "git.worktree.remove": {"branch", "path", "force", "delete_branch", "force_delete_branch"},
}
REDIS_CONNECTION = {"url", "host", "port", "password", "username", "db", "tls", "tls_cert", "tls_key", "tls_ca"}
REDIS_CONNECTION |= {"tls_skip_verify", "mode", "sentinel_master", "sentinel_addrs", "cluster_addrs", "max_retries"}
_REDIS_COMMAND = {"command", "key", "keys", "value", "values", "field", "fields", "ttl", "nx", "xx", "keep_ttl"}
_REDIS_COMMAND |= {"count", "match", "position", "pivot", "start", "stop", "score", "min", "max", "with_scores"}
_REDIS_COMMAND |= {"channel", "channels", "message", "stream", "stream_id", "group", "consumer", "stream_fields"}
_REDIS_COMMAND |= {"max_len", "block", "no_ack", "script", "script_file", "script_sha", "script_keys", "script_args"}
_REDIS_COMMAND |= {"pipeline", "watch", "multi", "lock", "lock_timeout", "lock_retry", "lock_wait", "output_format"}
_REDIS_COMMAND |= {"null_value", "timeout", "max_result_size"}
REDIS_KEYS = REDIS_CONNECTION | _REDIS_COMMAND
ARTIFACT_KEYS = {"path", "content", "mode", "format", "pattern", "overwrite", "atomic", "recursive", "include_dirs"}
ARTIFACT_KEYS |= {"max_bytes"}
DATA_KEYS = {"from", "to", "data", "input", "has_header", "headers", "delimiter", "columns", "select", "raw"}
STATE_KEYS = {"scope", "namespace", "key", "prefix", "value", "default", "expected_version", "create_only"}
STATE_KEYS |= {"required", "update", "limit", "include_values"}
# the `with:` keys each action takes (Dagu's schema); for a family, by its first word
ACTION_KEYS: dict[str, set[str]] = {"file": FILE_KEYS, "archive": ARCHIVE_KEYS, "wait": WAIT_KEYS}
ACTION_KEYS |= {"artifact": ARTIFACT_KEYS, "data": DATA_KEYS, "state": STATE_KEYS}
ACTION_KEYS |= {"outputs.write": {"values"}, **GIT_KEYS}


HTTP_KEYS = {"method", "url", "timeout", "headers", "query", "body", "form", "files", "silent", "debug", "json"}
HTTP_KEYS |= {"format", "skip_tls_verify", "output"}
JQ_KEYS = {"filter", "data", "input", "raw"}


def _plain(key: object) -> str:
    return str(key).replace("_", "").lower()


def _unknown(need: Any, config: Mapping[str, Any], allowed: frozenset[str] | set[str]) -> None:
    norm = {_plain(k) for k in allowed}
    unknown = sorted(str(k) for k in config if _plain(k) not in norm)
    if unknown:
        need(f"does not take {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def check_ssh(ctx: Ctx, node: Any) -> None:
    """A DAG-level `ssh:` (every shell step runs on that host): user and host, known keys only."""
    if node.kind != "map":
        ctx.error(node, "ssh", "ssh is a mapping: user, host, port, key, strict_host_key, known_host_file, shell …")
        return
    keys = {str(k): v for k, v in node.value.items()}
    norm = {_plain(k) for k in SSH_STEP_KEYS - {"command"}}
    for key, value in keys.items():
        if _plain(key) not in norm:
            ctx.error(value, f"ssh.{key}", f"unknown ssh key; allowed: {', '.join(sorted(SSH_KEYS))}")
    plain = {_plain(k) for k in keys}
    if "user" not in plain or not ({"host", "ip"} & plain):
        ctx.error(node, "ssh", "ssh needs user and host")


def check_mail(ctx: Ctx, m: Mapping[str, Any]) -> None:
    """The DAG's `smtp:` and `error_mail:` / `info_mail:` blocks (Dagu's smtpConfig, mailConfig;
    1.x camelCase attachLogs): known keys only, `from` and `to` where mail is asked for."""
    allowed = {
        "smtp": {"host", "port", "username", "password", "oauth"},
        "error_mail": {"from", "to", "prefix", "attach_logs"},
        "info_mail": {"from", "to", "prefix", "attach_logs"},
    }
    for key, keys in allowed.items():
        node = m.get(key)
        if node is None:
            continue
        if node.kind != "map":
            ctx.error(node, key, f"{key} is a mapping: {', '.join(sorted(keys))}")
            continue
        norm = {_plain(k) for k in keys}
        for k, v in node.value.items():
            if _plain(k) not in norm:
                ctx.error(v, f"{key}.{k}", f"unknown {key} key; allowed: {', '.join(sorted(keys))}")
        if key == "smtp" and "oauth" in node.value:
            ctx.warn(
                node.value["oauth"], "smtp.oauth", "smtp.oauth is not supported by dagd: mail of this DAG fails to send"
            )
    mail_on = m.get("mail_on")
    wanted = {"failure": "error_mail", "success": "info_mail"}
    if mail_on is not None and mail_on.kind == "map":
        for k, v in mail_on.value.items():
            target = wanted.get(str(k).lower())
            if target and v.kind == "scalar" and v.value is True:
                if target not in m:
                    ctx.warn(
                        v, f"mail_on.{k}", f"mail_on.{k} sends {target}, which this DAG does not set: no mail is sent"
                    )
                if "smtp" not in m:
                    ctx.warn(v, f"mail_on.{k}", "no smtp: in this DAG (or its base config): the mail cannot be sent")


# Dagu's containerConfig (dag.schema.json); dagd acts on the first set and refuses the second at run
CONTAINER_KEYS = frozenset(
    {"exec", "name", "image", "pull_policy", "env", "volumes", "user", "working_dir", "platform"}
    | {"keep_container", "shell", "startup", "ports", "network", "command", "wait_for", "log_pattern"}
    | {"restart_policy", "healthcheck"}
)


def check_container(ctx: Ctx, node: Any, path: str) -> None:
    """A `container:` (DAG or step): a running container's name, or Dagu's containerConfig object;
    unknown keys are errors, and so are values the run would refuse (startup, wait_for)."""
    if node.kind == "scalar" and isinstance(node.value, str) and node.value:
        return
    if node.kind != "map":
        ctx.error(node, path, "container is the name of a running container or an object with image or exec")
        return
    keys = {str(k): v for k, v in node.value.items()}
    plain = {k.replace("_", "").lower(): k for k in keys}  # (1.x camelCase: keepContainer, workingDir)
    known = {c.replace("_", "") for c in CONTAINER_KEYS}
    for norm, key in plain.items():
        if norm not in known:
            ctx.error(
                keys[key], f"{path}.{key}", f"unknown container key; allowed: {', '.join(sorted(CONTAINER_KEYS))}"
            )
    for norm, allowed in (("startup", ("keepalive", "entrypoint", "command")), ("waitfor", ("running", "healthy"))):
        value = keys[plain[norm]].value if norm in plain else None
        if value is not None and value not in allowed:
            ctx.error(
                keys[plain[norm]],
                f"{path}.{plain[norm]}",
                f"{plain[norm]} is one of {', '.join(allowed)}, got {value!r}",
            )
    if ("image" in plain) == ("exec" in plain):
        ctx.error(node, path, "container needs exactly one of image (a new container) or exec (a running one)")
