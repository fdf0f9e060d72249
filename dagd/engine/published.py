"""Structured step results: object-form `output:`, `stdout.outputs`, and stdout/stderr artifacts."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

import yaml

from dagd.engine.resolve import Scope, json_path, resolve, resolve_data
from dagd.engine.step import StepFailed, StepResult
from dagd.spec.fields import thaw


def _read(path: str, limit: int) -> str:
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise StepFailed(f"output source {path} exceeds max_output_size ({limit} bytes)")
    return data.decode("utf-8", errors="replace")


def _entry(entry: Any, scope: Scope, r: StepResult, cwd: str, limit: int, default_from: str | None) -> Any:
    if isinstance(entry, Mapping) and ("value" in entry or "from" in entry or "decode" in entry or "select" in entry):
        if "value" in entry:
            return resolve_data(thaw(entry["value"]), scope)
        source = str(entry.get("from", default_from or "stdout"))
        if source == "stdout":
            text = _read(r.stdout_path, limit)
        elif source == "stderr":
            text = _read(r.stderr_path, limit)
        elif source == "file":
            path = resolve(str(entry.get("path", "")), scope)
            text = _read(path if os.path.isabs(path) else os.path.join(cwd, path), limit)
        else:
            raise StepFailed(f"output from must be stdout, stderr or file, got {source!r}")
        decode = str(entry.get("decode", "text"))
        if decode == "text":
            value: Any = text.strip()
        elif decode == "json":
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise StepFailed(f"output is not valid JSON: {exc}") from None
        elif decode == "yaml":
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise StepFailed(f"output is not valid YAML: {exc}") from None
        else:
            raise StepFailed(f"output decode must be text, json or yaml, got {decode!r}")
        if "select" in entry:
            selected = json_path(json.dumps(value), str(entry["select"]))
            if selected is None:
                raise StepFailed(f"output select {entry['select']!r} matched nothing")
            try:
                value = json.loads(selected)
            except ValueError:
                value = selected
        return value
    return resolve_data(thaw(entry), scope)


def object_output(fields: Mapping[str, Any], scope: Scope, r: StepResult, cwd: str, limit: int) -> str:
    """Object-form `output:` as the JSON text `${id.output.key}` reads."""
    return json.dumps({k: _entry(v, scope, r, cwd, limit, "stdout") for k, v in fields.items()})


def stdout_outputs(spec: Mapping[str, Any], scope: Scope, r: StepResult, cwd: str, limit: int) -> dict[str, str]:
    """`stdout: {outputs: {fields: …}}`, published as `${id.outputs.name}`."""
    fields = (spec.get("outputs") or {}).get("fields") or {}
    out: dict[str, str] = {}
    for name, entry in fields.items():
        value = _entry(entry, scope, r, cwd, limit, "stdout")
        out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def copy_artifact(spec: Mapping[str, Any], source: str, artifacts_dir: str | None, scope: Scope) -> None:
    rel = spec.get("artifact")
    if not rel:
        return
    if artifacts_dir is None:
        raise StepFailed("stdout/stderr artifact needs artifacts enabled (artifacts: {dir: …})")
    path = os.path.normpath(os.path.join(artifacts_dir, resolve(str(rel), scope)))
    if os.path.commonpath([path, os.path.normpath(artifacts_dir)]) != os.path.normpath(artifacts_dir):
        raise StepFailed(f"artifact path {rel!r} leaves the artifacts directory")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(source, path)
