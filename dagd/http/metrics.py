"""GET /api/v1/metrics: Prometheus text from the history and the service's live state."""

from __future__ import annotations

import time
from typing import Any

import dagd


async def metrics(svc: Any) -> str:
    """Prometheus text: runs by status and DAG, running, queued, uptime."""
    counts = await svc.db(_run_counts, svc.store)
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
        f"dagu_dag_runs_queued_total {len(await svc.db(svc.store.queued))}",
        "# HELP dagu_dag_runs_total Runs recorded in the history, by DAG and status",
        "# TYPE dagu_dag_runs_total counter",
    ]
    for dag, status, n in counts:
        lines.append(f'dagu_dag_runs_total{{dag="{_label(dag)}",status="{status}"}} {n}')
    lines += [
        "# HELP dagu_dag_run_duration_seconds Wall time of finished runs, by DAG",
        "# TYPE dagu_dag_run_duration_seconds histogram",
    ]
    for dag, buckets, total, count in await svc.db(_durations, svc.store):
        for bound, n in zip(DURATION_BUCKETS, buckets, strict=True):
            lines.append(f'dagu_dag_run_duration_seconds_bucket{{dag="{_label(dag)}",le="{bound:g}"}} {n}')
        lines.append(f'dagu_dag_run_duration_seconds_bucket{{dag="{_label(dag)}",le="+Inf"}} {count}')
        lines.append(f'dagu_dag_run_duration_seconds_sum{{dag="{_label(dag)}"}} {total:.3f}')
        lines.append(f'dagu_dag_run_duration_seconds_count{{dag="{_label(dag)}"}} {count}')
    return "\n".join(lines) + "\n"


DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _durations(store: Any) -> list[tuple[str, list[int], float, int]]:
    """Cumulative bucket counts, sum and count of finished runs' durations, per DAG (one query)."""
    cols = ", ".join(f"SUM(d <= {b})" for b in DURATION_BUCKETS)
    with store.lock:
        rows = store.db.execute(
            f"SELECT dag, {cols}, SUM(d), COUNT(*) FROM (SELECT dag, finished_at - started_at AS d FROM dag_runs"
            " WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) GROUP BY dag ORDER BY dag"
        ).fetchall()
    n = len(DURATION_BUCKETS)
    return [(r[0], [int(x) for x in r[1 : n + 1]], float(r[n + 1] or 0), int(r[n + 2])) for r in rows]


def _run_counts(store: Any) -> list[tuple[str, str, int]]:
    with store.lock:
        rows = store.db.execute(
            "SELECT dag, status, COUNT(*) FROM dag_runs GROUP BY dag, status ORDER BY dag, status"
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]
