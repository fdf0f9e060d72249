"""`docker.run` / `container.run` (and Dagu 1.x `executor: docker`): the step's command in a new
container from an image, through the podman or docker CLI — whichever this host has, podman first
(`DAGD_CONTAINER_CLI` names another). The CLI process is the step's process: its group, logs,
timeout, retries and exit code are the step's. Each attempt's container has a name of its own
(`dagd-<run>-<step>-<attempt>`), so a stop or a timeout ends the container's processes too
(`rm -f` by name), whatever became of the CLI; the container is removed when the step ends unless
`auto_remove: false` keeps it.

`with:` as Dagu reads it (Docker's API field names in any case, 1.x camelCase included): image,
command (a string is split like a shell would, a list is argv), pull (always | never | missing |
fallback, or true/false), auto_remove, working_dir, volumes, platform, and Docker's
`container` (Env, User, WorkingDir, Entrypoint) and `host` (Binds) objects."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from dagd.engine.step import StepFailed

ACTIONS = frozenset({"docker.run", "container.run"})
USED = {"image", "command", "pull", "autoremove", "workingdir", "volumes", "platform", "container", "host"}
PULL = {
    "always": "always",
    "never": "never",
    "missing": "missing",
    "fallback": "fallback",
    True: "always",
    False: "never",
}


def cli() -> str:
    """The container CLI: DAGD_CONTAINER_CLI, else podman, else docker."""
    named = os.environ.get("DAGD_CONTAINER_CLI")
    found = shutil.which(named) if named else shutil.which("podman") or shutil.which("docker")
    if not found:
        raise StepFailed(
            "a container step needs podman or docker on this host"
            + (f" (DAGD_CONTAINER_CLI={named} is not found)" if named else " (apt install podman)")
        )
    return found


def _get(cfg: Mapping[str, Any], name: str) -> Any:
    """A `with:` field by Dagu's name, in any case, with or without underscores (autoRemove, Env)."""
    want = name.replace("_", "").lower()
    for key, value in cfg.items():
        if str(key).replace("_", "").lower() == want:
            return value
    return None


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise StepFailed(f"with.{what} must be a list")
    return [str(v) for v in value]


@dataclass(frozen=True)
class Plan:
    cli: str
    name: str
    argv: list[str]  # `podman run …` (or `exec …`): the step's process
    keep: bool  # auto_remove: false
    pull_first: str | None  # an image to try to pull before the run (pull: fallback)
    running: bool = False  # a container dagd did not start: never killed or removed by dagd
    plain: list[str] | None = None  # the exec without its guard, for a container with no /bin/sh


def plan(cfg: Mapping[str, Any], commands: tuple[str, ...], cwd: str, name: str) -> Plan:
    """What to run, from the resolved `with:` and the step's own command (a 1.x step's `command:`)."""
    image = _get(cfg, "image")
    running = _get(cfg, "container_name")
    if running is not None and image is not None:
        raise StepFailed("with.image and with.container_name exclude each other (a new container, or a running one)")
    if not isinstance(image, str) or not image:
        if isinstance(running, str) and running:
            return _exec_plan(cfg, commands, running)

        raise StepFailed("with.image is required (the image to run the step in)")
    command = _get(cfg, "command")
    if isinstance(command, str):
        argv = shlex.split(command)
    elif isinstance(command, (list, tuple)):
        argv = [str(a) for a in command]
    elif command is None and commands:
        if len(commands) > 1:
            raise StepFailed('action "docker.run" supports only one command')
        argv = shlex.split(commands[0])
    elif command is None:
        argv = []  # the image's own command
    else:
        raise StepFailed("with.command must be a string or a list")
    pull = _get(cfg, "pull")
    pull = "missing" if pull is None else PULL.get(pull if isinstance(pull, bool) else str(pull).lower())
    if pull is None:
        raise StepFailed("with.pull must be always, never, missing, fallback, true or false")
    container = _get(cfg, "container") or {}
    host = _get(cfg, "host") or {}
    if not isinstance(container, Mapping) or not isinstance(host, Mapping):
        raise StepFailed("with.container and with.host are objects (Docker's container and host configuration)")
    # what dagd does not act on refuses the step: never a setting silently dropped
    for what, given, known in (
        ("with", cfg, USED),
        ("with.container", container, {"env", "user", "workingdir", "entrypoint"}),
        ("with.host", host, {"binds"}),
    ):
        extra = sorted(str(k) for k in given if str(k).replace("_", "").lower() not in known)
        if extra:
            raise StepFailed(f"{what}: {', '.join(extra)} is not supported by dagd yet")
    tool = cli()
    auto_remove = _get(cfg, "auto_remove")
    keep = auto_remove is False or str(auto_remove).lower() == "false"
    run = [tool, "run", "--name", name, "-i", f"--pull={'never' if pull == 'fallback' else pull}"]
    # each attempt (retry, repeat) runs under the same name: gone at its end, or replaced (podman)
    run += ["--replace"] if keep and os.path.basename(tool) == "podman" else [] if keep else ["--rm"]
    for item in _strings(_get(container, "env"), "container.env"):
        if not re.match(r"[A-Za-z_][A-Za-z0-9_]*=", item):
            raise StepFailed(f"with.container.env entries are NAME=value, got {item!r}")
        run += ["--env", item]
    user = _get(container, "user")
    if user:
        run += ["--user", str(user)]
    workdir = _get(cfg, "working_dir") or _get(container, "working_dir")
    if workdir:
        run += ["--workdir", str(workdir)]
    entrypoint = _get(container, "entrypoint")
    if entrypoint:
        parts = _strings(entrypoint, "container.entrypoint") if not isinstance(entrypoint, str) else [entrypoint]
        run += ["--entrypoint", parts[0]]
        argv = parts[1:] + argv
    for volume in _strings(_get(cfg, "volumes"), "volumes") + _strings(_get(host, "binds"), "host.binds"):
        source, sep, rest = volume.partition(":")
        if not sep or not source or not rest:
            raise StepFailed(f"a volume is host_path:container_path[:ro|rw], got {volume!r}")
        if source.startswith("."):  # relative to the step's working directory, as in Dagu
            source = os.path.normpath(os.path.join(cwd, source))
        run += ["--volume", f"{source}:{rest}"]
    platform = _get(cfg, "platform")
    if platform:
        run += ["--platform", str(platform)]
    return Plan(tool, name, [*run, image, *argv], keep, image if pull == "fallback" else None)


async def pull_if_possible(p: Plan) -> None:
    """`pull: fallback`: a pull is tried; when it fails the local image is used."""
    if p.pull_first:
        with trio.move_on_after(300):
            await trio.run_process([p.cli, "pull", p.pull_first], check=False, capture_stdout=True, capture_stderr=True)


async def finish(p: Plan) -> None:
    """The container's processes end with the step (a stop, a timeout, a killed CLI), and the
    container goes unless it is kept."""
    if p.running:
        return
    with trio.move_on_after(60):
        if p.keep:
            await trio.run_process(
                [p.cli, "kill", p.name], check=False, capture_stdout=True, capture_stderr=True
            )  # a stopped step's container does not go on; its files stay
        else:
            now = ["--time", "0"] if os.path.basename(p.cli) == "podman" else []  # (docker rm -f kills at once)
            await trio.run_process(
                [p.cli, "rm", "--force", *now, p.name], check=False, capture_stdout=True, capture_stderr=True
            )


def _exec_plan(cfg: Mapping[str, Any], commands: tuple[str, ...], running: str) -> Plan:
    """`container_name`: the command exec'd in a running container dagd did not start (it stays;
    a stop ends the exec client — what it started in there is that container's)."""
    extra = sorted(str(k) for k in cfg if str(k).replace("_", "").lower() not in {"containername", "command", "exec"})
    if extra:
        raise StepFailed(f"with: {', '.join(extra)} cannot apply to a running container (container_name)")
    command = _get(cfg, "command")
    if isinstance(command, (list, tuple)):
        argv = [str(a) for a in command]
    elif isinstance(command, str) or commands:
        text = command if isinstance(command, str) else commands[0]
        argv = shlex.split(text)
    else:
        raise StepFailed("a command is needed to exec in a running container")
    options = _get(cfg, "exec") or {}
    if not isinstance(options, Mapping):
        raise StepFailed("with.exec is an object (Docker's exec options: User, WorkingDir, Env)")
    tool = cli()
    run = [tool, "exec", "-i"]
    run += ["--user", str(_get(options, "user"))] if _get(options, "user") else []
    run += ["--workdir", str(_get(options, "working_dir"))] if _get(options, "working_dir") else []
    for item in _env_items(_get(options, "env"), "with.exec.env"):
        run += ["--env", item]
    return Plan(tool, running, [*run, running, *guarded(argv)], True, None, running=True, plain=[*run, running, *argv])


def guarded(argv: list[str]) -> list[str]:
    """A command exec'd into a container, under the watcher dagd's ssh steps use (sshstep.WRAPPER):
    the exec client's stdin is a pipe dagd holds open while the step runs, so when the client goes
    — a stop, a timeout, dagd killed — the command's session in the container gets SIGTERM, then
    SIGKILL (without it, what `exec` started would go on in the container). Needs /bin/sh there."""
    from dagd.engine.sshstep import WRAPPER

    return ["/bin/sh", "-c", WRAPPER, "dagd-exec", shlex.join(argv)]


async def has_shell(p: Plan) -> bool:
    """Whether the running container the plan execs into has a /bin/sh (for the guard)."""
    done = await trio.run_process(
        [p.cli, "exec", p.name, "/bin/sh", "-c", ":"], check=False, capture_stdout=True, capture_stderr=True
    )
    return done.returncode == 0


def for_step(spec: Any, texts: list[str], cwd: str, name: str, env: Mapping[str, str]) -> Plan:
    """A step's own `container:` (Dagu: the step in a container of its own, or exec'd in a running
    one): its commands run by the container's shell, with what the DAG defines in their env."""
    s = shared(spec, cwd, "", default_name=name)
    flags, text = _env_flags(env), _shell_text(texts)
    if s.start is None:  # a running container
        argv = [*s.exec_prefix[:-1], *flags, s.name]
        return Plan(s.cli, s.name, [*argv, *guarded([*s.shell, text])], True, None, running=True)
    if "--entrypoint" not in s.start:
        raise StepFailed("a step's own container runs the step's commands: its startup can only be keepalive")
    run = [a for a in s.start if a != "--detach"]
    at = run.index("--entrypoint")
    run = [*run[:at], "-i", *([] if s.keep else ["--rm"]), *flags, run[at + 2], *s.shell, text]
    return Plan(s.cli, s.name, run, s.keep, None)


def container_name(run_id: str, step: str, attempt: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", step)[:60]
    return f"dagd-{run_id}-{slug}-{attempt}"


# ---- a DAG-level `container:`: one container for the whole run, every shell step exec'd in it ----

SHARED_USED = {"image", "name", "pullpolicy", "env", "volumes", "user", "workingdir", "platform", "keepcontainer"}
SHARED_USED |= {"shell", "exec", "startup", "ports", "network", "command", "waitfor", "logpattern"}
SHARED_USED |= {"restartpolicy", "healthcheck"}
HEALTH_KEYS = {"test", "interval", "timeout", "startperiod", "retries"}


@dataclass(frozen=True)
class Shared:
    cli: str
    name: str
    start: list[str] | None  # `podman run -d …` for a new container; None: exec into a running one
    exec_prefix: list[str]  # `podman exec -i [--user] [--workdir] NAME`
    shell: list[str]
    keep: bool
    wait_for: str = "running"  # or "healthy": its healthcheck passes before any step runs
    log_pattern: str | None = None  # a regexp its logs must show before any step runs


def _env_items(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (Mapping, list, tuple)):
        raise StepFailed(f"{what} must be a list or a mapping")
    items: list[str] = []
    for entry in [value] if isinstance(value, Mapping) else list(value):
        if isinstance(entry, Mapping):
            items += [f"{k}={v}" for k, v in entry.items()]
        else:
            items.append(str(entry))
    for item in items:
        if not re.match(r"[A-Za-z_][A-Za-z0-9_]*=", item):
            raise StepFailed(f"{what} entries are NAME=value, got {item!r}")
    return items


def _env_flags(env: Mapping[str, str]) -> list[str]:
    """`--env K=V` for what the DAG defines (params, env:, DAG_*): never the host's environment."""
    return [f for k, v in env.items() if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) for f in ("--env", f"{k}={v}")]


def _shell_text(texts: list[str]) -> str:
    """A step's commands for one `sh -c`: several stop at the first that fails."""
    return texts[0] if len(texts) == 1 else "set -e\n" + "\n".join(texts)


def shared(spec: Any, cwd: str, run_id: str, *, default_name: str | None = None) -> Shared:
    """The run's container from a DAG's `container:` (a running container's name, or an object)."""
    tool = cli()
    if isinstance(spec, str):
        spec = {"exec": spec}
    if not isinstance(spec, Mapping):
        raise StepFailed("container: is the name of a running container or an object with image or exec")
    extra = sorted(str(k) for k in spec if str(k).replace("_", "").lower() not in SHARED_USED)
    if extra:
        raise StepFailed(f"container: {', '.join(extra)} is not supported by dagd yet")
    startup = str(_get(spec, "startup") or "keepalive")
    if startup not in ("keepalive", "entrypoint", "command"):
        raise StepFailed(f"container.startup is keepalive, entrypoint or command, got {startup!r}")
    wait_for = str(_get(spec, "wait_for") or "running")
    if wait_for not in ("running", "healthy"):
        raise StepFailed(f"container.wait_for is running or healthy, got {wait_for!r}")
    pattern = _get(spec, "log_pattern")
    if pattern is not None:
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise StepFailed(f"container.log_pattern is not a regular expression: {exc}") from None
    shell = _get(spec, "shell") or ["sh", "-c"]
    shell = shlex.split(shell) if isinstance(shell, str) else [str(s) for s in shell]
    if shell[-1] != "-c":
        shell.append("-c")
    user, workdir = _get(spec, "user"), _get(spec, "working_dir")
    prefix = [tool, "exec", "-i"]
    prefix += ["--user", str(user)] if user else []
    prefix += ["--workdir", str(workdir)] if workdir else []
    running = _get(spec, "exec")
    if running:
        return Shared(tool, str(running), None, [*prefix, str(running)], shell, keep=True)
    image = _get(spec, "image")
    if not isinstance(image, str) or not image:
        raise StepFailed("container: needs image (or exec: the name of a running container)")
    name = str(_get(spec, "name") or default_name or f"dagd-{run_id}")
    pull = _get(spec, "pull_policy")
    pull = "missing" if pull is None else PULL.get(pull if isinstance(pull, bool) else str(pull).lower())
    if pull is None:
        raise StepFailed("container.pull_policy must be always, never, missing, fallback, true or false")
    pull = "missing" if pull == "fallback" else pull  # (a local image when the registry cannot be reached)
    start = [tool, "run", "--detach", "--name", name, f"--pull={pull}"]
    for item in _env_items(_get(spec, "env"), "container.env"):
        start += ["--env", item]
    for volume in _strings(_get(spec, "volumes"), "container.volumes"):
        source, sep, rest = volume.partition(":")
        if not sep or not source or not rest:
            raise StepFailed(f"a volume is host_path:container_path[:ro|rw], got {volume!r}")
        if source.startswith("."):
            source = os.path.normpath(os.path.join(cwd, source))
        start += ["--volume", f"{source}:{rest}"]
    start += ["--user", str(user)] if user else []
    start += ["--workdir", str(workdir)] if workdir else []
    platform = _get(spec, "platform")
    start += ["--platform", str(platform)] if platform else []
    network = _get(spec, "network")
    start += ["--network", str(network)] if network else []
    for port in _strings(_get(spec, "ports"), "container.ports"):
        start += ["--publish", port]
    restart = _get(spec, "restart_policy")
    if restart is not None:
        if str(restart) not in ("no", "always", "unless-stopped", "on-failure"):
            raise StepFailed(f"container.restart_policy is no, always, unless-stopped or on-failure, got {restart!r}")
        start += ["--restart", str(restart)]
    start += _health_flags(_get(spec, "healthcheck"))
    if wait_for == "healthy" and not any(f.startswith("--health-cmd") for f in start):
        raise StepFailed("container.wait_for: healthy needs a healthcheck (container.healthcheck.test)")
    if startup == "keepalive":  # the container idles until the run ends; its steps are exec'd into it
        start += ["--entrypoint", "sleep", image, "2147483647"]
    elif startup == "entrypoint":  # the image's own ENTRYPOINT and CMD
        start.append(image)
    else:
        command = _strings(_get(spec, "command"), "container.command")
        if not command:
            raise StepFailed("container.startup: command needs container.command (a non-empty list)")
        start += [image, *command]
    keep = _get(spec, "keep_container") is True
    return Shared(tool, name, start, [*prefix, name], shell, keep, wait_for, None if pattern is None else str(pattern))


def _health_flags(health: Any) -> list[str]:
    """Docker's healthcheck object as CLI flags: test (CMD …, CMD-SHELL …, NONE), interval,
    timeout, start_period, retries."""
    if health is None:
        return []
    if not isinstance(health, Mapping):
        raise StepFailed("container.healthcheck is a mapping: test, interval, timeout, start_period, retries")
    extra = sorted(str(k) for k in health if str(k).replace("_", "").lower() not in HEALTH_KEYS)
    if extra:
        raise StepFailed(f"container.healthcheck does not take {', '.join(extra)}")
    test = _strings(health.get("test"), "container.healthcheck.test")
    if not test or test[0] not in ("CMD", "CMD-SHELL", "NONE"):
        raise StepFailed("container.healthcheck.test starts with CMD, CMD-SHELL or NONE")
    if test[0] == "NONE":
        return ["--no-healthcheck"]
    flags = ["--health-cmd", " ".join(test[1:]) if test[0] == "CMD-SHELL" else json.dumps(test[1:])]
    for key, flag in (("interval", "interval"), ("timeout", "timeout"), ("start_period", "start-period")):
        value = _get(health, key)
        if value is not None:
            flags += [f"--health-{flag}", str(value)]
    if health.get("retries") is not None:
        flags += ["--health-retries", str(int(health["retries"]))]
    return flags


async def start_shared(s: Shared) -> None:
    """Create the run's container (or check the running one is there); StepFailed saying why not."""
    argv = s.start or [s.cli, "container", "inspect", "--format", "{{.State.Running}}", s.name]
    with trio.move_on_after(300) as late:
        done = await trio.run_process(argv, check=False, capture_stdout=True, capture_stderr=True)
    if late.cancelled_caught:
        raise StepFailed(f"the run's container {s.name} did not start within 300 s")
    if done.returncode != 0 or (s.start is None and done.stdout.strip() != b"true"):
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["not running"]
        raise StepFailed(f"the run's container {s.name} cannot be used: {why[0]}")
    if s.wait_for == "healthy" or s.log_pattern is not None:
        with trio.move_on_after(300) as late:
            await _ready(s)
        if late.cancelled_caught:
            wanted = "healthy" if s.wait_for == "healthy" else f"to log {s.log_pattern!r}"
            raise StepFailed(f"the run's container {s.name} did not become {wanted} within 300 s")


async def _ready(s: Shared) -> None:
    """Wait until the container is healthy and/or its logs match log_pattern. podman runs
    healthchecks from systemd timers, which a host without systemd lacks: dagd runs them itself
    (`podman healthcheck run`); docker's daemon runs its own and dagd reads their verdict."""
    podman = os.path.basename(s.cli) == "podman"
    pattern = re.compile(s.log_pattern) if s.log_pattern is not None else None
    while True:
        state = await trio.run_process(
            [s.cli, "container", "inspect", "--format", "{{.State.Running}}", s.name],
            check=False,
            capture_stdout=True,
            capture_stderr=True,
        )
        if state.stdout.strip() != b"true":
            raise StepFailed(f"the run's container {s.name} stopped before it was ready")
        healthy = True
        if s.wait_for == "healthy":
            if podman:
                probe = await trio.run_process(
                    [s.cli, "healthcheck", "run", s.name], check=False, capture_stdout=True, capture_stderr=True
                )
                healthy = probe.returncode == 0
            else:
                probe = await trio.run_process(
                    [s.cli, "container", "inspect", "--format", "{{.State.Health.Status}}", s.name],
                    check=False,
                    capture_stdout=True,
                    capture_stderr=True,
                )
                healthy = probe.stdout.strip() == b"healthy"
        logged = True
        if pattern is not None:
            logs = await trio.run_process(
                [s.cli, "logs", s.name], check=False, capture_stdout=True, capture_stderr=True
            )
            text = (logs.stdout + logs.stderr).decode(errors="replace")
            logged = any(pattern.search(line) for line in text.splitlines())
        if healthy and logged:
            return
        await trio.sleep(0.5)


async def end_shared(s: Shared) -> None:
    """The run's container goes with the run (and every process in it), unless keep_container."""
    if s.keep:
        return
    with trio.move_on_after(60):
        now = ["--time", "0"] if os.path.basename(s.cli) == "podman" else []
        await trio.run_process(
            [s.cli, "rm", "--force", *now, s.name], check=False, capture_stdout=True, capture_stderr=True
        )


def exec_argv(s: Shared, texts: list[str], env: Mapping[str, str]) -> list[str]:
    """A shell step's commands, run by the container's shell, with what the DAG defines in its env
    (params, env:, DAG_* variables) — never the host's own environment."""
    flags, text = _env_flags(env), _shell_text(texts)
    return [*s.exec_prefix[:-1], *flags, s.exec_prefix[-1], *guarded([*s.shell, text])]
