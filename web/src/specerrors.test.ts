import { describe, expect, it } from 'vitest'
import { lineErrors } from './specerrors'

describe('lineErrors', () => {
  it("reads dagd's FILE:LINE:COL errors, and puts the others on line 1", () => {
    expect(
      lineErrors([
        '/etc/dagd/dags/etl.yaml:4:5: steps[0].depends: step "a" depends on non-existent step "x"',
        'etl.yml:2: schedule: bad',
        'the YAML does not parse',
      ]),
    ).toEqual([
      { line: 4, message: 'steps[0].depends: step "a" depends on non-existent step "x"' },
      { line: 2, message: 'schedule: bad' },
      { line: 1, message: 'the YAML does not parse' },
    ])
  })
})
