// The DAG's steps laid out left to right with dagre (pure; unit-tested).
import dagre from '@dagrejs/dagre'
import type { StepDef } from './api'

export const NODE_W = 180
export const NODE_H = 44

export type Placed = { id: string; x: number; y: number }
export type Link = { id: string; source: string; target: string }

export function layoutSteps(steps: StepDef[], direction: 'LR' | 'TB' = 'LR'): { nodes: Placed[]; edges: Link[] } {
  const g = new dagre.graphlib.Graph()
  g.setGraph({ rankdir: direction, nodesep: 24, ranksep: 56, marginx: 8, marginy: 8 })
  g.setDefaultEdgeLabel(() => ({}))
  const ids = new Map<string, string>() // a step's id or name → its name
  for (const s of steps) {
    ids.set(s.name, s.name)
    if (s.id) ids.set(s.id, s.name)
    g.setNode(s.name, { width: NODE_W, height: NODE_H })
  }
  const edges: Link[] = []
  for (const s of steps) {
    for (const d of s.depends) {
      const source = ids.get(d)
      if (!source) continue
      g.setEdge(source, s.name)
      edges.push({ id: `${source}->${s.name}`, source, target: s.name })
    }
  }
  dagre.layout(g)
  const nodes = steps.map((s) => {
    const n = g.node(s.name)
    return { id: s.name, x: n.x - NODE_W / 2, y: n.y - NODE_H / 2 }
  })
  return { nodes, edges }
}
