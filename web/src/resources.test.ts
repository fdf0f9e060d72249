import { describe, expect, it } from 'vitest'
import { median, outliers, ratioText, series, usualRatio, type RunUse } from './resources'

describe('resources', () => {
  it('takes medians', () => {
    expect(median([])).toBeNull()
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 3, 2])).toBe(2.5)
  })
  it('marks values twice the median, given enough history, above a floor', () => {
    expect([...outliers([1, 1.1, 0.9, 5, null, 1])]).toEqual([3])
    expect([...outliers([1, 5])]).toEqual([]) // too little history
    expect([...outliers([0.001, 0.001, 0.001, 0.003], 0.5)]).toEqual([]) // noise
  })
  it('compares a value with its usual', () => {
    expect(usualRatio(30, [10, 9, 11, null])).toBe(3)
    expect(usualRatio(30, [10, 11])).toBeNull()
    expect(ratioText(3)).toBe('3.0× its usual')
    expect(ratioText(0.25)).toBe('4.0× faster than usual')
    expect(ratioText(1.3)).toBe('')
    expect(ratioText(null)).toBe('')
  })
  it('reads one step across runs', () => {
    const runs: RunUse[] = [
      { dagRunId: 'a', statusLabel: 'succeeded', startedAt: '', durationSec: 2, steps: { s: { statusLabel: 'succeeded', durationSec: 1, cpuSec: 0.5, maxRssKb: 100 } } },
      { dagRunId: 'b', statusLabel: 'failed', startedAt: '', durationSec: 3, steps: {} },
    ]
    expect(series(runs, 's', 'maxRssKb')).toEqual([100, null])
    expect(series(runs, null, 'durationSec')).toEqual([2, 3])
  })
})
