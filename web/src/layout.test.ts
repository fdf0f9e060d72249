import { describe, expect, it } from 'vitest'
import { layoutSteps } from './layout'

describe('layoutSteps', () => {
  it('places dependents to the right of their dependencies and resolves ids', () => {
    const { nodes, edges } = layoutSteps([
      { name: 'extract', id: 'ex', depends: [], commands: [] },
      { name: 'transform', depends: ['ex'], commands: [] },
      { name: 'load', depends: ['transform'], commands: [] },
      { name: 'report', depends: ['transform'], commands: [] },
    ])
    const x = Object.fromEntries(nodes.map((n) => [n.id, n.x]))
    expect(x.transform).toBeGreaterThan(x.extract)
    expect(x.load).toBeGreaterThan(x.transform)
    expect(x.report).toBe(x.load)
    expect(edges.map((e) => e.id).sort()).toEqual(['extract->transform', 'transform->load', 'transform->report'])
  })
  it('lays out 1000 steps quickly', () => {
    const steps = Array.from({ length: 1000 }, (_, i) => ({
      name: `s${i}`,
      depends: i ? [`s${Math.floor(i / 2)}`] : [],
      commands: [],
    }))
    const t = performance.now()
    expect(layoutSteps(steps).nodes).toHaveLength(1000)
    expect(performance.now() - t).toBeLessThan(5000)
  })
})
