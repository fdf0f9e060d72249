import { describe, expect, it } from 'vitest'
import { durationSec, formatDuration, formatMemory, matchesDag, paramString, relativeTime, statusColor } from './format'
import type { ParamDef } from './format'

const def = (name: string, positional = false, dflt = ''): ParamDef => ({
  name,
  positional,
  default: dflt,
  type: 'string',
  required: false,
  description: '',
  enum: [],
})

describe('format', () => {
  it('colours every status and falls back to gray', () => {
    expect(statusColor('succeeded')).toBe('green')
    expect(statusColor('failed')).toBe('red')
    expect(statusColor('no-such')).toBe('gray')
  })
  it('formats durations across units', () => {
    expect(formatDuration(null)).toBe('—')
    expect(formatDuration(0.25)).toBe('250 ms')
    expect(formatDuration(3.21)).toBe('3.2 s')
    expect(formatDuration(75)).toBe('1m 15s')
    expect(formatDuration(7322)).toBe('2h 2m')
  })
  it('measures running durations against now', () => {
    const start = '2026-01-01T00:00:00Z'
    expect(durationSec(start, '2026-01-01T00:00:10Z')).toBe(10)
    expect(durationSec(start, '', Date.parse('2026-01-01T00:01:00Z'))).toBe(60)
    expect(durationSec('', '')).toBeNull()
  })
  it('says relative times both ways', () => {
    const now = Date.parse('2026-01-01T12:00:00Z')
    expect(relativeTime('2026-01-01T12:05:00Z', now)).toBe('in 5m')
    expect(relativeTime('2026-01-01T09:00:00Z', now)).toBe('3h ago')
    expect(relativeTime('', now)).toBe('')
  })
  it('formats memory', () => {
    expect(formatMemory(0)).toBe('—')
    expect(formatMemory(512)).toBe('512 KiB')
    expect(formatMemory(2048)).toBe('2.0 MiB')
  })
  it('builds a params string that keeps spaces, quotes and = intact', () => {
    const defs = [def('$1', true, 'first'), def('NAME', false, 'x'), def('MSG')]
    expect(paramString(defs, { MSG: 'a "b" = c' })).toBe('"first" NAME="x" MSG="a \\"b\\" = c"')
  })
  it('filters DAGs by text and all tags', () => {
    const d = { fileName: 'nightly-backup', dag: { description: 'Backs up the db', tags: ['ops', 'db'] } }
    expect(matchesDag(d, 'BACKUP', [])).toBe(true)
    expect(matchesDag(d, 'backs up', ['ops'])).toBe(true)
    expect(matchesDag(d, '', ['ops', 'web'])).toBe(false)
    expect(matchesDag(d, 'report', [])).toBe(false)
  })
})
