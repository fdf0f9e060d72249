"""One DAG run: params, env, preconditions, a dependency-driven ready queue, handlers, status.

A step starts the moment its dependencies are done (not level by level), bounded by
max_active_steps; every state change goes to `emit` (the store commits it before anything
else hears of it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import trio

from dagd.engine import actions, fanout, published
from dagd.engine import step as stepmod
from dagd.engine.events import Event, RunFinished, RunStarted, StepChanged
from dagd.engine.resolve import Scope, resolve, resolve_data
from dagd.engine.shell import choose_shell
from dagd.engine.status import RunStatus, StepStatus
from dagd.expand import resolve_params
from dagd.spec.fields import thaw
from dagd.spec.model import Dag, Dialect, Secret, Step, StepKind
from dagd.spec.params import split_param_string

STRIPPED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


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


class Run:
    def __init__(
        self,
        dag: Dag,
        opts: RunOptions,
        emit: Callable[[Event], Awaitable[None]],
        *,
        local_dags: Mapping[str, Dag] | None = None,
        variables: Mapping[str, str] | None = None,
        resume: Mapping[str, stepmod.StepResult] | None = None,
    ) -> None:
        self.dag = dag
        self.local_dags: dict[str, Dag] = {**(local_dags or {}), **dag.local_dags}
        self.extra_variables = dict(variables or {})
        self.opts = opts
        self.emit = emit
        self.results: dict[str, stepmod.StepResult] = {s.name: stepmod.StepResult() for s in dag.steps}
        # a retry keeps what already succeeded and runs the rest again
        self.resumed = {n for n in (resume or {}) if n in self.results}
        for name in self.resumed:
            self.results[name] = (resume or {})[name]
        self.by_name = {s.name: s for s in dag.steps}
        self.dependents: dict[str, list[str]] = {s.name: [] for s in dag.steps}
        for s in dag.steps:
            for d in s.depends:
                self.dependents[d].append(s.name)
        self.log_dir = os.path.join(opts.state_dir, "logs", dag.name, opts.run_id)
        self.work_dir = os.path.join(opts.state_dir, "work", dag.name, opts.run_id)
        self.cancelled = False
        self.prepared = False
        self.secret_values: list[str] = []
        self.step_dagu_env: dict[str, dict[str, str]] = {}
        self.error: str | None = None
        self.status = RunStatus.NOT_STARTED

    # ---- scopes ------------------------------------------------------------------------

    def _prepare(self) -> None:
        dag = self.dag
        named, positional = resolve_params(dag, self.opts.params, self.opts.param_string)
        self.consts: dict[str, str] = {}
        for k, v in dag.consts:
            self.consts[k] = resolve(v, Scope(consts=self.consts))
        self.named = named
        self.positional = positional
        env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
        wd = dag.working_dir
        if wd:  # value-resolved: params, consts, env; ~ expanded; relative to the DAG file
            wd = os.path.expanduser(
                resolve(wd, Scope(env=env, params=named, consts=self.consts, positional=positional))
            )
            wd = wd if os.path.isabs(wd) else os.path.join(os.path.dirname(os.path.abspath(dag.file)), wd)
        self.default_cwd = wd or (
            self.work_dir if dag.dialect is Dialect.CURRENT else os.path.dirname(os.path.abspath(dag.file))
        )
        os.makedirs(self.log_dir, exist_ok=True)
        os.makedirs(self.default_cwd, exist_ok=True)
        os.makedirs(self.work_dir, exist_ok=True)
        self.artifacts_dir: str | None = None
        art = dag.extra.get("artifacts")
        if isinstance(art, Mapping) and art.get("enabled", True) is not False:
            base = str(art.get("dir") or os.path.join(self.opts.state_dir, "artifacts"))
            base = base if os.path.isabs(base) else os.path.join(self.default_cwd, base)
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S")
            self.artifacts_dir = os.path.join(base, dag.name, f"dag-run_{stamp}_{self.opts.run_id}")
            os.makedirs(self.artifacts_dir, exist_ok=True)
        shell = choose_shell((), dag.shell, self.opts.default_shell)
        self.params_json = json.dumps(named, separators=(",", ":")) if (named or dag.params) else None
        self.managed = {
            "DAG_NAME": dag.name,
            "DAG_RUN_ID": self.opts.run_id,
            "DAG_RUN_LOG_FILE": os.path.join(self.log_dir, "run.log"),
            "DAG_RUN_WORK_DIR": self.work_dir,
        }
        if self.artifacts_dir:
            self.managed["DAG_RUN_ARTIFACTS_DIR"] = self.artifacts_dir
        if self.params_json is not None:
            self.managed["DAG_PARAMS_JSON"] = self.params_json
            self.managed["DAGU_PARAMS_JSON"] = self.params_json
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

    async def _eval_params(self) -> None:
        overridden = self._overridden()
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
            self.root_env["DAG_PARAMS_JSON"] = self.root_env["DAGU_PARAMS_JSON"] = self.params_json
        # root env, top to bottom; then dotenv; then the protected run variables again. The
        # `dagu_env` copy holds only what the DAG defines: action inputs never read the
        # inherited process environment.
        dagu_env = {**self.named, **self.managed}
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
        if secret.provider == "env" and secret.key:
            return os.environ.get(secret.key)
        if secret.provider == "file" and secret.key:
            path = (
                secret.key
                if os.path.isabs(secret.key)
                else os.path.join(os.path.dirname(os.path.abspath(self.dag.file)), secret.key)
            )
            try:
                with open(path, encoding="utf-8") as fh:
                    return fh.read().rstrip("\n")
            except OSError as exc:
                raise RunSetupError(f"secrets: {secret.name}: cannot read {path}: {exc.strerror}") from None
        raise RunSetupError(
            f"secrets: {secret.name}: provider {secret.provider or secret.ref!r} is not supported by dagd yet (env and file are)"
        )

    def _scope(self, env: dict[str, str], step: Step | None = None) -> Scope:
        outputs: dict[str, dict[str, str]] = {}
        props: dict[str, dict[str, str]] = {}
        variables: dict[str, str] = dict(self.extra_variables)
        ancestors = self._ancestors_in_order(step) if step is not None else []
        for name in ancestors:
            s, r = self.by_name[name], self.results[name]
            if s.id and r.status in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED):
                outputs[s.id] = r.outputs
            if s.output and r.output_value is not None:
                variables[s.output] = r.output_value
        for s in self.dag.steps:
            r = self.results[s.name]
            if s.id and r.status.done:
                p = {f"outputs.{k}": v for k, v in {**r.outputs, **r.published}.items()}
                p |= {
                    "stdout": r.stdout_path,
                    "stderr": r.stderr_path,
                    "exit_code": str(r.exit_code if r.exit_code is not None else ""),
                    "exitCode": str(r.exit_code if r.exit_code is not None else ""),
                }
                if r.output_value is not None:
                    p["output"] = r.output_value
                props[s.id] = p
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

    def _ancestors_in_order(self, step: Step) -> list[str]:
        """Predecessors breadth-first along depends; a later visit wins when names collide."""
        seen: list[str] = []
        queue = deque(step.depends)
        while queue:
            n = queue.popleft()
            if n in seen:
                continue
            seen.append(n)
            queue.extend(self.by_name[n].depends)
        return seen  # callers apply them in this order: the later visit wins

    async def _classic(self, text: str, env: dict[str, str]) -> str:
        """Dagu 1.x ran backticks in env values, params and preconditions; classic files still do."""
        if self.dag.dialect is not Dialect.CLASSIC or "`" not in text:
            return text
        return await stepmod.evaluate(text, self.shell, env, self.default_cwd)

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
            cwd = wd if os.path.isabs(wd) else os.path.join(self.default_cwd, wd)
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
        await self._eval_params()
        self.prepared = True

    async def execute(self) -> RunStatus:
        if not self.prepared:
            await self.prepare()
        started = stepmod.now()
        self.status = RunStatus.RUNNING
        await self.emit(
            RunStarted(
                self.opts.run_id,
                self.dag.name,
                self.dag.file,
                {"named": self.named, "positional": self.positional},
                self.opts.trigger,
                started,
                self.log_dir,
                self.default_cwd,
                self.opts.parent_run,
            )
        )
        try:
            with trio.fail_after(self.dag.timeout_sec) if self.dag.timeout_sec else stepmod._no_timeout():
                await self._main()
        except trio.TooSlowError:
            self.error = "context deadline exceeded (timeout_sec)"
            for name, r in self.results.items():
                if r.status in (StepStatus.RUNNING, StepStatus.RETRYING, StepStatus.NOT_STARTED):
                    await self._set(
                        self.by_name[name],
                        r,
                        StepStatus.ABORTED if r.status is not StepStatus.NOT_STARTED else StepStatus.NOT_STARTED,
                    )
            self.status = RunStatus.FAILED
        if self.status is RunStatus.RUNNING:
            self.status = self._final_status()
        await self._handlers_after()
        await self.emit(RunFinished(self.opts.run_id, self.dag.name, self.status, stepmod.now(), self.error))
        return self.status

    async def _main(self) -> None:
        dag = self.dag
        if dag.preconditions:
            env, scope, cwd = dict(self.root_env), self._scope(self.root_env), self.default_cwd
            try:
                ok = await stepmod.check_preconditions(dag.preconditions, self._runtime(), self.shell, env, cwd, scope)
            except stepmod.StepFailed as exc:
                self.error = f"preconditions: {exc}"
                self.status = RunStatus.FAILED
                return
            if not ok:
                self.cancelled = True
                self.status = RunStatus.ABORTED
                return
        if "init" in dag.handlers:
            r = await self._run_handler("init")
            if r.status is StepStatus.FAILED:
                self.cancelled = True
                self.status = RunStatus.ABORTED
                self.error = "init handler failed"
                return
        await self._graph()

    async def _graph(self) -> None:
        limit = self.dag.max_active_steps or len(self.dag.steps) or 1
        slots = trio.Semaphore(limit)
        async with trio.open_nursery() as nursery:
            pending = {s.name for s in self.dag.steps if s.name not in self.resumed}

            async def start_ready() -> None:
                progressed = True
                while progressed:
                    progressed = False
                    for name in list(pending):
                        verdict = self._readiness(self.by_name[name])
                        if verdict is None:
                            continue
                        pending.discard(name)
                        progressed = True
                        if verdict is StepStatus.RUNNING:
                            nursery.start_soon(run_one, name)
                            if self.dag.delay_sec:
                                await trio.sleep(self.dag.delay_sec)
                        else:
                            await self._set(self.by_name[name], self.results[name], verdict)

            async def run_one(name: str) -> None:
                async with slots:
                    await self._execute_step(self.by_name[name], self.results[name])
                await start_ready()

            await start_ready()

    def _readiness(self, step: Step) -> StepStatus | None:
        """RUNNING when the step may start, SKIPPED/ABORTED when upstream decides, None to wait."""
        verdict: StepStatus | None = StepStatus.RUNNING
        for d in step.depends:
            r, ds = self.results[d], self.by_name[d]
            if r.status in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED):
                continue
            if r.status is StepStatus.FAILED:
                if r.continued:
                    continue
                return StepStatus.ABORTED
            if r.status is StepStatus.SKIPPED:
                if ds.continue_on.skipped:
                    continue
                verdict = StepStatus.SKIPPED
                continue
            if r.status in (StepStatus.ABORTED, StepStatus.REJECTED):
                return StepStatus.ABORTED
            return None
        return verdict

    def _runtime(self) -> stepmod.StepRuntime:
        async def on_start(result: stepmod.StepResult) -> None:
            return None

        return stepmod.StepRuntime(
            self.log_dir,
            getattr(self, "dag_shell", self.dag.shell),
            self.opts.default_shell,
            self.dag.dialect is Dialect.CURRENT,
            self.dag.max_output_size,
            self.dag.max_clean_up_time_sec,
            on_start,
            self.dag.dialect is Dialect.CLASSIC,
        )

    def mask(self, text: str) -> str:
        """Secret values never leave the run: errors, logs and the terminal show ***** instead."""
        for value in self.secret_values:
            if value:
                text = text.replace(value, "*****")
        return text

    def _mask_file(self, path: str) -> None:
        if not self.secret_values or not path or not os.path.exists(path):
            return
        with open(path, "rb") as fh:
            data = fh.read()
        masked = data
        for value in self.secret_values:
            if value:
                masked = masked.replace(value.encode(), b"*****")
        if masked != data:
            with open(path, "wb") as fh:
                fh.write(masked)

    async def _set(self, step: Step, r: stepmod.StepResult, status: StepStatus, handler: bool = False) -> None:
        r.status = status
        if r.error:
            r.error = self.mask(r.error)
        if status.done:
            self._mask_file(r.stdout_path)
            self._mask_file(r.stderr_path)
        await self.emit(
            StepChanged(
                self.opts.run_id,
                step.name,
                status,
                r.attempts,
                r.exit_code,
                r.started_at,
                r.finished_at,
                r.error,
                r.stdout_path,
                r.stderr_path,
                r.cpu_user,
                r.cpu_sys,
                r.max_rss_kb,
                r.pgid,
                dict(r.outputs),
                handler,
                dict(r.published),
                r.output_value,
            )
        )

    async def _execute_step(self, step: Step, r: stepmod.StepResult, handler: bool = False) -> None:
        try:
            env, scope, cwd = await self.step_env(step, handler)
        except stepmod.StepFailed as exc:
            r.error = f"env: {exc}"
            await self._set(step, r, StepStatus.FAILED, handler)
            return
        r.stdout_path, r.stderr_path = stepmod.log_paths(self.log_dir, step)
        r.started_at = stepmod.now()
        rt = self._runtime()

        async def on_start(result: stepmod.StepResult) -> None:
            status = result.status if result.status is StepStatus.RETRYING else StepStatus.RUNNING
            await self._set(step, result, status, handler)
            result.status = StepStatus.RUNNING

        rt.on_start = on_start
        try:
            os.makedirs(cwd, exist_ok=True)
            for path in (r.stdout_path, r.stderr_path):
                open(path, "ab").close()
            if step.preconditions and not await stepmod.check_preconditions(
                step.preconditions, rt, self.shell, env, cwd, scope
            ):
                r.finished_at = stepmod.now()
                await self._set(step, r, StepStatus.SKIPPED, handler)
                return
            if step.kind in (StepKind.SUB_DAG, StepKind.FOREACH):
                await on_start(r)
                dagu_env = self.step_dagu_env.get(step.name, self.dagu_env)
                if step.kind is StepKind.SUB_DAG:
                    await fanout.run_sub_dag(self, step, r, scope, dagu_env)
                else:
                    await fanout.run_foreach(self, step, r, scope, dagu_env)
                r.exit_code = 0
                open(env["DAGU_OUTPUT_FILE"], "ab").close()
                stepmod.collect_outputs(step, rt, env, r)
            elif step.kind is StepKind.ACTION and step.action == "exec":
                # direct execution: Dagu expands the arguments (process env as a fallback), no shell
                cfg = resolve_data(thaw(step.config), dataclasses.replace(scope, env=env))
                if not cfg.get("command"):
                    raise stepmod.StepFailed("exec needs with.command (the program to run)")
                direct = [str(cfg["command"]), *(str(a) for a in cfg.get("args") or [])]
                await stepmod.run_commands(step, rt, env, cwd, scope, r, direct)
            elif step.kind is StepKind.ACTION and step.action in actions.SUPPORTED:
                await self._run_action(step, r, rt, env, cwd, scope)
            elif step.extra.get("shell_packages"):
                raise stepmod.StepFailed(
                    "shell_packages needs nix-shell, which dagd does not run; install the packages on the host and drop shell_packages"
                )
            elif step.kind not in (StepKind.COMMAND, StepKind.SCRIPT):
                what = step.action or step.kind.value
                raise stepmod.StepFailed(f"step type {what} is not supported by dagd yet")
            else:
                await stepmod.run_commands(step, rt, env, cwd, scope, r)
            stepmod.copy_redirects(step, scope, cwd, r)
            self._publish(step, r, scope, cwd)
            status = StepStatus.SUCCEEDED
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:  # never take the run down
            r.error = f"internal error: {type(exc).__name__}: {exc}"
            with open(r.stderr_path, "ab") as fh:
                fh.write(f"dagd: {step.name}: {r.error}\n".encode())
            status = StepStatus.FAILED
        except stepmod.StepFailed as exc:
            r.error = str(exc)
            if r.exit_code is None or exc.code == 124:
                r.exit_code = exc.code
            with open(r.stderr_path, "ab") as fh:
                fh.write(f"dagd: {step.name}: {exc}\n".encode())
            with contextlib.suppress(OSError):
                stepmod.copy_redirects(step, scope, cwd, r)
            status = self._on_failure(step, r)
        except trio.Cancelled:
            r.finished_at = stepmod.now()
            with trio.CancelScope(shield=True):
                await self._set(step, r, StepStatus.ABORTED, handler)
            raise
        r.finished_at = stepmod.now()
        await self._set(step, r, status, handler)

    async def _run_action(
        self, step: Step, r: stepmod.StepResult, rt: stepmod.StepRuntime, env: dict[str, str], cwd: str, scope: Scope
    ) -> None:
        action = step.action or "noop"
        with_scope = dataclasses.replace(scope, env=self.step_dagu_env.get(step.name, self.dagu_env))
        config = resolve_data(dict(step.config), with_scope)
        r.attempts = 1
        await rt.on_start(r)
        with open(r.stdout_path, "ab") as out:
            await trio.to_thread.run_sync(actions.run_action, action, config, cwd, out)
        r.exit_code = 0
        open(env["DAGU_OUTPUT_FILE"], "ab").close()
        stepmod.collect_outputs(step, rt, env, r)

    def _publish(self, step: Step, r: stepmod.StepResult, scope: Scope, cwd: str) -> None:
        limit = self.dag.max_output_size
        if step.output_fields:
            r.output_value = published.object_output(step.output_fields, scope, r, cwd, limit)
        for stream, source in (("stdout", r.stdout_path), ("stderr", r.stderr_path)):
            spec = step.extra.get(stream)
            if isinstance(spec, Mapping):
                if spec.get("outputs"):
                    r.published.update(published.stdout_outputs(spec, scope, r, cwd, limit))
                published.copy_artifact(spec, source, self.artifacts_dir, scope)

    def _on_failure(self, step: Step, r: stepmod.StepResult) -> StepStatus:
        co = step.continue_on
        if r.exit_code == 124 and r.error and "timed out" in r.error:
            return StepStatus.FAILED
        cont = co.failure or (r.exit_code is not None and r.exit_code in co.exit_codes)
        if not cont and co.output:
            cont = _output_matches(r.stdout_path, co.output)
        if cont:
            r.continued = True
            if co.mark_success:
                return StepStatus.SUCCEEDED
        return StepStatus.FAILED

    def _final_status(self) -> RunStatus:
        statuses = {n: r.status for n, r in self.results.items()}
        if self.cancelled and not all(s in (StepStatus.SUCCEEDED, StepStatus.SKIPPED) for s in statuses.values()):
            return RunStatus.ABORTED
        failed = [n for n, s in statuses.items() if s is StepStatus.FAILED]
        hard = [n for n in failed if not self.results[n].continued]
        if any(s is StepStatus.ABORTED for s in statuses.values()) and not hard:
            return RunStatus.ABORTED if self.cancelled else RunStatus.FAILED
        succeeded = any(s in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED) for s in statuses.values())
        if not hard and failed and succeeded:
            return RunStatus.PARTIALLY_SUCCEEDED
        if failed:
            self.error = self.error or f"step {failed[0]} failed: {self.results[failed[0]].error}"
            return RunStatus.FAILED
        return RunStatus.SUCCEEDED

    async def _run_handler(self, event: str) -> stepmod.StepResult:
        step = self.dag.handlers[event]
        r = stepmod.StepResult()
        await self._execute_step(step, r, handler=True)
        return r

    async def _handlers_after(self) -> None:
        with trio.CancelScope(shield=True):
            event = {
                RunStatus.SUCCEEDED: "success",
                RunStatus.PARTIALLY_SUCCEEDED: "success",
                RunStatus.FAILED: "failure",
                RunStatus.REJECTED: "failure",
                RunStatus.ABORTED: "abort",
            }.get(self.status)
            for e in (event, "exit"):
                if e and e in self.dag.handlers:
                    r = await self._run_handler(e)
                    if r.status is StepStatus.FAILED and not self.error:
                        self.error = f"{e} handler failed: {r.error}"

    def abort(self) -> None:
        self.cancelled = True


def _output_matches(path: str, patterns: tuple[str, ...]) -> bool:
    import re

    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read(1024 * 1024).splitlines()
    except OSError:
        return False
    for p in patterns:
        for line in lines:
            if (p.startswith("re:") and re.search(p[3:], line)) or (not p.startswith("re:") and p in line):
                return True
    return False


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
