import { describe, expect, it } from 'vitest'
import type { RunSummary } from './api'
import { counts, ticks, timeline, viewWindow } from './overview'

const run = (name: string, id: string, status: string, start: number, end?: number): RunSummary => ({
  name,
  dagRunId: id,
  status: 0,
  statusLabel: status,
  startedAt: new Date(start).toISOString(),
  finishedAt: end === undefined ? '' : new Date(end).toISOString(),
})
const H = 3600_000

describe('viewWindow', () => {
  const now = new Date(2026, 10, 30, 9, 15).getTime()
  it('is the last 24 hours by default, or a whole local day', () => {
    expect(viewWindow('', 24, 0, now)).toEqual({ start: now - 24 * H, end: now })
    const day = viewWindow('2026-11-29', 24, 0, now)
    expect(new Date(day.start).getHours()).toBe(0)
    expect(new Date(day.start).getDate()).toBe(29)
    expect(day.end - day.start).toBe(24 * H)
  })
  it('zooms to the last hours and moves back, within bounds', () => {
    expect(viewWindow('', 6, 3, now)).toEqual({ start: now - 9 * H, end: now - 3 * H })
    expect(viewWindow('', 99, -5, now)).toEqual({ start: now - 24 * H, end: now })
  })
})

describe('timeline', () => {
  const w = { start: 0, end: 10 * H }
  it('puts each run of a DAG on its row, clipped to the window; a running run ends now', () => {
    const rows = timeline(
      [
        run('b', '1', 'succeeded', 1 * H, 2 * H),
        run('a', '2', 'failed', -2 * H, 1 * H),
        run('b', '3', 'running', 9 * H),
        run('c', '4', 'succeeded', 11 * H, 12 * H),
      ],
      w,
      9.5 * H,
    )
    expect(rows.map((r) => r.dag)).toEqual(['a', 'b'])
    expect(rows[0].bars[0]).toMatchObject({ left: 0, width: 0.1 })
    expect(rows[1].bars.map((b) => [b.left, b.width])).toEqual([
      [0.1, 0.1],
      [0.9, 0.05],
    ])
  })
})

describe('counts and ticks', () => {
  it('counts a day by outcome', () => {
    const c = counts([run('a', '1', 'succeeded', 0, 1), run('a', '2', 'failed', 0, 1), run('a', '3', 'running', 0)])
    expect(c).toEqual({ runs: 3, succeeded: 1, failed: 1, aborted: 0, active: 1 })
  })
  it('ticks whole hours', () => {
    const start = new Date(2026, 0, 1, 0, 30).getTime()
    const t = ticks({ start, end: start + 6 * H })
    expect(t.length).toBe(6)
    expect(new Date(t[0]).getMinutes()).toBe(0)
  })
})
