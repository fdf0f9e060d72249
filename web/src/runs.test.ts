import { describe, expect, it } from 'vitest'
import { dayRange, groupRuns, runsQuery } from './runs'

const none = { name: '', runId: '', statuses: [], labels: [], from: '', to: '', cursor: '' }

describe('runsQuery', () => {
  it('asks for the newest runs when nothing is filtered', () => {
    expect(runsQuery(none, 50)).toBe('limit=50')
  })
  it("maps filters to Dagu's parameters, statuses repeated, days to local instants", () => {
    const q = new URLSearchParams(
      runsQuery({ ...none, name: 'etl', runId: 'r1', statuses: ['failed', 'aborted', 'bogus'], from: '2026-11-29', to: '2026-11-29', cursor: 'c' }, 20),
    )
    expect(q.get('name')).toBe('etl')
    expect(q.get('dagRunId')).toBe('r1')
    expect(q.getAll('status')).toEqual(['2', '3'])
    const from = Number(q.get('fromDate'))
    expect(new Date(from * 1000).getHours()).toBe(0)
    expect(Number(q.get('toDate')) - from).toBe(86399)
    expect(q.get('cursor')).toBe('c')
    expect(new URLSearchParams(runsQuery({ ...none, labels: ['team=data', 'nightly'] }, 5)).get('labels')).toBe(
      'team=data,nightly',
    )
  })
  it('ignores a malformed day', () => {
    expect(runsQuery({ ...none, from: 'yesterday' }, 5)).toBe('limit=5')
  })
})

describe('groupRuns', () => {
  it("groups a page by DAG name, keeping each DAG's runs in order", () => {
    const page = [
      { name: 'b', id: 1 },
      { name: 'a', id: 2 },
      { name: 'b', id: 3 },
    ]
    expect(groupRuns(page)).toEqual([
      { dag: 'a', runs: [{ name: 'a', id: 2 }] },
      {
        dag: 'b',
        runs: [
          { name: 'b', id: 1 },
          { name: 'b', id: 3 },
        ],
      },
    ])
  })
})

describe('dayRange', () => {
  const now = new Date(2026, 0, 1, 9, 30)
  it('knows today, yesterday across a year and the last seven days', () => {
    expect(dayRange('today', now)).toEqual({ from: '2026-01-01', to: '2026-01-01' })
    expect(dayRange('yesterday', now)).toEqual({ from: '2025-12-31', to: '2025-12-31' })
    expect(dayRange('week', now)).toEqual({ from: '2025-12-26', to: '2026-01-01' })
  })
})
