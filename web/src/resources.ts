// Resource use over time (unit-tested with vitest): medians, the runs that stand out, and how a
// step of one run compares with its usual.

export type StepUse = { statusLabel: string; durationSec: number | null; cpuSec: number | null; maxRssKb: number | null }
export type RunUse = {
  dagRunId: string
  statusLabel: string
  startedAt: string
  durationSec: number | null
  steps: Record<string, StepUse>
}
export type Measure = 'durationSec' | 'cpuSec' | 'maxRssKb'

export function median(xs: number[]): number | null {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

const MIN_HISTORY = 3 // fewer runs than this say nothing about "usual"

/** Indices of the values at least twice the median of the others' (and not tiny: a step of
 * 2 ms against 1 ms is noise): the runs to look at. */
export function outliers(xs: (number | null)[], floor = 0): Set<number> {
  const out = new Set<number>()
  const known = xs.filter((x): x is number => x !== null)
  if (known.length < MIN_HISTORY + 1) return out
  const m = median(known) ?? 0
  xs.forEach((x, i) => {
    if (x !== null && x >= 2 * m && x - m > floor) out.add(i)
  })
  return out
}

/** `value` against the median of `history` (this run left out); null when there is too little
 * history or nothing to compare. */
export function usualRatio(value: number | null, history: (number | null)[]): number | null {
  const known = history.filter((x): x is number => x !== null)
  const m = median(known)
  if (value === null || m === null || known.length < MIN_HISTORY || m <= 0) return null
  return value / m
}

/** "3.1× its usual" for a ratio worth a word (twice or half the usual and more), else "". */
export function ratioText(r: number | null): string {
  if (r === null) return ''
  if (r >= 2) return `${r.toFixed(1)}× its usual`
  if (r <= 0.5) return `${(1 / r).toFixed(1)}× faster than usual`
  return ''
}

/** The values of one step's measure across runs (null where the step did not run or was not measured). */
export function series(runs: RunUse[], step: string | null, measure: Measure): (number | null)[] {
  return runs.map((r) => (step === null ? (measure === 'durationSec' ? r.durationSec : null) : (r.steps[step]?.[measure] ?? null)))
}
