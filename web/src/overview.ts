// The overview's pure parts (unit-tested with vitest): the window a view shows, the timeline's
// rows and bars, and the day's counts.
import type { RunSummary } from './api'

export type Window = { start: number; end: number } // epoch ms

/** The window of a view: a calendar day (local) or the last 24 hours, zoomed to its last `span`
 * hours and moved back `shift` hours. */
export function viewWindow(day: string, span: number, shift: number, now: number): Window {
  let end = now
  if (/^\d{4}-\d{2}-\d{2}$/.test(day)) {
    const [y, m, d] = day.split('-').map(Number)
    end = new Date(y, m - 1, d + 1).getTime()
  }
  const s = Math.min(24, Math.max(1, span || 24))
  end -= Math.max(0, shift) * 3600_000
  return { start: end - s * 3600_000, end }
}

export type Bar = { run: RunSummary; left: number; width: number } // fractions of the window
export type Row = { dag: string; bars: Bar[] }

/** One row per DAG (by name), a bar per run that overlaps the window, clipped to it; a run still
 * going ends at `now`. */
export function timeline(runs: RunSummary[], w: Window, now: number): Row[] {
  const rows = new Map<string, Bar[]>()
  const span = w.end - w.start
  for (const run of runs) {
    if (!run.startedAt) continue
    const start = Date.parse(run.startedAt)
    const end = run.finishedAt ? Date.parse(run.finishedAt) : now
    if (Number.isNaN(start) || end < w.start || start > w.end) continue
    const a = Math.max(start, w.start)
    const b = Math.min(Math.max(end, a), w.end)
    const bars = rows.get(run.name) ?? []
    bars.push({ run, left: (a - w.start) / span, width: (b - a) / span })
    rows.set(run.name, bars)
  }
  return [...rows.entries()].sort(([x], [y]) => x.localeCompare(y)).map(([dag, bars]) => ({ dag, bars }))
}

export type Counts = { runs: number; succeeded: number; failed: number; aborted: number; active: number }

export function counts(runs: RunSummary[]): Counts {
  const c: Counts = { runs: runs.length, succeeded: 0, failed: 0, aborted: 0, active: 0 }
  for (const r of runs) {
    if (r.statusLabel === 'succeeded') c.succeeded++
    else if (r.statusLabel === 'failed' || r.statusLabel === 'rejected') c.failed++
    else if (r.statusLabel === 'aborted') c.aborted++
    else if (r.statusLabel === 'running' || r.statusLabel === 'queued' || r.statusLabel === 'waiting') c.active++
  }
  return c
}

/** Hour ticks inside the window: every 1, 2, 3 or 6 hours depending on its span. */
export function ticks(w: Window): number[] {
  const hours = (w.end - w.start) / 3600_000
  const step = (hours <= 3 ? 1 : hours <= 6 ? 1 : hours <= 12 ? 2 : 3) * 3600_000
  const first = new Date(w.start)
  first.setMinutes(0, 0, 0)
  const out: number[] = []
  for (let t = first.getTime(); t <= w.end; t += step) if (t >= w.start) out.push(t)
  return out
}
