"""What a run resolves before and around its steps: params, consts, env, secrets, scopes.

A step starts the moment its dependencies are done (not level by level), bounded by
max_active_steps; every state change goes to `emit` (the store commits it before anything
else hears of it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import json
import logging
import os
import shutil
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from dagd import faults, names, shim
from dagd.cgroups import RunGroup
from dagd.engine import step as stepmod
from dagd.engine.events import Event
from dagd.engine.props import StepProps
from dagd.engine.resolve import Scope, resolve
from dagd.engine.shell import choose_shell
from dagd.engine.status import RunStatus, StepStatus
from dagd.expand import resolve_params
from dagd.masking import mask_text, mask_value, masked_slice
from dagd.spec.keys import REFUSED_STEP
from dagd.spec.model import Dag, Dialect, Secret, Step
from dagd.spec.params import split_param_string

log = logging.getLogger("dagd.run")
RUN_SPEC = "dag.yaml"  # in the run's log folder: the DAG file as the run read it

STRIPPED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


MASK_EXEMPT = {"run_id", "dag", "file", "step", "log_dir", "work_dir", "stdout_path", "stderr_path", "trigger"}


class RunSetupError(Exception):
    """The run could not start (bad params, failing eval): nothing was executed."""


@dataclass
class RunOptions:
    run_id: str
    state_dir: str
    params: list[str] = field(default_factory=list)
    trigger: str = "manual"
    schedule_time: str | None = None
    default_shell: str | None = None
    parent_run: str | None = None
    param_string: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # trigger context: a webhook's WEBHOOK_PAYLOAD, …
    shared_store: str | None = None  # the daemon's PostgreSQL store: state.* values live there (every node)
    keep: bool = False  # runs outlive dagd (on_restart: reattach): steps wrapped, attempts recorded
    resumed_at: float | None = None  # re-attached after a restart: when the run started
    cgroup: str | None = None  # re-attached: the run's cgroup as recorded


class RunEnvironment:
    """The state of one run and everything its strings may refer to; `Run` executes it."""

    def __init__(
        self,
        dag: Dag,
        opts: RunOptions,
        emit: Callable[[Event], Awaitable[None]],
        *,
        local_dags: Mapping[str, Dag] | None = None,
        variables: Mapping[str, str] | None = None,
        resume: Mapping[str, stepmod.StepResult] | None = None,
        inflight: Mapping[str, stepmod.StepResult] | None = None,
        handlers_done: Collection[str] = (),
    ) -> None:
        self.dag = dag
        self.local_dags: dict[str, Dag] = {**(local_dags or {}), **dag.local_dags}
        self.extra_variables = dict(variables or {})
        self.opts = opts
        self._emit_raw = emit
        self.results: dict[str, stepmod.StepResult] = {s.name: stepmod.StepResult() for s in dag.steps}
        # a retry keeps what already succeeded and runs the rest again
        self.resumed = {n for n in (resume or {}) if n in self.results}
        for name in self.resumed:
            self.results[name] = (resume or {})[name]
        # re-attached after a restart: steps (and handlers) that were running or waiting to retry;
        # each is adopted where it is, or recorded lost (dagd.engine.reattach)
        handler_names = {h.name for h in dag.handlers.values()}
        self.inflight = {n for n in (inflight or {}) if n in self.results or n in handler_names}
        for name in self.inflight & set(self.results):
            self.results[name] = (inflight or {})[name]
        self.inflight_results = {n: r for n, r in (inflight or {}).items() if n in handler_names}
        self.handlers_done = set(handlers_done)
        self.by_name = {s.name: s for s in dag.steps}
        self._ancestors: dict[str, list[str]] = {}
        self._ancestor_cache: dict[str, tuple[dict[str, Mapping[str, str]], dict[str, str]]] = {}
        self.step_props = StepProps(dag.steps, self.results)
        self.dependents: dict[str, list[str]] = {s.name: [] for s in dag.steps}
        for s in dag.steps:
            for d in s.depends:
                self.dependents[d].append(s.name)
        self.log_dir = os.path.join(opts.state_dir, "logs", dag.name, opts.run_id)
        self.work_dir = os.path.join(opts.state_dir, "work", dag.name, opts.run_id)
        self.cancelled = False
        self.prepared = False
        self.cgroup: RunGroup | None = None  # set when the run starts (dagd.cgroups)
        self.secret_values: list[str] = []
        self.step_dagu_env: dict[str, dict[str, str]] = {}
        self.error: str | None = None
        self.status = RunStatus.NOT_STARTED

    # ---- scopes ------------------------------------------------------------------------

    def _prepare(self) -> None:
        dag = self.dag
        for s in (*dag.steps, *dag.handlers.values()):
            for key, why in REFUSED_STEP.items():
                if key in s.extra:
                    raise RunSetupError(
                        f"step {s.name}: `{key}:` {why}; refusing to run it without that"
                        f" (remove `{key}:` from {os.path.basename(dag.file)} to run it on this host)"
                    )
        named, positional = resolve_params(dag, self.opts.params, self.opts.param_string)
        self.consts: dict[str, str] = {}
        for k, v in dag.consts:
            self.consts[k] = resolve(v, Scope(consts=self.consts))
        self.named = named
        self.positional = positional
        env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
        try:  # `dagu start child` in a step starts dagd's child, linked to this run (dagd/shim.py)
            env["PATH"] = shim.directory(self.opts.state_dir) + os.pathsep + env.get("PATH", os.defpath)
        except OSError as exc:
            log.warning("run %s of %s: no `dagu` command for its steps: %s", self.opts.run_id, dag.name, exc)
        wd = dag.working_dir
        if wd:  # value-resolved: params, consts, env; ~ expanded; relative to the DAG file
            wd = os.path.expanduser(
                resolve(wd, Scope(env=env, params=named, consts=self.consts, positional=positional))
            )
            wd = wd if os.path.isabs(wd) else os.path.join(os.path.dirname(os.path.abspath(dag.file)), wd)
        self.default_cwd = wd or (
            self.work_dir if dag.dialect is Dialect.CURRENT else os.path.dirname(os.path.abspath(dag.file))
        )
        if not names.RUN_ID.fullmatch(self.opts.run_id):  # it names folders: never a path
            raise RunSetupError(f"invalid run id {self.opts.run_id[:60]!r}")
        try:
            faults.hit("log_folder", dag.name)
            os.makedirs(self.log_dir, exist_ok=True)
        except OSError as exc:
            raise RunSetupError(f"cannot make the log folder {self.log_dir}: {exc.strerror or exc}") from None
        with contextlib.suppress(OSError):  # the spec this run used (the API's run spec); the file may change later
            shutil.copyfile(dag.file, os.path.join(self.log_dir, RUN_SPEC))
        try:
            faults.hit("work_folder", dag.name)
            os.makedirs(self.default_cwd, exist_ok=True)
            os.makedirs(self.work_dir, exist_ok=True)
        except OSError as exc:
            raise RunSetupError(
                f"cannot make the working directory {getattr(exc, 'filename', None) or self.default_cwd}: {exc.strerror or exc}"
            ) from None
        self.artifacts_dir: str | None = None
        art = dag.extra.get("artifacts")
        uses = any((s.action or "").startswith("artifact.") for s in (*dag.steps, *dag.handlers.values()))
        if uses and art is None:
            art = {}  # as Dagu: a DAG whose steps use artifact.* gets its artifacts folder
        if isinstance(art, Mapping) and art.get("enabled", True) is not False:
            base = str(art.get("dir") or os.path.join(self.opts.state_dir, "artifacts"))
            base = base if os.path.isabs(base) else os.path.join(self.default_cwd, base)
            when = (
                dt.datetime.fromtimestamp(self.opts.resumed_at, dt.UTC)
                if self.opts.resumed_at
                else dt.datetime.now(dt.UTC)
            )
            stamp = when.strftime("%Y%m%d_%H%M%S")  # re-attached: the folder the run began with
            self.artifacts_dir = os.path.join(base, dag.name, f"dag-run_{stamp}_{self.opts.run_id}")
            os.makedirs(self.artifacts_dir, exist_ok=True)
        shell = choose_shell((), dag.shell, self.opts.default_shell)
        self.params_json = json.dumps(named, separators=(",", ":")) if (named or dag.params) else None
        self.managed = {
            "DAG_NAME": dag.name,
            "DAG_RUN_ID": self.opts.run_id,
            "DAG_RUN_LOG_FILE": os.path.join(self.log_dir, "run.log"),
            "DAG_RUN_WORK_DIR": self.work_dir,
            # 1, then 2, 3 … each time the work runs again after its node was lost (on_restart:
            # requeue queues it as <id>_requeued): a step can tell a first run from a re-run
            "DAG_RUN_ATTEMPT": str(1 + self.opts.run_id.count("_requeued")),
        }
        if self.artifacts_dir:
            self.managed["DAG_RUN_ARTIFACTS_DIR"] = self.artifacts_dir
        if self.params_json is not None:
            self.managed["DAG_PARAMS_JSON"] = self.params_json
            self.managed["DAGU_PARAMS_JSON"] = self.params_json
        env.update(self.opts.env)
        env.update(named)
        env.update(self.managed)
        self.context = {
            "dag.name": dag.name,
            "run.id": self.opts.run_id,
            "trigger.type": self.opts.trigger,
            "paths.log_file": self.managed["DAG_RUN_LOG_FILE"],
            "paths.work_dir": self.work_dir,
        }
        if self.opts.schedule_time:
            self.context["run.scheduled_at"] = _utc(self.opts.schedule_time)
        self.context["attempt.id"] = uuid.uuid4().hex
        self.context["attempt.started_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        open(self.managed["DAG_RUN_LOG_FILE"], "a").close()
        self.root_env = env
        self.shell = shell

    def _overridden(self) -> set[str]:
        given = [*self.opts.params, *(t for t in [self.opts.param_string] if t)]
        return {k for text in given for k, _ in split_param_string(text) if k}

    async def _classic_param_defaults(self, overridden: set[str]) -> None:
        """Dagu 1.x ran backticks in a file's param defaults (`DAY=`date +%F``); one that fails
        fails the run, as Dagu's loader refused the file. Values a caller passes are taken as
        they are: running them would let anyone allowed to start a run execute commands."""
        if self.dag.dialect is not Dialect.CLASSIC:
            return
        index = 0
        for p in self.dag.params:
            if p.name is None:
                i, index = index, index + 1
                text = p.default or ""
                if i < len(self.positional) and self.positional[i] == text and "`" in text:
                    self.positional[i] = await self._param_default(f"${i + 1}", text)
            elif p.eval is None and p.default and "`" in p.default and p.name not in overridden:
                self.named[p.name] = self.root_env[p.name] = await self._param_default(p.name, p.default)

    async def _param_default(self, name: str, text: str) -> str:
        try:
            return await self._classic(text, self.root_env)
        except stepmod.StepFailed as exc:
            raise RunSetupError(f"params: {name}: {text}: {exc}") from None

    async def _eval_params(self) -> None:
        overridden = self._overridden()
        await self._classic_param_defaults(overridden)
        for p in self.dag.params:
            if not p.name or p.eval is None or p.name in overridden:
                continue
            scope = Scope(env=self.root_env, params=self.named, consts=self.consts, positional=self.positional)
            try:
                value = await stepmod.evaluate(resolve(p.eval, scope), self.shell, self.root_env, self.default_cwd)
            except stepmod.StepFailed as exc:
                if p.default is None:
                    raise RunSetupError(f"params: {p.name}: eval failed: {exc}") from None
                value = p.default
            self.named[p.name] = value
            self.root_env[p.name] = value
        self.params_json = json.dumps(self.named, separators=(",", ":")) if (self.named or self.dag.params) else None
        if self.params_json is not None:
            self.managed["DAG_PARAMS_JSON"] = self.managed["DAGU_PARAMS_JSON"] = self.params_json
        # root env, top to bottom; then dotenv; then the protected run variables again. The
        # `dagu_env` copy holds only what the DAG defines: action inputs never read the
        # inherited process environment.
        dagu_env = {**self.opts.env, **self.named, **self.managed}
        for k, v in self.dag.env:
            value = resolve(v, self._scope(self.root_env))
            try:
                value = await self._classic(value, self.root_env)
            except stepmod.StepFailed as exc:
                raise RunSetupError(f"env: {k}: {exc}") from None
            self.root_env[k] = dagu_env[k] = value
        for raw in self.dag.dotenv:
            path = resolve(raw, self._scope(self.root_env))
            full = path if os.path.isabs(path) else os.path.join(self.default_cwd, path)
            values = read_dotenv(full)
            self.root_env.update(values)
            dagu_env.update(values)
        for secret in self.dag.secrets:
            secret_value = self._secret(secret)
            if secret_value is not None:
                self.root_env[secret.name] = dagu_env[secret.name] = secret_value
                self.secret_values.append(secret_value)
        self.root_env.update(self.managed)
        dagu_env.update(self.managed)
        self.dagu_env = dagu_env
        scope = self._scope(self.root_env)
        self.dag_shell = tuple(resolve(a, scope) for a in self.dag.shell)
        if len(self.dag_shell) == 1 and " " in self.dag_shell[0]:
            self.dag_shell = tuple(self.dag_shell[0].split())
        self.shell = choose_shell((), self.dag_shell, self.opts.default_shell)

    def _secret(self, secret: Secret) -> str | None:
        return secret_value(self.dag, secret)

    def _scope(self, env: dict[str, str], step: Step | None = None) -> Scope:
        outputs: Mapping[str, Mapping[str, str]] = {}
        variables: dict[str, str] = dict(self.extra_variables)
        if step is not None:
            outputs, inherited = self._ancestor_data(step)
            variables.update(inherited)
        props = self.step_props  # looked up by id when a reference names it: O(1) per step
        context = dict(self.context)
        if step is not None:
            context["step.name"] = step.name
            if step.id:
                context["step.id"] = step.id
        return Scope(
            env=env,
            params=self.named,
            params_json=self.params_json,
            positional=self.positional,
            consts=self.consts,
            step_outputs=outputs,
            step_props=props,
            variables=variables,
            context=context,
        )

    def variables(self) -> dict[str, str]:
        """`output: VAR` values of every finished main step."""
        return {
            s.output: r.output_value
            for s in self.dag.steps
            if s.output and (r := self.results[s.name]).output_value is not None and r.status.done
        }

    def outputs(self) -> dict[str, str]:
        """What this run publishes to a caller: `output:` variables and declared outputs."""
        out: dict[str, str] = {}
        for s in self.dag.steps:
            r = self.results[s.name]
            if r.status in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED):
                if s.output and r.output_value is not None:
                    out[s.output] = r.output_value
                out.update(r.outputs)
        return out

    def final_scope(self) -> Scope:
        """A scope that sees every step's results (for foreach `collect`)."""
        scope = self._scope(self.dagu_env)
        return dataclasses.replace(scope, variables={**scope.variables, **self.outputs()})

    def _contribution(self, name: str) -> tuple[dict[str, Mapping[str, str]], dict[str, str]]:
        """What one finished step gives its descendants: its outputs by id, its `output:` variable."""
        s, r = self.by_name[name], self.results[name]
        outputs: dict[str, Mapping[str, str]] = {}
        variables: dict[str, str] = {}
        if s.id and r.status in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED):
            outputs[s.id] = r.outputs
        if s.output and r.output_value is not None:
            variables[s.output] = r.output_value
        return outputs, variables

    def _ancestor_data(self, step: Step) -> tuple[Mapping[str, Mapping[str, str]], Mapping[str, str]]:
        """The outputs and `output:` variables a ready step sees from its ancestors, applied in
        breadth-first order (a later visit wins). Its ancestors are all done, so this is computed
        once per step; a step with one parent extends that parent's (its order is the parent,
        then the parent's order), which keeps a long chain O(1) dict merges per step."""
        chain: list[Step] = []
        cur = step
        while cur.name not in self._ancestor_cache and len(cur.depends) == 1:
            chain.append(cur)
            cur = self.by_name[cur.depends[0]]
        if cur.name not in self._ancestor_cache:
            outputs: dict[str, Mapping[str, str]] = {}
            variables: dict[str, str] = {}
            for name in self._ancestors_in_order(cur):
                o, v = self._contribution(name)
                outputs.update(o)
                variables.update(v)
            self._ancestor_cache[cur.name] = (outputs, variables)
        for s in reversed(chain):
            parent = s.depends[0]
            outputs, variables = self._contribution(parent)
            above_out, above_vars = self._ancestor_cache[parent]
            outputs.update(above_out)
            variables.update(above_vars)
            self._ancestor_cache[s.name] = (outputs, variables)
        return self._ancestor_cache[step.name]

    def _ancestors_in_order(self, step: Step) -> list[str]:
        """Predecessors breadth-first along depends; a later visit wins when names collide.
        The graph does not change during a run: computed once per step."""
        cached = self._ancestors.get(step.name)
        if cached is not None:
            return cached
        seen: dict[str, None] = {}
        queue = deque(step.depends)
        while queue:
            n = queue.popleft()
            if n in seen:
                continue
            seen[n] = None
            queue.extend(self.by_name[n].depends)
        self._ancestors[step.name] = out = list(seen)
        return out  # callers apply them in this order: the later visit wins

    async def _classic(self, text: str, env: dict[str, str]) -> str:
        """Dagu 1.x ran backticks in env values, params and preconditions; classic files still do."""
        if self.dag.dialect is not Dialect.CLASSIC or "`" not in text:
            return text
        return await stepmod.evaluate(text, self.shell, env, self.default_cwd, self.cgroup)

    async def step_env(self, step: Step, handler: bool = False) -> tuple[dict[str, str], Scope, str]:
        env = dict(self.root_env)
        scope = self._scope(env, step if not handler else None)
        if handler and step.name != "onInit":  # handlers see the main steps' output variables
            scope.variables = {**scope.variables, **self.variables()}
        for name, value in scope.variables.items():
            env[name] = value
        cwd = self.default_cwd
        if step.working_dir:
            wd = resolve(step.working_dir, scope)
            wd = os.path.expanduser(wd)
            cwd = os.path.normpath(wd if os.path.isabs(wd) else os.path.join(self.default_cwd, wd))
        env["PWD"] = cwd
        env["DAG_RUN_STEP_NAME"] = step.name
        dagu_env = {**self.dagu_env, **scope.variables, "PWD": cwd, "DAG_RUN_STEP_NAME": step.name}
        for k, v in step.env:
            value = resolve(v, self._scope(env, step if not handler else None))
            env[k] = dagu_env[k] = await self._classic(value, env)
        self.step_dagu_env[step.name] = dagu_env
        if handler:
            env["DAG_RUN_STATUS"] = self.status.value
        out, err = stepmod.log_paths(self.log_dir, step)
        if not handler:
            env["DAG_RUN_STEP_STDOUT_FILE"] = out
            env["DAG_RUN_STEP_STDERR_FILE"] = err
        env["DAGU_OUTPUT_FILE"] = os.path.join(self.log_dir, f"{os.path.basename(out)[:-4]}.outputs")
        scope = self._scope(env, step if not handler else None)
        if handler:
            scope.context = {**scope.context, "run.status": self.status.value}
            if step.name != "onInit":
                scope.variables = {**scope.variables, **self.variables()}
        else:
            scope.context = {
                **scope.context,
                "paths.step_stdout_file": out,
                "paths.step_stderr_file": err,
                "paths.step_output_file": env["DAGU_OUTPUT_FILE"],
            }
        return env, scope, cwd

    # ---- execution ---------------------------------------------------------------------

    async def prepare(self) -> None:
        """Params, consts, env and shell; raises RunSetupError/ValueError before anything runs."""
        self._prepare()
        for notice in self.dag.no_effect:  # read but not acted on: said at every run, not only at validate
            log.warning("run %s of %s: %s", self.opts.run_id, self.dag.name, notice)
        await self._eval_params()
        self.prepared = True

    def mask(self, text: str) -> str:
        """Secret values never leave the run: errors, logs and the terminal show ***** instead."""
        return mask_text(text, self.secret_values) if self.secret_values else text

    async def emit(self, event: Event) -> None:
        """Announce an event with every secret value masked: the store, the subscribers and the
        terminal never see one (params, errors, outputs included)."""
        if self.secret_values:
            event = dataclasses.replace(
                event,
                **{
                    f.name: mask_value(getattr(event, f.name), self.mask)
                    for f in dataclasses.fields(event)
                    if isinstance(getattr(event, f.name), (str, dict))
                    and not isinstance(getattr(event, f.name), enum.Enum)
                    and f.name not in MASK_EXEMPT
                },
            )
        await self._emit_raw(event)

    def _mask_file(self, path: str) -> None:
        mask_file(path, self.secret_values)


def secret_value(dag: Dag, secret: Secret) -> str | None:
    """The value of one of a DAG's secrets from its provider (env or file)."""
    if secret.provider == "env" and secret.key:
        return os.environ.get(secret.key)
    if secret.provider == "file" and secret.key:
        path = (
            secret.key
            if os.path.isabs(secret.key)
            else os.path.join(os.path.dirname(os.path.abspath(dag.file)), secret.key)
        )
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().rstrip("\n")
        except OSError as exc:
            raise RunSetupError(f"secrets: {secret.name}: cannot read {path}: {exc.strerror}") from None
    raise RunSetupError(
        f"secrets: {secret.name}: provider {secret.provider or secret.ref!r} is not supported by dagd yet (env and file are)"
    )


def secret_values(dag: Dag) -> list[str]:
    """Every secret value a DAG's runs would mask (those that cannot be read are left out)."""
    out = []
    for secret in dag.secrets:
        try:
            value = secret_value(dag, secret)
        except RunSetupError:
            continue
        if value:
            out.append(value)
    return out


def mask_file(path: str | None, secrets: list[str]) -> None:
    """Rewrite a log file with the secret values masked, a block at a time (bounded memory);
    the rename keeps a reader from seeing a half-written file."""
    if not secrets or not path or not os.path.exists(path):
        return
    wanted = [v.encode() for v in secrets if v]
    longest = max(len(w) for w in wanted)
    with open(path, "rb") as fh:
        if not any(w in block for block in _blocks(fh, longest) for w in wanted):
            return
    tmp = f"{path}.masking"
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        carry = b""
        while True:
            block = src.read(1 << 20)
            data = carry + block
            masked, used = masked_slice(data, secrets, final=not block)
            dst.write(masked)
            carry = data[used:]
            if not block:
                break
    os.replace(tmp, path)


def _blocks(fh: Any, overlap: int) -> Any:
    tail = b""
    while block := fh.read(1 << 20):
        yield tail + block
        tail = block[-overlap:]


def read_dotenv(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                if line.startswith("export "):
                    line = line[7:]
                k, _, v = line.partition("=")
                v = v.strip()
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                    v = v[1:-1]
                out[k.strip()] = v
    except OSError:
        pass
    return out


def _utc(text: str) -> str:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if when.tzinfo is None:
        return text
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
