// The runs page's pure parts (unit-tested with vitest): filters to an API query, date presets,
// and what each bulk action calls.
import { api } from './api'

/** dagd's run status codes (Dagu's Status enum), by label. */
export const RUN_STATUS_CODES: Record<string, number> = {
  not_started: 0,
  running: 1,
  failed: 2,
  aborted: 3,
  succeeded: 4,
  queued: 5,
  partially_succeeded: 6,
  waiting: 7,
  rejected: 8,
}

export type RunFilters = {
  name: string
  runId: string
  statuses: string[]
  labels: string[] // the DAG's labels, all of them ("team=data", "nightly")
  from: string // YYYY-MM-DD, local day, inclusive ('' = open)
  to: string
  cursor: string
}

function localDayStart(day: string): number {
  const [y, m, d] = day.split('-').map(Number)
  return new Date(y, m - 1, d).getTime() / 1000
}

/** The query string of GET /api/v1/dag-runs for these filters (Dagu's parameter names). */
export function runsQuery(f: RunFilters, limit: number): string {
  const q = new URLSearchParams({ limit: String(limit) })
  if (f.name) q.set('name', f.name)
  if (f.runId) q.set('dagRunId', f.runId)
  for (const s of f.statuses) {
    if (s in RUN_STATUS_CODES) q.append('status', String(RUN_STATUS_CODES[s]))
  }
  if (f.labels.length) q.set('labels', f.labels.join(','))
  if (/^\d{4}-\d{2}-\d{2}$/.test(f.from)) q.set('fromDate', String(Math.floor(localDayStart(f.from))))
  if (/^\d{4}-\d{2}-\d{2}$/.test(f.to)) q.set('toDate', String(Math.floor(localDayStart(f.to) + 86400 - 1)))
  if (f.cursor) q.set('cursor', f.cursor)
  return q.toString()
}

function ymd(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`
}

/** A preset's from/to days, in local time. */
export function dayRange(preset: 'today' | 'yesterday' | 'week', now: Date = new Date()): { from: string; to: string } {
  const day = new Date(now.getFullYear(), now.getMonth(), now.getDate())
  if (preset === 'today') return { from: ymd(day), to: ymd(day) }
  if (preset === 'yesterday') {
    const y = new Date(day.getFullYear(), day.getMonth(), day.getDate() - 1)
    return { from: ymd(y), to: ymd(y) }
  }
  const start = new Date(day.getFullYear(), day.getMonth(), day.getDate() - 6)
  return { from: ymd(start), to: ymd(day) }
}

/** A page of runs grouped by DAG (DAGs by name; each DAG's runs in the page's order). */
export function groupRuns<R extends { name: string }>(runs: R[]): { dag: string; runs: R[] }[] {
  const by = new Map<string, R[]>()
  for (const r of runs) by.set(r.name, [...(by.get(r.name) ?? []), r])
  return [...by.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([dag, rs]) => ({ dag, runs: rs }))
}

export type BulkAction = 'retry' | 'stop' | 'dequeue' | 'delete'

export const BULK_ACTIONS: Record<
  BulkAction,
  { label: string; done: string; explain: string; call: (name: string, id: string) => Promise<unknown> }
> = {
  retry: {
    label: 'Retry',
    done: 'queued again',
    explain: 'Each run starts again with its parameters (a finished run only).',
    call: api.retry,
  },
  stop: {
    label: 'Stop',
    done: 'stopped',
    explain: 'Each running run is stopped: its steps are ended, its handlers run.',
    call: api.stop,
  },
  dequeue: {
    label: 'Dequeue',
    done: 'taken out of the queue',
    explain: 'Each queued run leaves the queue without running (recorded aborted).',
    call: api.dequeue,
  },
  delete: {
    label: 'Delete',
    done: 'deleted',
    explain: 'Each finished run is forgotten: its record, step results, logs and work folder.',
    call: api.deleteRun,
  },
}
