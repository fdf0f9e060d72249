// Pure helpers (unit-tested with vitest): status colours, durations, times, param strings.

export const STATUS_COLOR: Record<string, string> = {
  not_started: 'gray',
  running: 'blue',
  failed: 'red',
  aborted: 'orange',
  succeeded: 'green',
  skipped: 'gray',
  partially_succeeded: 'lime',
  queued: 'violet',
  waiting: 'yellow',
  rejected: 'pink',
  retrying: 'cyan',
}

export function statusColor(label: string): string {
  return STATUS_COLOR[label] ?? 'gray'
}

export function statusText(label: string): string {
  return label.replace(/_/g, ' ')
}

/** Seconds between two ISO times ('' = not yet: `now` is used for the end, null for no start). */
export function durationSec(startedAt: string, finishedAt: string, now: number = Date.now()): number | null {
  if (!startedAt) return null
  const start = Date.parse(startedAt)
  const end = finishedAt ? Date.parse(finishedAt) : now
  return Math.max(0, (end - start) / 1000)
}

export function formatDuration(sec: number | null): string {
  if (sec === null) return '—'
  if (sec < 1) return `${Math.round(sec * 1000)} ms`
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 1 : 0)} s`
  const m = Math.floor(sec / 60)
  const s = Math.round(sec % 60)
  if (m < 60) return `${m}m ${s}s`
  const h = Math.floor(m / 60)
  return `${h}h ${m % 60}m`
}

export function formatTime(iso: string | undefined): string {
  if (!iso) return '—'
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return '—'
  return d.toLocaleString(undefined, {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  })
}

/** "in 5m", "3h ago" relative to `now`. */
export function relativeTime(iso: string | undefined, now: number = Date.now()): string {
  if (!iso) return ''
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return ''
  const diff = (t - now) / 1000
  const abs = Math.abs(diff)
  const text =
    abs < 60
      ? `${Math.round(abs)}s`
      : abs < 3600
        ? `${Math.round(abs / 60)}m`
        : abs < 86400
          ? `${Math.round(abs / 3600)}h`
          : `${Math.round(abs / 86400)}d`
  return diff >= 0 ? `in ${text}` : `${text} ago`
}

export function formatMemory(kb: number | null | undefined): string {
  if (!kb) return '—'
  if (kb < 1024) return `${kb} KiB`
  if (kb < 1024 * 1024) return `${(kb / 1024).toFixed(1)} MiB`
  return `${(kb / 1024 / 1024).toFixed(2)} GiB`
}

export type ParamDef = {
  name: string
  positional: boolean
  default: string
  type: string
  required: boolean
  description: string
  enum?: string[] // absent when the param declares none
}

/** The Run Now form's values → Dagu's `params` string: positional values first, in order, then
 * NAME="value" pairs; every value JSON-quoted, so spaces, quotes and `=` survive. */
export function paramString(defs: ParamDef[], values: Record<string, string>): string {
  const parts: string[] = []
  for (const d of defs.filter((d) => d.positional)) parts.push(JSON.stringify(values[d.name] ?? d.default))
  for (const d of defs.filter((d) => !d.positional)) {
    const v = values[d.name] ?? d.default
    parts.push(`${d.name}=${JSON.stringify(v)}`)
  }
  return parts.join(' ')
}

/** Filter DAGs by a free-text search (name, description, group) and all of the given tags. */
export function matchesDag(
  d: { fileName: string; dag: { description?: string; group?: string; tags?: string[] } },
  search: string,
  tags: string[],
): boolean {
  const q = search.trim().toLowerCase()
  if (q) {
    const hay = `${d.fileName} ${d.dag.description ?? ''} ${d.dag.group ?? ''}`.toLowerCase()
    if (!hay.includes(q)) return false
  }
  const have = new Set(d.dag.tags ?? [])
  return tags.every((t) => have.has(t))
}
