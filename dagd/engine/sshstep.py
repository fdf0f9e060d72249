"""`ssh.run` and `sftp.upload` / `sftp.download` (Dagu 1.x `executor: ssh` / `sftp`, and every
shell step of a DAG with a DAG-level `ssh:`) through the OpenSSH client of this host.

The `ssh` (or `sftp`) program is the step's process: its group, logs, timeout, retries and exit
code are the step's, and `~/.ssh/config`, the agent (`SSH_AUTH_SOCK`) and known_hosts work as an
operator expects. Settings: the DAG's `ssh:` with the step's `with:`/`config:` over it — user,
host (or ip), port, key, password, strict_host_key (default true), known_host_file, shell, timeout
(connect), bastion (a jump host).

A stop or a timeout ends the remote command too. The remote side runs the command under a small
POSIX sh wrapper: the command in a session of its own, and a watcher reading the connection's
stdin, which dagd holds open for as long as the step runs (StepRuntime.hold_stdin). When the
client goes — killed by a stop or a timeout, or dagd itself gone — sshd closes that stdin and the
watcher sends SIGTERM to the command's session, then SIGKILL two seconds later."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagd.engine.step import StepFailed

SFTP_ACTIONS = frozenset({"sftp.upload", "sftp.download"})
CONNECTION = {"user", "host", "ip", "port", "key", "password", "stricthostkey", "stricthostkeychecking"}
CONNECTION |= {"knownhostfile", "shell", "timeout", "bastion"}
SSH_KEYS = CONNECTION | {"command", "script"}
SFTP_KEYS = CONNECTION | {"direction", "source", "destination"}
BASTION_KEYS = {"host", "port", "user", "key", "password"}
_SH_FAMILY = {"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "busybox"}

# The remote wrapper ($1: the command line). POSIX sh, dash and busybox ash alike: fd 3 keeps the
# connection's stdin (an asynchronous list's own stdin is /dev/null), `setsid` gives the command a
# session (so its whole group can be signalled) — an asynchronous command of a shell without job
# control is no group leader, so setsid (util-linux's or busybox's: no -w there) execs in place
# and $! is the session — and USR1 tells the waiting shell the client left.
# The wrapper's own stdout and stderr are /dev/null (fds 4 and 5 carry the connection's to the
# command): a shell reporting "Terminated" to a connection that has gone would die of SIGPIPE
# before its SIGKILL.
WRAPPER = r"""exec 3<&0 4>&1 5>&2 >/dev/null 2>&1
gone=
trap 'gone=1' USR1
if command -v setsid >/dev/null 2>&1; then
  setsid /bin/sh -c "$1" </dev/null >&4 2>&5 3<&- 4>&- 5>&- &
else
  /bin/sh -c "$1" </dev/null >&4 2>&5 3<&- 4>&- 5>&- &
fi
p=$!
(cat <&3; kill -USR1 $$; kill -TERM -$p || kill -TERM $p) 4>&- 5>&- &
w=$!
exec 3<&- 4>&- 5>&-
while wait $p; c=$?; [ -z "$gone" ] && [ $c -gt 128 ] && kill -0 $p; do :; done
if [ -n "$gone" ]; then sleep 2; kill -KILL -$p; else kill $w; fi
exit $c"""


@dataclass
class Settings:
    user: str
    host: str
    port: str
    key: str | None
    password: str | None
    strict: bool
    known_hosts: str | None
    shell: tuple[str, ...]
    timeout: int | None
    bastion: Mapping[str, Any] | None


def _norm(config: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).replace("_", "").lower(): v for k, v in config.items()}


def _seconds(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise StepFailed(f"{what} is a duration such as 30s or 1m")
    if isinstance(value, (int, float)):
        return max(1, int(value))
    m = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*", str(value))
    if not m or not any(m.groups()):
        if str(value).strip().isdigit():
            return max(1, int(str(value).strip()))
        raise StepFailed(f"{what} is a duration such as 30s or 1m, got {value!r}")
    h, mi, s = (int(g or 0) for g in m.groups())
    return max(1, h * 3600 + mi * 60 + s)


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise StepFailed(f"{what} is true or false, got {value!r}")


def settings(dag_ssh: Mapping[str, Any] | None, config: Mapping[str, Any], action: str) -> Settings:
    """The connection: the DAG's `ssh:` with the step's keys over it, checked."""
    allowed = SFTP_KEYS if action in SFTP_ACTIONS else SSH_KEYS
    step = _norm(config)
    extra = sorted(str(k) for k, n in zip(config, step, strict=True) if n not in allowed)
    if extra:
        raise StepFailed(f"{action}: {', '.join(extra)} is not a setting of {action}")
    merged = {**_norm(dag_ssh or {}), **{k: v for k, v in step.items() if k in CONNECTION}}
    host = merged.get("host") or merged.get("ip")
    if not host or not merged.get("user"):
        raise StepFailed(f"{action} needs user and host (in with: or the DAG's ssh:)")
    port = str(merged.get("port") or "22")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise StepFailed(f"{action}: port must be a number from 1 to 65535, got {port!r}")
    strict_value = merged.get("stricthostkey", merged.get("stricthostkeychecking", True))
    shell_value = merged.get("shell")
    if isinstance(shell_value, str):
        shell: tuple[str, ...] = tuple(shlex.split(shell_value))
    elif isinstance(shell_value, Sequence):
        shell = tuple(str(s) for s in shell_value)
    else:
        shell = ()
    bastion = merged.get("bastion")
    if bastion is not None:
        if not isinstance(bastion, Mapping) or not bastion.get("host"):
            raise StepFailed(f"{action}: bastion is a mapping with at least host (and user, port, key)")
        unknown = sorted(str(k) for k in bastion if str(k) not in BASTION_KEYS)
        if unknown:
            raise StepFailed(f"{action}: bastion does not take {', '.join(unknown)} (allowed: host, port, user, key)")
        if bastion.get("password"):
            raise StepFailed(
                f"{action}: a bastion password is not supported by dagd (OpenSSH asks for it on a terminal);"
                " give the bastion a key"
            )
    key = merged.get("key")
    known = merged.get("knownhostfile")
    return Settings(
        user=str(merged["user"]),
        host=str(host),
        port=port,
        key=os.path.expanduser(str(key)) if key else None,
        password=str(merged["password"]) if merged.get("password") else None,
        strict=_bool(strict_value, f"{action}: strict_host_key"),
        known_hosts=os.path.expanduser(str(known)) if known else None,
        shell=shell,
        timeout=_seconds(merged.get("timeout"), f"{action}: timeout"),
        bastion=bastion,
    )


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise StepFailed(f"{name} is not installed on this host (apt install openssh-client)")
    return found


def _options(s: Settings) -> list[str]:
    opts = ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
    if s.password is None:
        opts += ["-o", "BatchMode=yes"]  # never a prompt nobody can answer
    else:
        opts += ["-o", "BatchMode=no", "-o", "NumberOfPasswordPrompts=1"]
    if s.key:
        opts += ["-i", s.key, "-o", "IdentitiesOnly=yes"]
    if s.strict:
        opts += ["-o", "StrictHostKeyChecking=yes"]
        if s.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={s.known_hosts}"]
    else:  # Dagu's strict_host_key: false — accept any host key, and remember none
        opts += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    if s.timeout:
        opts += ["-o", f"ConnectTimeout={s.timeout}"]
    if s.bastion is not None:
        b = s.bastion
        jump = [_program("ssh"), "-o", "BatchMode=yes", "-W", "%h:%p", "-p", str(b.get("port") or 22)]
        if b.get("key"):
            jump += ["-i", os.path.expanduser(str(b["key"])), "-o", "IdentitiesOnly=yes"]
        if not s.strict:
            jump += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
        elif s.known_hosts:
            jump += ["-o", f"UserKnownHostsFile={s.known_hosts}"]
        target = f"{b['user']}@{b['host']}" if b.get("user") else str(b["host"])
        opts += ["-o", "ProxyCommand=" + shlex.join([*jump, target]).replace("'%h:%p'", "%h:%p")]
    return opts


def askpass_env(s: Settings, helper_dir: str) -> dict[str, str]:
    """With a password: OpenSSH asks a helper program for it (SSH_ASKPASS_REQUIRE=force, OpenSSH 8.4+).
    The helper only prints an environment variable, so the password is never written to disk."""
    if s.password is None:
        return {}
    path = helper(helper_dir, "dagd-ssh-askpass", ASKPASS)
    return {"SSH_ASKPASS": path, "SSH_ASKPASS_REQUIRE": "force", "DAGD_SSH_PASSWORD": s.password}


ASKPASS = '#!/bin/sh\nprintf "%s\\n" "$DAGD_SSH_PASSWORD"\n'


def helper(directory: str, name: str, text: str) -> str:
    """A small askpass program in the run's folder (mode 0700): it prints a secret from its own
    environment, so no secret is ever written to disk."""
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(path + ".tmp", path)
    return path


def _sh_family(shell: tuple[str, ...]) -> bool:
    return bool(shell) and os.path.basename(shell[0]) in _SH_FAMILY


def remote_line(s: Settings, texts: Sequence[str], workdir: str | None) -> str:
    """What the remote login shell is given: the wrapper, and the command line it runs. Each text
    runs in a fresh shell, in order, stopping at the first failure (Dagu's `run:` list); with a
    `shell`, each as `shell -c text` (a multi-line text of an sh-family shell with `set -e`,
    unless the shell is given `-e`/`+e` itself), without one by the user's login shell."""
    parts = []
    for text in texts:
        if s.shell:
            body = text
            if "\n" in text.strip() and _sh_family(s.shell) and not {"-e", "+e"} & set(s.shell[1:]):
                body = "set -e\n" + text
            parts.append(shlex.join([*s.shell, "-c", body]))
        else:
            parts.append(f'"${{SHELL:-/bin/sh}}" -c {shlex.quote(text)}')
    line = " && ".join(parts)
    if workdir:
        if workdir == "~" or workdir.startswith("~/"):
            where = '"$HOME"' + (shlex.quote(workdir[1:]) if len(workdir) > 1 else "")
        else:
            where = shlex.quote(workdir)
        line = f"cd {where} && {line}"
    return f"exec /bin/sh -c {shlex.quote(WRAPPER)} dagd-ssh {shlex.quote(line)}"


def ssh_argv(s: Settings, remote: str) -> list[str]:
    return [_program("ssh"), "-T", "-p", s.port, *_options(s), "-l", s.user, "--", s.host, remote]


def _sftp_quote(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sftp_plan(s: Settings, action: str, config: Mapping[str, Any], cwd: str, batch_path: str) -> list[str]:
    """The sftp command for one transfer (a directory recursively); its batch file is written to
    `batch_path`. A relative local path is the step's working directory's, a relative remote one
    the remote home's."""
    step = _norm(config)
    direction = "download" if action == "sftp.download" else str(step.get("direction") or "upload")
    if direction not in ("upload", "download"):
        raise StepFailed(f"{action}: direction is upload or download, got {direction!r}")
    source, dest = step.get("source"), step.get("destination")
    if not isinstance(source, str) or not source or not isinstance(dest, str) or not dest:
        raise StepFailed(f"{action} needs source and destination (paths)")
    if direction == "upload":
        local = source if os.path.isabs(source) else os.path.join(cwd, source)
        if not os.path.exists(local):
            raise StepFailed(f"{action}: source {local} does not exist")
        flag = "-R " if os.path.isdir(local) else ""
        command = f"put {flag}{_sftp_quote(local)} {_sftp_quote(dest)}"
    else:
        local = dest if os.path.isabs(dest) else os.path.join(cwd, dest)
        command = f"get -R {_sftp_quote(source)} {_sftp_quote(local)}"
    with open(batch_path, "w", encoding="utf-8") as fh:
        fh.write(command + "\n")
    # sftp -b adds BatchMode=yes after the options before it; ssh keeps an option's first value,
    # so a password's BatchMode=no (given first) stands
    return [_program("sftp"), "-P", s.port, *_options(s), "-b", batch_path, f"{s.user}@{s.host}"]
