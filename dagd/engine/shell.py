"""How a step's text becomes argv: shells, -e, -c, scripts and shebangs (Dagu's rules).

Pure functions; the only file written is a script body, by `script_file`.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

UNIX_SHELLS = frozenset({"sh", "bash", "zsh", "ksh", "ash", "dash", "mksh"})


class CommandError(Exception):
    """The step cannot be started as written; the message says why."""


@dataclass(frozen=True)
class ShellChoice:
    argv: tuple[str, ...]  # the shell and its own arguments
    explicit_step_shell: bool  # a step-level shell turns off the automatic -e and shebangs


def choose_shell(step_shell: tuple[str, ...], dag_shell: tuple[str, ...], env_default: str | None) -> ShellChoice:
    if step_shell:
        return ShellChoice(step_shell, True)
    if dag_shell:
        return ShellChoice(dag_shell, False)
    if env_default:
        return ShellChoice(tuple(shlex.split(env_default)), False)
    login = os.environ.get("SHELL")
    return ShellChoice((login,) if login else ("sh",), False)


def _is_unix(shell: str) -> bool:
    return os.path.basename(shell) in UNIX_SHELLS


def _check_args(args: tuple[str, ...]) -> None:
    for a in args:
        if a.startswith("-") and not a.startswith("--") and "c" in a[1:] and a != "-c":
            raise CommandError(
                f"invalid shell argument {a}: combined flags with c (like -lc or {a}) cannot carry a command; pass -c on its own"
            )


def command_argv(shell: ShellChoice, command: str, *, errexit: bool) -> list[str]:
    """argv running one command string through the shell (`sh -e -c CMD`)."""
    prog, *args = shell.argv
    args_t = tuple(a for a in args if a != "-c")
    if _is_unix(prog):
        _check_args(args_t)
        flags = list(args_t)
        if errexit and not shell.explicit_step_shell and "-e" not in flags:
            flags.append("-e")
        return [prog, *flags, "-c", command]
    base = os.path.basename(prog).lower()
    if base in ("pwsh", "powershell", "pwsh.exe", "powershell.exe"):
        return [prog, *args_t, "-NoProfile", "-NonInteractive", "-Command", command]
    if base in ("cmd", "cmd.exe"):
        return [prog, *args_t, "/c", command]
    return [prog, *args_t, "-c", command]


def script_argv(shell: ShellChoice, path: str, body: str, *, errexit: bool, classic: bool = False) -> list[str]:
    """argv running a script file: its own shebang wins unless a step-level shell is set.

    A shell given with -c cannot read a file: Dagu 1.x then passed the script as the command
    (its own fixture `shell: bash -o pipefail -c`); Dagu 2 refuses, and so do current files."""
    first = body.split("\n", 1)[0]
    if first.startswith("#!") and not shell.explicit_step_shell:
        return [path]
    prog, *args = shell.argv
    if "-c" in args and classic:
        return command_argv(shell, body, errexit=errexit)
    if "-c" in args:
        raise CommandError(
            "script form cannot use -c: the script is passed to the shell as a file; drop -c from the shell arguments"
        )
    args_t = tuple(args)
    if _is_unix(prog):
        _check_args(args_t)
        flags = list(args_t)
        if errexit and not shell.explicit_step_shell and "-e" not in flags:
            flags.append("-e")
        return [prog, *flags, path]
    return [prog, *args_t, path]


def script_file(directory: str, name: str, body: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(body if body.endswith("\n") else body + "\n")
    os.chmod(path, 0o700)
    return path
