"""One DAG run executed: preconditions, a dependency-driven ready queue, handlers, status.

A step starts the moment its dependencies are done (not level by level), bounded by
max_active_steps; every state change goes to `emit` (the store commits it before anything
else hears of it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, BinaryIO

import trio

from dagd import cgroups, faults
from dagd.engine import (
    actions,
    containers,
    dataops,
    fanout,
    gitstep,
    gotemplate,
    httpstep,
    jqstep,
    mailing,
    published,
    reattach,
    redisstep,
    sqlstep,
    sshstep,
    waits,
)
from dagd.engine import step as stepmod
from dagd.engine.environment import RunEnvironment
from dagd.engine.events import RunFinished, RunStarted, StepChanged
from dagd.engine.process import LOST, end_run_group
from dagd.engine.resolve import Scope, resolve, resolve_data
from dagd.engine.status import RunStatus, StepStatus
from dagd.spec.fields import thaw
from dagd.spec.keys import refused_action
from dagd.spec.model import Dialect, Step, StepKind

log = logging.getLogger("dagd.run")


class Run(RunEnvironment):
    """One DAG run: DAG preconditions, the ready queue, handlers, the final status."""

    async def execute(self) -> RunStatus:
        if not self.prepared:
            await self.prepare()
        started = self.opts.resumed_at or stepmod.now()
        self.status = RunStatus.RUNNING
        for name in self.resumed:  # a step that failed before a restart lets its dependents go as before
            if self.results[name].status is StepStatus.FAILED:
                self._on_failure(self.by_name[name], self.results[name])
        if self.opts.resumed_at:  # spawned, its start not yet committed when dagd stopped: its record says so
            for s in (*self.dag.steps, *self.dag.handlers.values()):
                if s.name in self.resumed or s.name in self.inflight:
                    continue
                if reattach.load(self.log_dir, stepmod.log_paths(self.log_dir, s)[0]) is not None:
                    self.inflight.add(s.name)
                    if s.name not in self.results:
                        self.inflight_results[s.name] = stepmod.StepResult()
        self.cgroup = self._recontain() if self.opts.resumed_at else self._contain()
        if self.opts.keep:  # kept for the next dagd should this one stop: no reader ends it meanwhile
            os.makedirs(reattach.folder(self.log_dir), mode=0o750, exist_ok=True)
            reattach.register(self.opts.state_dir, self.opts.run_id, self.log_dir)
        self.shared: containers.Shared | None = None  # a DAG-level container: set when the run starts
        ended = False
        try:
            status = await self._execute(started)
            ended = True
            return status
        finally:
            if self.cgroup is not None and ended:
                with trio.CancelScope(shield=True):
                    await end_run_group(self.cgroup, self.dag.max_clean_up_time_sec)

    async def after_abort(self) -> None:
        """The run was cancelled from outside (stop, signal): its handlers run, then nothing of it
        may be left."""
        await self._handlers_after()
        if self.cgroup is not None:
            with trio.CancelScope(shield=True):
                await end_run_group(self.cgroup, self.dag.max_clean_up_time_sec)

    def _recontain(self) -> cgroups.RunGroup | None:
        """Re-attached after a restart: the run's cgroup as recorded (its controllers and limits
        applied again); a new one if none was recorded or this dagd has none."""
        where = cgroups.current(self.opts.state_dir)
        if where.tree is None or not self.opts.cgroup:
            return self._contain()
        group = cgroups.RunGroup.recorded(where.tree, self.opts.cgroup)
        try:
            group.reopen(self.dag.resources)
        except OSError as exc:
            log.warning("run %s of %s: its cgroup %s: %s", self.opts.run_id, self.dag.name, group.path, exc)
        return group

    def _contain(self) -> cgroups.RunGroup | None:
        """The run's own cgroup, limits applied; None where the host gives none (said once at start)."""
        where = cgroups.current(self.opts.state_dir)
        limits = self.dag.resources
        if where.tree is None:
            if limits is not None:
                log.warning(
                    "run %s of %s: resources.limits are not enforced: %s",
                    self.opts.run_id,
                    self.dag.name,
                    where.summary,
                )
            return None
        group = where.tree.run(self.opts.run_id)
        try:
            try:
                faults.hit("run_cgroup", self.dag.name)
                group.create(limits)
            except FileExistsError:  # the same run id again in this process (a retry): nothing of before stays
                cgroups.kill_recorded(group.path)
                group.create(limits)
        except OSError as exc:
            log.warning(
                "run %s of %s: its cgroup %s could not be set up (%s); its steps run in process groups",
                self.opts.run_id,
                self.dag.name,
                group.path,
                exc.strerror or exc,
            )
            cgroups.remove_tree(group.path)
            return None
        for warning in group.warnings:
            log.warning("run %s of %s: %s", self.opts.run_id, self.dag.name, warning)
        return group

    async def _execute(self, started: float) -> RunStatus:
        self.started_at, self.finished_at = started, 0.0
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
                self.cgroup.path if self.cgroup is not None else None,
            )
        )
        faults.hit("started")
        if "container" in self.dag.extra:  # one container for the run: its shell steps are exec'd in it
            try:
                spec = resolve_data(thaw(self.dag.extra["container"]), self._scope(self.root_env))
                self.shared = containers.shared(spec, self.default_cwd, self.opts.run_id)
                await containers.start_shared(self.shared)
            except stepmod.StepFailed as exc:
                self.error = str(exc)
                self.status = RunStatus.FAILED
        try:
            if self.status is not RunStatus.FAILED:
                left = self.dag.timeout_sec - (stepmod.now() - started) if self.dag.timeout_sec else 0.0
                with trio.fail_after(max(left, 0.001)) if self.dag.timeout_sec else stepmod._no_timeout():
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
        try:
            await self._handlers_after()
        finally:
            if self.shared is not None:
                with trio.CancelScope(shield=True):  # the container (every process in it) ends with the run
                    await containers.end_shared(self.shared)
        self.finished_at = stepmod.now()
        await self.emit(RunFinished(self.opts.run_id, self.dag.name, self.status, self.finished_at, self.error))
        faults.hit("finished")
        mail_on = self.dag.mail_on
        if mail_on.get("failure") and self.status is RunStatus.FAILED:
            await self._notify("error_mail", "mail_on.failure")
        elif mail_on.get("success") and self.status in (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED):
            await self._notify("info_mail", "mail_on.success")
        return self.status

    async def _main(self) -> None:
        dag = self.dag
        if self.opts.resumed_at:  # re-attached: its preconditions and init handler ran before the restart
            await self._graph()
            return
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
            dependents: dict[str, list[str]] = {s.name: [] for s in self.dag.steps}
            for s in self.dag.steps:
                for d in s.depends:
                    dependents[d].append(s.name)
            order = {s.name: i for i, s in enumerate(self.dag.steps)}

            async def start_ready(candidates: list[str] | None = None) -> None:
                """Start what became ready. After a step ends only its dependents can have changed
                (and theirs, when one is skipped or aborted): O(edges) per run, not O(steps²)."""
                work = sorted(pending if candidates is None else set(candidates) & pending, key=order.__getitem__)
                while work:
                    name = work.pop(0)
                    if name not in pending:
                        continue
                    verdict = self._readiness(self.by_name[name])
                    if verdict is None:
                        continue
                    pending.discard(name)
                    if verdict is StepStatus.RUNNING:
                        nursery.start_soon(run_one, name)
                        if self.dag.delay_sec:
                            await trio.sleep(self.dag.delay_sec)
                    else:
                        await self._set(self.by_name[name], self.results[name], verdict)
                        work = sorted(set(work) | (set(dependents[name]) & pending), key=order.__getitem__)

            async def run_one(name: str) -> None:
                async with slots:
                    await self._execute_step(self.by_name[name], self.results[name])
                await start_ready(dependents[name])

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
            self.cgroup,
            keep=self.opts.keep,
        )

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
                r.pgid_identity,
                r.memory_source,
            )
        )
        if status.done and self.opts.keep:  # only once its end is committed: never a gap a restart falls in
            reattach.clear(self.log_dir, r.stdout_path)
        if status.done and not handler:
            faults.hit("step_finished")

    async def _execute_step(self, step: Step, r: stepmod.StepResult, handler: bool = False) -> None:
        try:
            env, scope, cwd = await self.step_env(step, handler)
        except stepmod.StepFailed as exc:
            r.error = f"env: {exc}"
            await self._set(step, r, StepStatus.FAILED, handler)
            return
        remote_dir: str | None = None
        if self._over_ssh(step):  # its working_dir is the remote host's; the client runs here
            if step.working_dir:
                remote_dir = resolve(step.working_dir, scope)
            elif self.dag.working_dir:
                remote_dir = self.default_cwd
            cwd = env["PWD"] = self.default_cwd
        r.stdout_path, r.stderr_path = stepmod.log_paths(self.log_dir, step)
        inflight = step.name in self.inflight  # re-attached: it was running when dagd stopped
        self.inflight.discard(step.name)
        if not (inflight and r.started_at):
            r.started_at = stepmod.now()
        rt = self._runtime()
        if inflight:
            rt.adopt = reattach.load(self.log_dir, r.stdout_path)

        async def on_start(result: stepmod.StepResult) -> None:
            status = result.status if result.status is StepStatus.RETRYING else StepStatus.RUNNING
            if result.pgid and not handler:
                faults.hit("step_unrecorded")  # spawned, its start not yet recorded
            await self._set(step, result, status, handler)
            result.status = StepStatus.RUNNING
            faults.hit("handler_running" if handler else "step_spawned")

        rt.on_start = on_start
        try:
            if handler:
                faults.hit("handler", self.dag.name, step.name)
            os.makedirs(cwd, exist_ok=True)
            faults.hit("output_file", self.dag.name, step.name)
            for path in (r.stdout_path, r.stderr_path):
                open(path, "ab").close()
            if inflight and rt.adopt is None and not (step.kind is StepKind.ACTION and step.action in waits.ACTIONS):
                what = step.action or ("sub-DAG" if step.kind in (StepKind.SUB_DAG, StepKind.FOREACH) else "process")
                raise stepmod.StepFailed(
                    f"lost during restart: dagd stopped while this step ({what}) ran and left no process to re-attach;"
                    " it may or may not have taken effect",
                    LOST,
                )
            if (
                rt.adopt is None
                and step.preconditions
                and not await stepmod.check_preconditions(step.preconditions, rt, self.shell, env, cwd, scope)
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
            elif step.kind is StepKind.ACTION and step.action in containers.ACTIONS:
                cfg = resolve_data(thaw(step.config), dataclasses.replace(scope, env=env))
                name = containers.container_name(self.opts.run_id, step.name, r.attempts + 1)
                plan = containers.plan(cfg, step.commands, cwd, name)
                await containers.pull_if_possible(plan)
                await self._in_container(plan, step, r, rt, env, cwd, scope)
            elif self._redis_step(step):
                cfg, commands, _ = self._action_inputs(step, scope)
                if step.kind is not StepKind.ACTION:  # a shell step under a DAG's `redis:`: its command is Redis's
                    cfg = {"command": " ".join(commands), **cfg} if commands else cfg
                action = step.action if step.kind is StepKind.ACTION and step.action else "redis."
                rcfg = redisstep.settings(self._resolved("redis"), cfg, action)
                await self._in_loop(step, r, rt, env, lambda out, err: redisstep.run(action, rcfg, cwd, out))
            elif self._over_ssh(step):
                await self._run_ssh(step, r, rt, env, scope, remote_dir)
            elif step.kind is StepKind.ACTION and step.action in sshstep.SFTP_ACTIONS:
                assert step.action is not None
                cfg, _, _ = self._action_inputs(step, scope)
                conn = sshstep.settings(self.dag.extra.get("ssh"), cfg, step.action)
                batch = os.path.join(self.log_dir, f"{os.path.basename(r.stdout_path)[:-4]}.sftp-batch")
                direct = sshstep.sftp_plan(conn, step.action, cfg, cwd, batch)
                env = {**env, **sshstep.askpass_env(conn, self.log_dir)}
                await stepmod.run_commands(step, rt, env, cwd, scope, r, direct)
            elif step.kind is StepKind.ACTION and step.action == "jq.filter":
                scratch = os.path.join(self.log_dir, f"{os.path.basename(r.stdout_path)[:-4]}.jq-input.json")
                direct = jqstep.argv(*self._action_inputs(step, scope), cwd, scratch)
                await stepmod.run_commands(step, rt, env, cwd, scope, r, direct)
            elif step.kind is StepKind.ACTION and step.action == "http.request":
                cfg = httpstep.request_config(*self._action_inputs(step, scope))
                await self._in_loop(step, r, rt, env, lambda out, err: httpstep.run(cfg, cwd, out, err))
            elif step.kind is StepKind.ACTION and step.action in sqlstep.ACTIONS:
                assert step.action is not None
                sql = sqlstep.plan(step.action, *self._action_inputs(step, scope))
                await self._in_loop(step, r, rt, env, lambda out, err: sqlstep.run(sql, cwd, out))
            elif step.kind is StepKind.ACTION and step.action == "mail.send":
                cfg, _, _ = self._action_inputs(step, scope)
                smtp = self._resolved("smtp")
                await self._in_loop(step, r, rt, env, lambda out, err: mailing.run_send(smtp, cfg, cwd, out, err))
            elif step.kind is StepKind.ACTION and step.action in actions.SUPPORTED:
                op = actions.operation(step.action, step.commands)
                cfg, _, _ = self._action_inputs(step, scope)
                await self._in_loop(
                    step, r, rt, env, lambda out, err: trio.to_thread.run_sync(actions.run_action, op, cfg, cwd, out)
                )
            elif step.kind is StepKind.ACTION and (step.action or "").split(".")[0] in ("artifact", "data", "state"):
                assert step.action is not None
                cfg, _, _ = self._action_inputs(step, scope)
                await self._in_loop(
                    step,
                    r,
                    rt,
                    env,
                    lambda out, err: trio.to_thread.run_sync(self._data_action, step, cfg, cwd, scope, out),
                )
            elif step.kind is StepKind.ACTION and step.action in waits.ACTIONS:
                op = waits.operation(step.action, step.commands)
                cfg, _, _ = self._action_inputs(step, scope)
                await self._in_loop(step, r, rt, env, lambda out, err: waits.run(op, cfg, cwd, out))
            elif step.kind is StepKind.ACTION and step.action == "template.render":
                body = self._template(step, scope, cwd)
                await self._in_loop(step, r, rt, env, body)
            elif step.kind is StepKind.ACTION and step.action == "router.route":
                cfg, _, _ = self._action_inputs(step, scope)  # its routes are the targets' preconditions
                await self._in_loop(
                    step, r, rt, env, lambda out, err: _write_json(out, {"value": str(cfg.get("value"))})
                )
            elif step.kind is StepKind.ACTION and step.action == "outputs.write":
                cfg, _, _ = self._action_inputs(step, scope)
                values = outputs_values(cfg)
                await self._in_loop(step, r, rt, env, lambda out, err: _write_json(out, values))
                r.outputs.update(values)
                r.published.update(values)
            elif step.kind is StepKind.ACTION and step.action in gitstep.ACTIONS:
                op = gitstep.operation(step.action, step.commands)
                cfg, _, _ = self._action_inputs(step, scope)
                direct, extra_env = gitstep.plan(op, cfg, cwd, self.log_dir)
                await stepmod.run_commands(step, rt, {**env, **extra_env}, cwd, scope, r, direct)
            elif "container" in step.extra and step.kind in (StepKind.COMMAND, StepKind.SCRIPT):
                if step.interpreter:
                    raise stepmod.StepFailed("a script with its own interpreter cannot run in a container yet")
                spec = resolve_data(thaw(step.extra["container"]), dataclasses.replace(scope, env=env))
                name = containers.container_name(self.opts.run_id, step.name, r.attempts + 1)
                dagu_env = self.step_dagu_env.get(step.name, self.dagu_env)
                plan = containers.for_step(spec, stepmod.step_texts(step, scope), cwd, name, dagu_env)
                await self._in_container(plan, step, r, rt, env, cwd, scope)
            elif self.shared is not None and step.kind in (StepKind.COMMAND, StepKind.SCRIPT):
                if step.interpreter:
                    raise stepmod.StepFailed("a script with its own interpreter cannot run in the DAG's container yet")
                dagu_env = self.step_dagu_env.get(step.name, self.dagu_env)
                direct = containers.exec_argv(self.shared, stepmod.step_texts(step, scope), dagu_env)
                rt.hold_stdin = True  # the guard in the container watches it
                await stepmod.run_commands(step, rt, env, cwd, scope, r, direct)
            elif step.extra.get("shell_packages"):
                raise stepmod.StepFailed(
                    "shell_packages needs nix-shell, which dagd does not run; install the packages on the host and drop shell_packages"
                )
            elif refused_action(step.action):
                raise stepmod.StepFailed(f"{step.action} is refused by dagd: it {refused_action(step.action)}")
            elif step.kind not in (StepKind.COMMAND, StepKind.SCRIPT):
                what = step.action or step.kind.value
                raise stepmod.StepFailed(f"step type {what} is not supported by dagd yet")
            else:
                await stepmod.run_commands(step, rt, env, cwd, scope, r)
            stepmod.copy_redirects(step, scope, cwd, r)
            self._publish(step, r, scope, cwd)
            status = StepStatus.SUCCEEDED
        except stepmod.StepFailed as exc:
            r.error = str(exc) + _disk_full(self.log_dir)
            if r.exit_code is None or exc.code == 124:
                r.exit_code = exc.code
            with contextlib.suppress(OSError), open(r.stderr_path, "ab") as fh:
                fh.write(f"dagd: {step.name}: {exc}\n".encode())
            with contextlib.suppress(OSError):
                stepmod.copy_redirects(step, scope, cwd, r)
            status = self._on_failure(step, r)
        except OSError as exc:  # a folder or file the step needs: the step fails, saying which
            where = f" {exc.filename}" if exc.filename else ""
            r.error = f"cannot use{where}: {exc.strerror or exc}" + _disk_full(self.log_dir)
            with contextlib.suppress(OSError), open(r.stderr_path, "ab") as fh:
                fh.write(f"dagd: {step.name}: {r.error}\n".encode())
            status = StepStatus.FAILED
        except Exception as exc:  # a bug: this step fails, never the run or the daemon
            log.error("step %s of run %s: %s: %s", step.name, self.opts.run_id, type(exc).__name__, exc, exc_info=exc)
            r.error = f"internal error: {type(exc).__name__}: {exc}"
            with contextlib.suppress(OSError), open(r.stderr_path, "ab") as fh:
                fh.write(f"dagd: {step.name}: {r.error}\n".encode())
            status = StepStatus.FAILED
        except trio.Cancelled:
            r.finished_at = stepmod.now()
            with trio.CancelScope(shield=True):
                await self._set(step, r, StepStatus.ABORTED, handler)
            raise
        r.finished_at = stepmod.now()
        await self._set(step, r, status, handler)
        if status is StepStatus.FAILED and step.mail_on_error and "error_mail" in self.dag.extra:
            await self._notify("error_mail", f"step {step.name}")

    async def _in_loop(
        self,
        step: Step,
        r: stepmod.StepResult,
        rt: stepmod.StepRuntime,
        env: dict[str, str],
        body: Callable[[BinaryIO, BinaryIO], Awaitable[None]],
    ) -> None:
        """An action done by dagd itself (http, mail, sql, redis, files …): its output in the
        step's logs, the step's timeout_sec as the deadline of each attempt, and its retry_policy
        (a failure is exit status 1; a timeout is not retried, as for commands)."""
        retries = 0
        while True:
            r.attempts += 1
            await rt.on_start(r)
            with open(r.stdout_path, "ab") as out, open(r.stderr_path, "ab") as err:
                try:
                    with trio.fail_after(step.timeout_sec) if step.timeout_sec else stepmod._no_timeout():
                        await body(out, err)
                    break
                except trio.TooSlowError:
                    raise stepmod.StepFailed(f"step timed out after {step.timeout_sec:g}s", 124) from None
                except stepmod.StepFailed as exc:
                    delay = stepmod.retry_delay(step.retry_policy, retries, exc.code, self._scope(env))
                    if delay is None:
                        raise
                    retries += 1
                    err.write(f"dagd: {step.name}: attempt {r.attempts}: {exc}; retrying in {delay:g}s\n".encode())
            r.status = StepStatus.RETRYING
            await rt.on_start(r)
            await trio.sleep(delay)
        r.exit_code = 0
        open(env["DAGU_OUTPUT_FILE"], "ab").close()
        stepmod.collect_outputs(step, rt, env, r)

    def _resolved(self, key: str) -> Any:
        """A DAG-level setting (smtp, error_mail …) resolved as Dagu does at run time: the DAG's
        env, params and secrets."""
        value = self.dag.extra.get(key)
        return None if value is None else resolve_data(thaw(value), self._scope(self.root_env))

    async def _notify(self, which: str, why: str) -> None:
        """Send the run's error_mail or info_mail now. A mail that cannot be sent is logged (the
        journal; dagctl run's stderr) and changes nothing in the run."""

        def when(t: float | None) -> str:
            return datetime.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds") if t else ""

        lines = []
        for s in self.dag.steps:
            res = self.results[s.name]
            command = " && ".join(s.commands) or (s.script or "").strip().split("\n")[0] or (s.action or "")
            lines.append(
                mailing.StepLine(
                    s.name,
                    when(res.started_at),
                    when(res.finished_at),
                    res.status.value,
                    command,
                    res.error or "",
                    res.stdout_path if res.started_at else "",
                )
            )
        try:
            mail = mailing.notification(
                self._resolved(which),
                which,
                self.dag.name,
                self.opts.run_id,
                self.status.value,
                when(self.started_at),
                when(self.finished_at),
                " ".join([*self.positional, *(f"{k}={v}" for k, v in self.named.items())]),
                self.error,
                lines,
            )
            mail = dataclasses.replace(mail, text=self.mask(mail.text), html=self.mask(mail.html or ""))
            await mailing.send(mailing.smtp_settings(self._resolved("smtp")), mail)
            log.info(
                "run %s of %s: %s sent to %s (%s)", self.opts.run_id, self.dag.name, which, ", ".join(mail.to), why
            )
        except stepmod.StepFailed as exc:
            log.warning(
                "run %s of %s: %s not sent (%s): %s", self.opts.run_id, self.dag.name, which, why, self.mask(str(exc))
            )

    def _template(self, step: Step, scope: Scope, cwd: str) -> Callable[[BinaryIO, BinaryIO], Awaitable[None]]:
        """template.render (1.x `type: template`, the template as `script:`): Go's text/template
        (dagd.engine.gotemplate) over `data`; the template text is literal, as in Dagu (only
        `template_ref` — one reference — is resolved), its output the step's stdout or `output`."""
        raw = dict(thaw(step.config))
        with_scope = dataclasses.replace(scope, env=self.step_dagu_env.get(step.name, self.dagu_env))
        if "template" in raw and "template_ref" in raw:
            raise stepmod.StepFailed("template.render takes exactly one of template or template_ref")
        if "template" in raw:
            text = str(raw["template"])
        elif "template_ref" in raw:
            text = resolve(str(raw["template_ref"]), with_scope)
        elif step.script:
            text = step.script
        else:
            raise stepmod.StepFailed("template.render needs template (or template_ref, or a 1.x script:)")
        data = resolve_data(raw.get("data") or {}, with_scope)
        target = raw.get("output")
        target = resolve(str(target), with_scope) if target else None

        async def body(out: BinaryIO, err: BinaryIO) -> None:
            try:
                rendered = gotemplate.render(text, data)
            except gotemplate.TemplateError as exc:
                raise stepmod.StepFailed(f"template: execution error: {exc}") from None
            if target:
                path = target if os.path.isabs(target) else os.path.join(cwd, target)
                os.makedirs(os.path.dirname(path) or ".", mode=0o750, exist_ok=True)
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(rendered)
            else:
                out.write(rendered.encode())

        return body

    def _data_action(self, step: Step, cfg: Mapping[str, Any], cwd: str, scope: Scope, out: BinaryIO) -> None:
        action = step.action or ""
        family = action.split(".")[0]
        if family == "artifact":
            dataops.artifact(action, cfg, self.artifacts_dir, out)
        elif family == "data":
            dataops.data(action, cfg, cwd, out)
        else:
            root = str(scope.context.get("run.root_name") or self.dag.name)
            dataops.state(action, cfg, self.opts.state_dir, self.dag.name, root, out, self.opts.shared_store)

    def _redis_step(self, step: Step) -> bool:
        """redis.<command>, or a shell step of a DAG with `redis:` (and no container or ssh:
        Dagu's order) — whose command is then a Redis command, never a host's."""
        if step.kind is StepKind.ACTION:
            return bool(step.action and step.action.startswith("redis."))
        return (
            step.kind in (StepKind.COMMAND, StepKind.SCRIPT)
            and "redis" in self.dag.extra
            and not {"container", "ssh"} & set(self.dag.extra)
            and "container" not in step.extra
        )

    def _over_ssh(self, step: Step) -> bool:
        """ssh.run, or a shell step of a DAG with `ssh:` (and no container: Dagu's order)."""
        if step.kind is StepKind.ACTION:
            return step.action == "ssh.run"
        return (
            step.kind in (StepKind.COMMAND, StepKind.SCRIPT)
            and "ssh" in self.dag.extra
            and "container" not in step.extra
            and "container" not in self.dag.extra
        )

    async def _run_ssh(
        self,
        step: Step,
        r: stepmod.StepResult,
        rt: stepmod.StepRuntime,
        env: dict[str, str],
        scope: Scope,
        remote: str | None,
    ) -> None:
        """The step's command on the remote host (dagd.engine.sshstep). As Dagu: references to what
        the DAG defines are resolved here, the rest ($HOME, $USER …) is left to the remote shell;
        with an explicit `shell`, a `\\$` stays escaped for it."""
        raw_cfg = dict(thaw(step.config))
        command = raw_cfg.pop("command", None)
        if step.kind is StepKind.ACTION and command:
            raw = [str(command)] if isinstance(command, str) else [str(c) for c in command]
        elif step.commands:
            raw = list(step.commands)
        elif step.script:
            raw = [step.script]
        else:
            raise stepmod.StepFailed("ssh.run needs a command to run on the remote host")
        if step.interpreter:
            raise stepmod.StepFailed("a script with its own interpreter cannot run over ssh; put it in shell:")
        with_scope = dataclasses.replace(scope, env=self.step_dagu_env.get(step.name, self.dagu_env))
        conn = sshstep.settings(self.dag.extra.get("ssh"), resolve_data(raw_cfg, with_scope), "ssh.run")
        if conn.shell:
            texts = [resolve(t.replace("\\$", "\x00"), with_scope).replace("\x00", "\\$") for t in raw]
        else:
            texts = [resolve(t, with_scope) for t in raw]
        direct = sshstep.ssh_argv(conn, sshstep.remote_line(conn, texts, remote))
        rt.hold_stdin = True
        env = {**env, **sshstep.askpass_env(conn, self.log_dir)}
        await stepmod.run_commands(step, rt, env, self.default_cwd, scope, r, direct)

    def _action_inputs(self, step: Step, scope: Scope) -> tuple[Any, tuple[str, ...], str | None]:
        """An action step's `with:`, command and script, resolved as Dagu resolves them: against
        what the DAG defines (never the host's environment)."""
        with_scope = dataclasses.replace(scope, env=self.step_dagu_env.get(step.name, self.dagu_env))
        commands = tuple(stepmod.step_texts(step, scope)) if step.commands else ()
        script = resolve(step.script, with_scope) if step.script else None
        return resolve_data(thaw(step.config), with_scope), commands, script

    async def _in_container(
        self,
        plan: containers.Plan,
        step: Step,
        r: stepmod.StepResult,
        rt: stepmod.StepRuntime,
        env: dict[str, str],
        cwd: str,
        scope: Scope,
    ) -> None:
        """The container's CLI as the step's process; its container ends with the step (a stop or
        a timeout included). An exec into a running container is guarded (containers.guarded)."""
        argv = plan.argv
        if plan.running:
            rt.hold_stdin = True
            if plan.plain is not None and not await containers.has_shell(plan):
                argv = plan.plain  # no /bin/sh in there: unguarded, as before (a stop ends the client only)
        try:
            await stepmod.run_commands(step, rt, env, cwd, scope, r, argv)
        finally:
            with trio.CancelScope(shield=True):
                await containers.finish(plan)

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
        r = self.inflight_results.get(step.name) or stepmod.StepResult()
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
                if e and e in self.dag.handlers and self.dag.handlers[e].name not in self.handlers_done:
                    r = await self._run_handler(e)
                    if r.status is StepStatus.FAILED and not self.error:
                        self.error = f"{e} handler failed: {r.error}"

    def abort(self) -> None:
        self.cancelled = True


def _disk_full(folder: str) -> str:
    """ " (disk full: …)" when the file system of the step's logs has no space left, so a step that
    failed for want of space says so; else ""."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return ""
    if st.f_bavail * st.f_frsize >= 64 * 1024:
        return ""
    return f" (disk full: no space left on the file system of {folder})"


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


async def _write_json(out: BinaryIO, values: Mapping[str, str]) -> None:
    out.write((json.dumps(values, sort_keys=True) + "\n").encode())


def outputs_values(cfg: Mapping[str, Any]) -> dict[str, str]:
    """outputs.write's `values`: each published as a step and DAG output (JSON text unless a string)."""
    stepmod.reject_unknown("outputs.write", cfg, {"values"})
    values = cfg.get("values")
    if not isinstance(values, Mapping) or not values:
        raise stepmod.StepFailed("outputs.write needs values: a mapping of output names to values")
    out: dict[str, str] = {}
    for k, v in values.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(k)):
            raise stepmod.StepFailed(f"outputs.write: {k!r} is not an output name (letters, digits, _)")
        out[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return out
