"""GET /api/v1/metrics: Prometheus text from the history and the service's live state."""

from __future__ import annotations

import time

import dagd
from dagd.service import Service


async def metrics(svc: Service) -> str:
    """Prometheus text: runs by status and DAG, running, queued, uptime."""
    counts = await svc.run_counts()
    lines = [
        "# HELP dagu_info dagd build information",
        "# TYPE dagu_info gauge",
        f'dagu_info{{version="{dagd.__version__}",name="dagd"}} 1',
        "# HELP dagu_uptime_seconds Seconds since dagd started",
        "# TYPE dagu_uptime_seconds gauge",
        f"dagu_uptime_seconds {int(time.time() - svc.started_at)}",
        "# HELP dagu_dag_runs_currently_running Runs in progress",
        "# TYPE dagu_dag_runs_currently_running gauge",
        f"dagu_dag_runs_currently_running {len(svc.active)}",
        "# HELP dagu_dag_runs_queued_total Runs waiting in the queue",
        "# TYPE dagu_dag_runs_queued_total gauge",
        f"dagu_dag_runs_queued_total {len(await svc.queue())}",
        "# HELP dagu_dag_runs_total Runs recorded in the history, by DAG and status",
        "# TYPE dagu_dag_runs_total counter",
    ]
    for dag, status, n in counts:
        lines.append(f'dagu_dag_runs_total{{dag="{_label(dag)}",status="{status}"}} {n}')
    lines += [
        "# HELP dagu_dag_run_duration_seconds Wall time of finished runs, by DAG",
        "# TYPE dagu_dag_run_duration_seconds histogram",
    ]
    for dag, buckets, total, count in await svc.run_durations(DURATION_BUCKETS):
        for bound, n in zip(DURATION_BUCKETS, buckets, strict=True):
            lines.append(f'dagu_dag_run_duration_seconds_bucket{{dag="{_label(dag)}",le="{bound:g}"}} {n}')
        lines.append(f'dagu_dag_run_duration_seconds_bucket{{dag="{_label(dag)}",le="+Inf"}} {count}')
        lines.append(f'dagu_dag_run_duration_seconds_sum{{dag="{_label(dag)}"}} {total:.3f}')
        lines.append(f'dagu_dag_run_duration_seconds_count{{dag="{_label(dag)}"}} {count}')
    return "\n".join(lines) + "\n"


DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
