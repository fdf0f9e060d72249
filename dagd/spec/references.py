"""Value references that cannot be resolved when a file is validated, reported as notices.

Dagu never fails a run over a missing `${…}`: the text is left unchanged. `dagctl validate`
reports two kinds of such references:
- defects (always shown): a `${steps.<id>.outputs.<name>}` that can never resolve where it
  stands, and an unknown `${context.*}` field;
- runtime-only references (shown with --show-unresolved): values that exist only once a run
  starts — env from the process or dotenv, params without defaults, run context, step outputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dagd.graph import ancestors
from dagd.spec.errors import Diagnostic, Severity
from dagd.spec.model import Dag, Step

_ID = r"[A-Za-z][A-Za-z0-9_]*"
_STEPS = re.compile(r"(\\*)\$\{steps\.(" + _ID + r")\.outputs\.(" + _ID + r")\}")
_CONSTS = re.compile(r"(\\*)\$\{consts\.(" + _ID + r")\}")
_PARAMS = re.compile(r"(\\*)\$\{params(?:\.(" + _ID + r"))?\}")
_ENV_NS = re.compile(r"(\\*)\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
_CONTEXT = re.compile(r"(\\*)\$\{context\.([A-Za-z0-9_.]+)\}")
_BARE = re.compile(r"(\\*)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")

CONTEXT_STATIC = frozenset({"dag.name", "step.id", "step.name"})
CONTEXT_RUNTIME = frozenset(
    [
        "run.id",
        "run.status",
        "run.scheduled_at",
        "run.root_name",
        "run.root_id",
        "attempt.id",
        "attempt.started_at",
        "trigger.type",
        "trigger.actor",
        "paths.log_file",
        "paths.work_dir",
        "paths.artifacts_dir",
        "paths.step_stdout_file",
        "paths.step_stderr_file",
        "paths.step_output_file",
        "profile.name",
        "profile.resolved_at",
        "pushback.iteration",
        "pushback.previous_stdout_file",
    ]
)


@dataclass(frozen=True)
class Field:
    path: str
    text: str
    line: int
    shell_owned: bool = False  # `run`: $NAME belongs to the shell, only ${env.X} is Dagu's
    step: Step | None = None
    step_scope: bool = False  # may use ${steps.…}


def _live(m: re.Match[str]) -> bool:
    return len(m.group(1)) % 2 == 0  # an odd number of backslashes escapes the $


def _texts(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _texts(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _texts(v, f"{path}[{i}]")


class _Checker:
    def __init__(self, dag: Dag, file: str) -> None:
        self.dag = dag
        self.file = file
        self.out: list[Diagnostic] = []
        self.params = {p.name: p.default for p in dag.params if p.name}
        self.deps = {s.name: list(s.depends) for s in dag.steps}
        self.by_id = {s.id: s for s in dag.steps if s.id}

    def note(self, f: Field, ref: str, reason: str, *, defect: bool) -> None:
        sev = Severity.WARNING if defect else Severity.NOTICE
        msg = f"{ref} was left unchanged (reason={reason})"
        self.out.append(Diagnostic(self.file, f.line, 0, f.path, msg, sev))

    def check(self, f: Field, env: Mapping[str, str | None], consts: Mapping[str, str]) -> bool:
        """Report what in `f` stays unresolved; True when everything resolved statically."""
        ok = True
        for m in _STEPS.finditer(f.text):
            if _live(m):
                ok = False
                self._step_ref(f, m.group(0).lstrip("\\"), m.group(2), m.group(3))
        for m in _CONSTS.finditer(f.text):
            if _live(m) and m.group(2) not in consts:
                ok = False
                self.note(
                    f,
                    m.group(0).lstrip("\\"),
                    "unknown_const" if not f.path.startswith("consts") else "const_not_yet_defined",
                    defect=False,
                )
        for m in _PARAMS.finditer(f.text):
            if not _live(m):
                continue
            name = m.group(2)
            if name is None or f.path.startswith("consts") or self.params.get(name) is None:
                ok = False
                reason = "params_unavailable" if name is None or name in self.params else "undeclared_param"
                self.note(f, m.group(0).lstrip("\\"), reason, defect=False)
        for m in _CONTEXT.finditer(f.text):
            if not _live(m):
                continue
            field = m.group(2)
            ref = m.group(0).lstrip("\\")
            if field in CONTEXT_RUNTIME:
                ok = False
                self.note(f, ref, "namespace_unavailable", defect=False)
            elif field not in CONTEXT_STATIC:
                ok = False
                self.note(f, ref, "unknown_context_field", defect=True)
        names = [(m, m.group(2)) for m in _ENV_NS.finditer(f.text)]
        if not f.shell_owned:
            names += [(m, m.group(2) or m.group(3)) for m in _BARE.finditer(f.text)]
        for m, name in names:
            if _live(m) and env.get(name) is None:
                ok = False
                self.note(f, m.group(0).lstrip("\\"), "runtime_env", defect=False)
        return ok

    def _step_ref(self, f: Field, ref: str, sid: str, output: str) -> None:
        if not f.step_scope or f.step is None:
            self.note(f, ref, "namespace_unavailable", defect=True)
            return
        target = self.by_id.get(sid)
        if target is None:
            self.note(f, ref, "unknown_step_id", defect=True)
        elif target is f.step:
            self.note(f, ref, "self_reference", defect=True)
        elif target.name not in ancestors(self.deps, f.step.name):
            self.note(f, ref, "missing_dependency", defect=True)
        elif output not in {o.name for o in target.outputs}:
            self.note(f, ref, "unknown_output_name", defect=True)
        else:
            self.note(f, ref, "runtime_step_output", defect=False)


def _env_scope(
    ch: _Checker,
    entries: tuple[tuple[str, str], ...],
    base: dict[str, str | None],
    path: str,
    line: int,
    consts: Mapping[str, str],
) -> dict[str, str | None]:
    scope = dict(base)
    for i, (name, value) in enumerate(entries):
        resolved = ch.check(Field(f"{path}[{i}]", value, line), scope, consts)
        scope[name] = value if resolved else None
    return scope


def _step_fields(step: Step, prefix: str) -> Iterator[Field]:
    line = step.location.line
    for text in step.commands:
        yield Field(f"{prefix}.run", text, line, True, step, True)
    if step.script is not None:
        yield Field(f"{prefix}.run", step.script, line, True, step, True)
    for key, value in (("working_dir", step.working_dir), ("stdout", step.stdout), ("stderr", step.stderr)):
        if value:
            yield Field(f"{prefix}.{key}", value, line, False, step, True)
    for i, p in enumerate(step.preconditions):
        if p.condition:
            yield Field(f"{prefix}.preconditions[{i}].condition", p.condition, line, False, step, True)
    for path, text in _texts(dict(step.config), f"{prefix}.with"):
        yield Field(path, text, line, False, step, True)
    for path, text in _texts(dict(step.output_fields), f"{prefix}.output"):
        yield Field(path, text, line, False, step, True)
    if step.sub_dag is not None:
        for path, text in _texts(step.sub_dag.params, f"{prefix}.params"):
            yield Field(path, text, line, False, step, True)


def unresolved(dag: Dag) -> list[Diagnostic]:
    """Every reference of the DAG (and its local DAGs) left unresolved at validate time."""
    out = _unresolved_one(dag)
    for local in dag.local_dags.values():
        out.extend(_unresolved_one(local))
    return out


def _unresolved_one(dag: Dag) -> list[Diagnostic]:
    ch = _Checker(dag, dag.file)
    consts: dict[str, str] = {}
    for name, value in dag.consts:
        if ch.check(Field(f"consts.{name}", value, 0), {}, consts):
            consts[name] = value
    base: dict[str, str | None] = {n: d for n, d in ch.params.items()}
    root_env = _env_scope(ch, dag.env, base, "env", 0, consts)
    container = dag.extra.get("container")
    if isinstance(container, Mapping) and container.get("env"):
        raw = container["env"]
        pairs = (
            list(raw.items())
            if isinstance(raw, Mapping)
            else [tuple(str(e).partition("=")[::2]) for e in raw if isinstance(e, str)]
        )
        _env_scope(ch, tuple((str(k), str(v)) for k, v in pairs), root_env, "container.env", 0, consts)
    for i, p in enumerate(dag.preconditions):
        if p.condition:
            ch.check(Field(f"preconditions[{i}].condition", p.condition, p.location.line), root_env, consts)
    for step in dag.steps:
        scope = _env_scope(ch, step.env, root_env, f"{step.path}.env", step.location.line, consts)
        for f in _step_fields(step, step.path):
            ch.check(f, scope, consts)
    for event, handler in dag.handlers.items():
        scope = _env_scope(ch, handler.env, root_env, f"handler_on.{event}.env", handler.location.line, consts)
        for f in _step_fields(handler, f"handler_on.{event}"):
            ch.check(Field(f.path, f.text, f.line, f.shell_owned, None, False), scope, consts)
    return ch.out
