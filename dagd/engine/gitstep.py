"""`git.checkout`, `git.worktree.add`, `git.worktree.remove` (Dagu 1.x `type: git`, `command:
checkout`): this host's git, run by a small sh script as the step's process — its group, timeout,
stop and exit code are the step's.

checkout: `repository` (URL or local path), `ref` (branch, tag or commit; the remote's HEAD when
absent), `path` (relative to the step's working directory), `depth`, `force`; a new directory is
cloned, an existing checkout of any repository is fetched into and switched (local changes refuse
it unless `force`), a non-empty directory that is not a checkout is refused. Credentials: `token`
or `username` + `password` for HTTPS (handed to git by an askpass helper reading the step's
environment, never written to disk or put in a URL), `ssh_key_path` (+ `ssh_passphrase`) for ssh.
The step's stdout ends with one JSON line: the repository, path, ref and the commit checked out."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from dagd.engine.sshstep import ASKPASS as SSH_ASKPASS
from dagd.engine.sshstep import helper
from dagd.engine.step import StepFailed, reject_unknown
from dagd.spec.executors import GIT_KEYS

ACTIONS = frozenset({"git.checkout", "git.worktree.add", "git.worktree.remove"})

CHECKOUT = r"""set -eu
repo=$1 path=$2 ref=$3 depth=$4 force=$5
if [ -e "$path" ] && [ ! -e "$path/.git" ] && [ -n "$(ls -A "$path" 2>/dev/null)" ]; then
  echo "git.checkout: $path exists and is not a git checkout" >&2; exit 1
fi
mkdir -p "$path"
cd "$path"
[ -e .git ] || git init -q
if [ -z "$force" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  echo "git.checkout: $path has local changes (force: true discards them)" >&2; exit 1
fi
git remote remove origin 2>/dev/null || true
git remote add origin "$repo"
git fetch -q ${depth:+--depth="$depth"} origin "${ref:-HEAD}"
git -c advice.detachedHead=false checkout -q ${force:+--force} --detach FETCH_HEAD
commit=$(git rev-parse HEAD)
printf '{"operation":"checkout","repository":"%s","path":"%s","ref":"%s","commit":"%s"}\n' \
  "$(printf %s "$repo" | sed 's/["\\]/\\&/g')" "$(pwd | sed 's/["\\]/\\&/g')" \
  "$(printf %s "${ref:-HEAD}" | sed 's/["\\]/\\&/g')" "$commit"
"""

WORKTREE_ADD = r"""set -eu
branch=$1 path=$2 create=$3 base=$4
top=$(git rev-parse --show-toplevel)
cd "$top"
[ -n "$branch" ] || branch="dagd-$(date +%Y%m%d%H%M%S)-$$"
if git show-ref --verify --quiet "refs/heads/$branch"; then
  git worktree add -q "$path" "$branch"
elif [ -n "$create" ] || [ -z "$1" ]; then
  git worktree add -q -b "$branch" "$path" ${base:+"$base"}
else
  echo "git.worktree.add: branch $branch does not exist (create_branch: true creates it)" >&2; exit 1
fi
printf '{"operation":"worktree.add","branch":"%s","path":"%s"}\n' "$branch" "$(cd "$path" && pwd)"
"""

WORKTREE_REMOVE = r"""set -eu
branch=$1 path=$2 force=$3 delete=$4 force_delete=$5
top=$(git rev-parse --show-toplevel)
cd "$top"
if [ -z "$path" ]; then
  path=$(git worktree list --porcelain | awk -v b="refs/heads/$branch" '/^worktree /{w=substr($0,10)} $0=="branch "b{print w}')
  [ -n "$path" ] || { echo "git.worktree.remove: no worktree has branch $branch" >&2; exit 1; }
fi
git worktree remove ${force:+--force} "$path"
if [ -n "$delete" ] && [ -n "$force_delete" ]; then git branch -q -D "$branch"
elif [ -n "$delete" ]; then git branch -q -d "$branch"; fi
printf '{"operation":"worktree.remove","path":"%s"}\n' "$path"
"""

ASKPASS = """#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "$DAGD_GIT_USERNAME" ;;
  *) printf '%s\\n' "$DAGD_GIT_PASSWORD" ;;
esac
"""


def operation(action: str, commands: tuple[str, ...]) -> str:
    if action == "git.checkout" and len(commands) == 1:
        op = commands[0].strip().lower().replace(" ", ".")
        if f"git.{op}" in ACTIONS:
            return f"git.{op}"
    return action


def _flag(value: Any) -> str:
    return "1" if value is True or str(value).lower() in ("true", "yes", "1") else ""


def plan(action: str, config: Mapping[str, Any], cwd: str, helper_dir: str) -> tuple[list[str], dict[str, str]]:
    """(argv, environment additions) of the step's process."""
    git = shutil.which("git")
    if git is None:
        raise StepFailed(f"{action} needs git on this host (apt install git)")
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if action == "git.checkout":
        reject_unknown(action, config, GIT_KEYS[action])
        repo, path = config.get("repository"), config.get("path")
        if not repo or not path:
            raise StepFailed("git.checkout needs repository and path")
        if config.get("ssh_key_path") and (config.get("token") or config.get("password")):
            raise StepFailed("git.checkout: ssh_key_path cannot be combined with token or password")
        depth = config.get("depth") or 0
        if isinstance(depth, bool) or not str(depth).isdigit():
            raise StepFailed(f"git.checkout: depth is a number (0: the whole history), got {depth!r}")
        if config.get("token") or config.get("password"):
            env |= {
                "GIT_ASKPASS": helper(helper_dir, "dagd-git-askpass", ASKPASS),
                "DAGD_GIT_PASSWORD": str(config.get("token") or config["password"]),
            }
            env["DAGD_GIT_USERNAME"] = str(config.get("username") or ("x-access-token" if config.get("token") else ""))
        if config.get("ssh_key_path"):
            key = os.path.expanduser(str(config["ssh_key_path"]))
            env["GIT_SSH_COMMAND"] = f"ssh -i '{key}' -o IdentitiesOnly=yes"
            if config.get("ssh_passphrase"):
                env |= {
                    "SSH_ASKPASS": helper(helper_dir, "dagd-ssh-askpass", SSH_ASKPASS),
                    "SSH_ASKPASS_REQUIRE": "force",
                }
                env["DAGD_SSH_PASSWORD"] = str(config["ssh_passphrase"])
        argv = [str(repo), str(path), str(config.get("ref") or ""), str(depth or ""), _flag(config.get("force"))]
        return ["/bin/sh", "-c", CHECKOUT, "git.checkout", *argv], env
    if action == "git.worktree.add":
        reject_unknown(action, config, GIT_KEYS[action])
        if not config.get("path"):
            raise StepFailed("git.worktree.add needs path")
        if config.get("base") and config.get("branch") and not config.get("create_branch"):
            raise StepFailed("git.worktree.add: base needs create_branch: true")
        argv = [str(config.get("branch") or ""), str(config["path"]), _flag(config.get("create_branch"))]
        return ["/bin/sh", "-c", WORKTREE_ADD, action, *argv, str(config.get("base") or "")], env
    reject_unknown(action, config, GIT_KEYS[action])
    if not config.get("branch") and not config.get("path"):
        raise StepFailed("git.worktree.remove needs branch or path")
    if config.get("delete_branch") and not config.get("branch"):
        raise StepFailed("git.worktree.remove: delete_branch needs branch")
    argv = [str(config.get("branch") or ""), str(config.get("path") or ""), _flag(config.get("force"))]
    argv += [_flag(config.get("delete_branch")), _flag(config.get("force_delete_branch"))]
    return ["/bin/sh", "-c", WORKTREE_REMOVE, action, *argv], env
