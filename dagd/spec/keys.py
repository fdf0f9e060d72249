"""The key vocabulary of Dagu DAG files: which keys exist where, and their 1.x spellings."""

from __future__ import annotations

# Dagu 1.x camelCase → current snake_case, at any level.
CAMEL_TO_SNAKE: dict[str, str] = {
    "workingDir": "working_dir",
    "skipIfSuccessful": "skip_if_successful",
    "catchupWindow": "catchup_window",
    "overlapPolicy": "overlap_policy",
    "logDir": "log_dir",
    "logOutput": "log_output",
    "handlerOn": "handler_on",
    "mailOn": "mail_on",
    "errorMail": "error_mail",
    "infoMail": "info_mail",
    "waitMail": "wait_mail",
    "timeoutSec": "timeout_sec",
    "delaySec": "delay_sec",
    "restartWaitSec": "restart_wait_sec",
    "histRetentionDays": "hist_retention_days",
    "histRetentionRuns": "hist_retention_runs",
    "maxActiveRuns": "max_active_runs",
    "maxActiveSteps": "max_active_steps",
    "maxCleanUpTimeSec": "max_clean_up_time_sec",
    "maxOutputSize": "max_output_size",
    "runConfig": "run_config",
    "workerSelector": "worker_selector",
    "registryAuths": "registry_auths",
    "shellPackages": "shell_packages",
    "shellArgs": "shell_args",
    "continueOn": "continue_on",
    "retryPolicy": "retry_policy",
    "repeatPolicy": "repeat_policy",
    "mailOnError": "mail_on_error",
    "signalOnStop": "signal_on_stop",
    "intervalSec": "interval_sec",
    "exitCode": "exit_code",
    "maxIntervalSec": "max_interval_sec",
    "markSuccess": "mark_success",
    "maxConcurrent": "max_concurrent",
    "disableParamEdit": "disable_param_edit",
    "disableRunIdEdit": "disable_run_id_edit",
    "attachLogs": "attach_logs",
}

REMOVED_HINTS: dict[str, str] = {
    "artifactDir": 'use "artifacts.dir"',
    "enableArtifact": 'use "artifacts.enabled"',
    "forwardHeaders": 'use "webhook.forward_headers"',
}

ROOT_KEYS = frozenset(
    [
        "name",
        "description",
        "group",
        "labels",
        "tags",
        "type",
        "tasks",
        "schedule",
        "skip_if_successful",
        "catchup_window",
        "overlap_policy",
        "queue",
        "max_active_runs",
        "worker_selector",
        "run_config",
        "webhook",
        "timeout_sec",
        "delay_sec",
        "restart_wait_sec",
        "max_active_steps",
        "max_clean_up_time_sec",
        "max_output_size",
        "preconditions",
        "retry_policy",
        "handler_on",
        "hist_retention_days",
        "hist_retention_runs",
        "working_dir",
        "shell",
        "shell_args",
        "env",
        "dotenv",
        "params",
        "consts",
        "defaults",
        "secrets",
        "tools",
        "container",
        "ssh",
        "s3",
        "redis",
        "kubernetes",
        "llm",
        "harness",
        "harnesses",
        "registry_auths",
        "resources",
        "artifacts",
        "log_dir",
        "log_output",
        "otel",
        "actions",
        "step_types",
        "smtp",
        "mail_on",
        "error_mail",
        "info_mail",
        "wait_mail",
        "steps",
    ]
)
CLASSIC_ROOT_KEYS = frozenset({"precondition", "functions"})

STEP_KEYS = frozenset(
    [
        "name",
        "id",
        "description",
        "action",
        "approval",
        "call",
        "command",
        "config",
        "container",
        "continue_on",
        "dependencies",
        "depends",
        "env",
        "exec",
        "foreach",
        "inputs",
        "llm",
        "log_output",
        "mail_on_error",
        "messages",
        "output",
        "output_schema",
        "outputs",
        "parallel",
        "params",
        "preconditions",
        "repeat_policy",
        "retry_policy",
        "routes",
        "run",
        "script",
        "shell",
        "shell_args",
        "shell_packages",
        "signal_on_stop",
        "stderr",
        "stdout",
        "timeout_sec",
        "tools",
        "type",
        "value",
        "with",
        "worker_selector",
        "working_dir",
    ]
)
# Dagu 1.x step keys that the current format removed.
CLASSIC_STEP_KEYS = frozenset({"dir", "executor", "precondition"})

RETRY_KEYS = frozenset({"limit", "interval_sec", "exit_code", "backoff", "max_interval_sec"})
DAG_RETRY_KEYS = frozenset({"limit", "interval_sec", "backoff", "max_interval_sec"})
REPEAT_KEYS = frozenset(
    {
        "repeat",
        "condition",
        "expected",
        "exit_code",
        "interval_sec",
        "limit",
        "backoff",
        "max_interval_sec",
    }
)
CONTINUE_KEYS = frozenset({"failure", "failed", "skipped", "exit_code", "output", "mark_success"})
PRECONDITION_KEYS = frozenset({"condition", "eval", "expected", "negate"})
HANDLER_EVENTS = ("init", "success", "failure", "abort", "exit", "wait")
HANDLER_NAMES = {
    "init": "onInit",
    "success": "onSuccess",
    "failure": "onFailure",
    "abort": "onAbort",
    "exit": "onExit",
    "wait": "onWait",
}
DEFAULTS_KEYS = frozenset(
    {
        "continue_on",
        "retry_policy",
        "repeat_policy",
        "timeout_sec",
        "mail_on_error",
        "signal_on_stop",
        "env",
        "preconditions",
    }
)
PARAM_KEYS = frozenset(
    [
        "name",
        "type",
        "default",
        "eval",
        "description",
        "required",
        "enum",
        "minimum",
        "maximum",
        "min_length",
        "max_length",
        "pattern",
    ]
)
PARALLEL_KEYS = frozenset({"items", "max_concurrent"})
FOREACH_KEYS = frozenset({"items", "steps", "as", "key", "max_concurrent", "collect"})
SECRET_KEYS = frozenset({"name", "provider", "key", "options", "ref"})
OUTPUT_DECL_KEYS = frozenset({"name", "type", "path"})
SCHEDULE_KEYS = frozenset({"start", "stop", "restart"})
SCHEDULE_ENTRY_KEYS = frozenset({"expression", "at", "profile", "kind"})

# Legacy executor names (`type:` / v1 `executor:`) and the builtin actions they map to.
LEGACY_TYPES: dict[str, str] = {
    "command": "",
    "shell": "",
    "docker": "docker.run",
    "container": "container.run",
    "ssh": "ssh.run",
    "http": "http.request",
    "mail": "mail.send",
    "jq": "jq.filter",
    "dag": "dag.run",
    "subworkflow": "dag.run",
    "dag_enqueue": "dag.enqueue",
    "parallel": "dag.run",
    "foreach": "foreach",
    "archive": "archive.create",
    "chat": "chat.completion",
    "log": "log.write",
    "postgres": "postgres.query",
    "sqlite": "sqlite.query",
    "redis": "redis.get",
    "harness": "harness.run",
    "router": "router.route",
    "action": "action",
    "outputs": "outputs.write",
    "sftp": "sftp.upload",
    "template": "template.render",
    "s3": "s3.upload",
    "k8s": "k8s.run",
    "kubernetes": "kubernetes.run",
    "file": "file.write",
    "git": "git.checkout",
    "wait": "wait.duration",
    "data": "data.convert",
    "state": "state.get",
    "noop": "noop",
    "gha": "gha.run",
    "github_action": "gha.run",
    "github-action": "gha.run",
}

BUILTIN_ACTIONS = frozenset(
    [
        "exec",
        "http.request",
        "ssh.run",
        "docker.run",
        "container.run",
        "k8s.run",
        "kubernetes.run",
        "postgres.query",
        "sqlite.query",
        "postgres.import",
        "sqlite.import",
        "jq.filter",
        "dag.run",
        "dag.enqueue",
        "router.route",
        "chat.completion",
        "harness.run",
        "template.render",
        "log.write",
        "mail.send",
        "archive.create",
        "archive.extract",
        "archive.list",
        "s3.upload",
        "s3.download",
        "s3.list",
        "s3.delete",
        "sftp.upload",
        "sftp.download",
        "file.stat",
        "file.read",
        "file.write",
        "file.copy",
        "file.move",
        "file.delete",
        "file.mkdir",
        "file.list",
        "git.checkout",
        "git.worktree.add",
        "git.worktree.remove",
        "wait.duration",
        "wait.until",
        "wait.file",
        "wait.http",
        "artifact.list",
        "artifact.read",
        "artifact.write",
        "data.convert",
        "data.pick",
        "state.get",
        "state.set",
        "state.delete",
        "state.list",
        "state.diff",
        "outputs.write",
        "human.task",
        "noop",
        "gha.run",
        "action",
    ]
)

# Variables dagd manages for every run/step; secrets may not take these names.
MANAGED_ENV = frozenset(
    [
        "DAG_NAME",
        "DAG_RUN_ID",
        "DAG_RUN_LOG_FILE",
        "DAG_RUN_WORK_DIR",
        "DAG_RUN_ARTIFACTS_DIR",
        "DAG_PARAMS_JSON",
        "DAG_RUN_STEP_NAME",
        "DAG_RUN_STEP_STDOUT_FILE",
        "DAG_RUN_STEP_STDERR_FILE",
        "DAG_RUN_STATUS",
        "DAG_WAITING_STEPS",
        "DAG_WIKI_DIR",
        "DAG_DOCS_DIR",
        "DAG_PUSHBACK",
        "DAG_PUSHBACK_ITERATION",
        "DAG_PUSHBACK_PREVIOUS_STDOUT_FILE",
        "WEBHOOK_PAYLOAD",
        "WEBHOOK_HEADERS",
        "PWD",
    ]
)

# Step ids that would shadow reference namespaces.
RESERVED_STEP_IDS = frozenset({"env", "params", "args", "stdout", "stderr", "output", "outputs"})

SIGNALS = frozenset(
    [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ]
)

# Keys dagd reads but does not act on. Each is a warning at `dagctl validate` (at the key's line)
# and a notice when a run of the DAG starts, so no accepted key is ever silently ignored.
_NO_EXECUTOR = "only steps of Dagu executors that dagd does not have use it; such steps fail"
NO_EFFECT_ROOT: dict[str, str] = {
    "wait_mail": "runs never wait for an approval in dagd (approval: refuses the run), so there is no wait mail",
    "otel": "dagd exports no OpenTelemetry traces",
    "worker_selector": "it places runs among dagd nodes sharing a PostgreSQL store; a dagd on its own (SQLite) runs every DAG itself",
    "tools": "dagd installs no tools (aqua packages): install them on the host",
    "registry_auths": _NO_EXECUTOR,
    "kubernetes": _NO_EXECUTOR,
    "s3": _NO_EXECUTOR,
    "llm": _NO_EXECUTOR,
    "harness": _NO_EXECUTOR,
    "harnesses": _NO_EXECUTOR,
    "tasks": "only agent DAGs use it, and dagd runs none",
    "actions": "dagd runs no custom actions; steps that use them fail",
    "step_types": "dagd runs no custom step types; steps that use them fail",
    "functions": "Dagu 1.x functions are not supported; steps that call them fail",
    "run_config": "dagd's UI and API do not restrict editing params or run ids",
    "log_output": "dagd keeps each step's stdout and stderr in separate files (.out, .err)",
}
NO_EFFECT_STEP: dict[str, str] = {
    "worker_selector": NO_EFFECT_ROOT["worker_selector"],
    "tools": NO_EFFECT_ROOT["tools"],
    "log_output": NO_EFFECT_ROOT["log_output"],
    "inputs": "only human.task steps use it, and dagd runs none",
    "output_schema": "only agent steps use it, and dagd runs none",
}
# Dagu actions dagd refuses, and why: `dagctl validate` warns at the step's line, the step fails
# with this reason when it would start (the rest of the run goes on as its dependencies allow).
REMOTE_PACKAGE = (
    "runs code from a remote action package (fetched at run time); dagd does not download and run code"
    " it was not given: vendor the package's DAG into the DAGs folder and call it with dag.run"
)
_K8S = (
    "runs the step as a Kubernetes Job, which needs a cluster and its API; dagd has no Kubernetes executor"
    " (none could be tested on this host: it would take a cluster such as k3s or kind and a Kubernetes"
    " client) — run kubectl in a run: step"
)
_S3 = (
    "needs an S3 service and credentials; dagd has no S3 client (no S3-compatible server can be tested on"
    " this host) — use aws s3 or rclone in a run: step"
)
REFUSED_ACTIONS: dict[str, str] = {
    "k8s.run": _K8S,
    "kubernetes.run": _K8S,
    "s3.upload": _S3,
    "s3.download": _S3,
    "s3.list": _S3,
    "s3.delete": _S3,
    "chat.completion": "calls an LLM provider; dagd makes no LLM calls and runs no AI agents",
    "harness.run": "runs an AI coding agent; dagd runs no agents",
    "human.task": "waits for a person to fill in a form; dagd has no human tasks (as it has no approval:)",
    "gha.run": "runs a GitHub Actions action through act; dagd does not run GitHub Actions",
    "action": REMOTE_PACKAGE,
}


def refused_action(action: str | None) -> str | None:
    """Why dagd refuses this action, or None."""
    if not action:
        return None
    if "@" in action:
        return REMOTE_PACKAGE
    return REFUSED_ACTIONS.get(action)


# Step keys whose absence of effect would be dangerous: a run of a DAG with such a step is refused.
REFUSED_STEP: dict[str, str] = {
    "approval": "makes the step wait for a person's approval, which dagd does not have",
}
