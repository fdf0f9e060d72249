import { describe, expect, it } from 'vitest'
import type { Node } from './api'
import { ganttBars } from './gantt'

const node = (name: string, start: string, end: string, status = 'succeeded'): Node => ({
  step: { name },
  startedAt: start,
  finishedAt: end,
  status: 4,
  statusLabel: status,
  retryCount: 0,
  doneCount: 1,
  exitCode: 0,
  cpuUserSec: 0,
  cpuSysSec: 0,
  maxRssKb: 0,
  memorySource: null,
})

describe('ganttBars', () => {
  it('scales bars to the run span and orders them by start', () => {
    const { bars, totalSec } = ganttBars([
      node('b', '2026-01-01T00:00:05Z', '2026-01-01T00:00:10Z'),
      node('a', '2026-01-01T00:00:00Z', '2026-01-01T00:00:05Z'),
      node('never', '', ''),
    ])
    expect(totalSec).toBe(10)
    expect(bars.map((b) => b.name)).toEqual(['a', 'b'])
    expect(bars[1].leftPct).toBe(50)
    expect(bars[1].widthPct).toBe(50)
  })
  it('lets a running step grow until now', () => {
    const now = Date.parse('2026-01-01T00:00:20Z')
    const { bars } = ganttBars([node('a', '2026-01-01T00:00:00Z', '', 'running')], now)
    expect(bars[0].durationSec).toBe(20)
  })
})
