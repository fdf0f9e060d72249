"""A real Dagu 1.x as a differential oracle: the binary published on the npm registry as
@dagu-org/dagu-linux-x64 (GPL-3.0: run here, never shipped or committed), cached outside the
checkout; and one DAG file run by it and by `dagctl run`, each outcome read back the same way."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DAGU_VERSION = "1.30.2"
DAGU_CACHE = Path(os.environ.get("DAGD_DAGU_CACHE", "/var/cache/dagd-bench"))


def dagu_binary() -> Path:
    """Dagu as published on the npm registry (npm checks the tarball's integrity), cached."""
    binary = DAGU_CACHE / DAGU_VERSION / "package" / "bin" / "dagu"
    if not binary.exists():
        folder = binary.parents[2]
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "pack", f"@dagu-org/dagu-linux-x64@{DAGU_VERSION}", "--silent"],
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["tar", "xzf", f"dagu-org-dagu-linux-x64-{DAGU_VERSION}.tgz"], cwd=folder, check=True)
    return binary


@dataclass
class Outcome:
    """What a run of one DAG file came to, in Dagu's status codes (dagd uses the same numbers)."""

    code: int | str  # the process's exit code, or "timeout"
    status: int | None = None  # the run's status code; None when it never started
    steps: dict[str, int] = field(default_factory=dict)  # main steps' status codes
    handlers: dict[str, int] = field(default_factory=dict)  # onExit, onSuccess, … that ran
    outputs: dict[str, str] = field(default_factory=dict)  # step → its `output:` value
    depends: dict[str, list[str]] = field(default_factory=dict)  # step → what it waited for
    detail: str = ""  # stderr's tail, for the failure message

    def comparable(self) -> dict[str, Any]:
        return {
            "exit code": self.code,
            "run status": self.status,
            "step statuses": self.steps,
            "handlers": self.handlers,
            "outputs": self.outputs,
            "depends": self.depends,
        }


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str] | None:
    """The process in its own session; on timeout its whole group is killed (a step may linger)."""
    with subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            return None
        # Dagu's agent may still be writing the run's last status record after its parent exits:
        # the rest of the group gets a few seconds to end by itself, then what a step left goes
        deadline = time.monotonic() + 10
        with contextlib.suppress(ProcessLookupError):
            while time.monotonic() < deadline:
                os.killpg(p.pid, 0)  # (ProcessLookupError: the group is gone)
                time.sleep(0.05)
            os.killpg(p.pid, signal.SIGKILL)
        return subprocess.CompletedProcess(argv, p.returncode, out, err)


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "NO_COLOR": "1", **extra}


def run_dagu(binary: Path, dag: Path, work: Path, timeout: float) -> Outcome:
    """`dagu start FILE` in its own DAGU_HOME; the outcome from the run's last status record."""
    work.mkdir(parents=True)
    shutil.copy(dag, work / "dag.yaml")
    p = _run([str(binary), "start", "dag.yaml"], work, _env(work, DAGU_HOME=str(work / ".dagu")), timeout)
    if p is None:
        return Outcome("timeout")
    out = Outcome(p.returncode, detail=p.stderr[-400:])
    records = sorted((work / ".dagu" / "data").glob("dag-runs/*/dag-runs/*/*/*/*/attempt_*/status.jsonl"))
    lines = records[-1].read_text().splitlines() if records else []
    if not lines:
        return out
    doc = json.loads(lines[-1])
    out.status = doc["status"]
    if out.status == 1 and p.returncode != 0:
        # Dagu 1.30 now and then leaves a run it failed recorded as running (stuck-running runs
        # are its issues 1103 and 2298; CI saw it on call-sub.yaml): its exit code is the verdict
        out.status = 2
    for node in doc.get("nodes") or []:
        name = node["step"]["name"]
        out.steps[name] = node["status"]
        out.depends[name] = sorted(node["step"].get("depends") or [])
        wanted = node["step"].get("output")
        text = (node.get("outputVariables") or {}).get(wanted) if wanted else None
        if text is not None:
            out.outputs[name] = text.removeprefix(f"{wanted}=")
    for key in ("onInit", "onExit", "onSuccess", "onFailure", "onCancel", "onWait"):
        node = doc.get(key)
        if node and node.get("status"):
            out.handlers[key] = node["status"]
    return out


def run_dagd(dag: Path, work: Path, timeout: float, *, chain: str = "additive") -> Outcome:
    """`dagctl run FILE` (no daemon) with its own state; `dagctl dry` for what each step waits for."""
    work.mkdir(parents=True)
    shutil.copy(dag, work / "dag.yaml")
    env = _env(work, DAGD_STATE_DIR=str(work / ".dagd"))
    ctl = [sys.executable, "-m", "dagctl", "--classic-chain", chain]
    p = _run([*ctl, "run", "--json", "dag.yaml"], work, env, timeout)
    if p is None:
        return Outcome("timeout")
    out = Outcome(p.returncode, detail=p.stderr[-400:])
    if not p.stdout.strip():
        return out
    doc = json.loads(p.stdout)
    out.status = doc["status_code"]
    for s in doc["steps"]:
        (out.handlers if s["handler"] else out.steps)[s["step"]] = s["status_code"]
        if s["output_value"] is not None and not s["handler"]:
            out.outputs[s["step"]] = s["output_value"]
    dry = subprocess.run([*ctl, "dry", "--json", "dag.yaml"], cwd=work, env=env, capture_output=True, text=True)
    if dry.returncode == 0:
        for level in json.loads(dry.stdout)["levels"]:
            for step in level:
                out.depends[step["name"]] = sorted(step["depends"])
    _check_order(doc, out.depends)
    return out


def _check_order(doc: dict[str, Any], depends: dict[str, list[str]]) -> None:
    """dagd's own record: no step started before a step it waits for had finished."""
    ended = {s["step"]: s["finished_at"] for s in doc["steps"] if s["finished_at"] and not s["handler"]}
    for s in doc["steps"]:
        for d in depends.get(s["step"], []) if not s["handler"] and s["started_at"] else []:
            assert d not in ended or ended[d] <= s["started_at"], f"{s['step']} started before {d} ended"
