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
    """name description group labels tags type tasks schedule skip_if_successful catchup_window
    overlap_policy queue max_active_runs worker_selector run_config webhook timeout_sec delay_sec
    restart_wait_sec max_active_steps max_clean_up_time_sec max_output_size preconditions
    retry_policy handler_on hist_retention_days hist_retention_runs working_dir shell shell_args
    env dotenv params consts defaults secrets tools container ssh s3 redis kubernetes llm harness
    harnesses registry_auths resources artifacts log_dir log_output otel actions step_types smtp
    mail_on error_mail info_mail wait_mail steps""".split()
)
CLASSIC_ROOT_KEYS = frozenset({"precondition", "functions"})

STEP_KEYS = frozenset(
    """name id description action approval call command config container continue_on
    dependencies depends env exec foreach inputs llm log_output mail_on_error messages output
    output_schema outputs parallel params preconditions repeat_policy retry_policy routes run
    script shell shell_args shell_packages signal_on_stop stderr stdout timeout_sec tools type
    value with worker_selector working_dir""".split()
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
    """name type default eval description required enum minimum maximum min_length max_length
    pattern""".split()
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
    """exec http.request ssh.run docker.run container.run k8s.run kubernetes.run postgres.query
    sqlite.query postgres.import sqlite.import jq.filter dag.run dag.enqueue router.route
    chat.completion harness.run template.render log.write mail.send archive.create
    archive.extract archive.list s3.upload s3.download s3.list s3.delete sftp.upload
    sftp.download file.stat file.read file.write file.copy file.move file.delete file.mkdir
    file.list git.checkout git.worktree.add git.worktree.remove wait.duration wait.until
    wait.file wait.http artifact.list artifact.read artifact.write data.convert data.pick
    state.get state.set state.delete state.list state.diff outputs.write human.task noop
    gha.run action""".split()
)

# Variables dagd manages for every run/step; secrets may not take these names.
MANAGED_ENV = frozenset(
    """DAG_NAME DAG_RUN_ID DAG_RUN_LOG_FILE DAG_RUN_WORK_DIR DAG_RUN_ARTIFACTS_DIR DAG_PARAMS_JSON
    DAG_RUN_STEP_NAME DAG_RUN_STEP_STDOUT_FILE DAG_RUN_STEP_STDERR_FILE DAG_RUN_STATUS
    DAG_WAITING_STEPS DAG_WIKI_DIR DAG_DOCS_DIR DAG_PUSHBACK DAG_PUSHBACK_ITERATION
    DAG_PUSHBACK_PREVIOUS_STDOUT_FILE WEBHOOK_PAYLOAD WEBHOOK_HEADERS PWD""".split()
)

# Step ids that would shadow reference namespaces.
RESERVED_STEP_IDS = frozenset({"env", "params", "args", "stdout", "stderr", "output", "outputs"})

SIGNALS = frozenset(
    """SIGHUP SIGINT SIGQUIT SIGILL SIGTRAP SIGABRT SIGBUS SIGFPE SIGKILL SIGUSR1 SIGSEGV SIGUSR2
    SIGPIPE SIGALRM SIGTERM SIGSTKFLT SIGCHLD SIGCONT SIGSTOP SIGTSTP SIGTTIN SIGTTOU SIGURG
    SIGXCPU SIGXFSZ SIGVTALRM SIGPROF SIGWINCH SIGIO SIGPWR SIGSYS""".split()
)
