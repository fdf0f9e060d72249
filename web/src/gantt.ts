// Timeline bars for a run's steps (pure; unit-tested).
import type { Node } from './api'

export type Bar = {
  name: string
  status: string
  leftPct: number
  widthPct: number
  startSec: number
  durationSec: number
}

export function ganttBars(nodes: Node[], now: number = Date.now()): { bars: Bar[]; totalSec: number } {
  const started = nodes.filter((n) => n.startedAt)
  if (started.length === 0) return { bars: [], totalSec: 0 }
  const t0 = Math.min(...started.map((n) => Date.parse(n.startedAt)))
  const end = (n: Node) => (n.finishedAt ? Date.parse(n.finishedAt) : now)
  const t1 = Math.max(t0 + 1, ...started.map(end))
  const span = t1 - t0
  const bars = started
    .slice()
    .sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt))
    .map((n) => {
      const s = Date.parse(n.startedAt) - t0
      const d = Math.max(0, end(n) - Date.parse(n.startedAt))
      return {
        name: n.step.name,
        status: n.statusLabel,
        leftPct: (100 * s) / span,
        widthPct: Math.max(0.5, (100 * d) / span),
        startSec: s / 1000,
        durationSec: d / 1000,
      }
    })
  return { bars, totalSec: span / 1000 }
}
