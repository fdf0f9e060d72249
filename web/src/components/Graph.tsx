import '@xyflow/react/dist/style.css'
import { Background, Controls, MarkerType, Position, ReactFlow, type Edge, type Node as FlowNode } from '@xyflow/react'
import { useComputedColorScheme, useMantineTheme } from '@mantine/core'
import { useMemo } from 'react'
import type { StepDef } from '../api'
import { statusColor, statusText } from '../format'
import { layoutSteps } from '../layout'

type Props = {
  steps: StepDef[]
  statuses: Record<string, string> // step name → status label of the run shown
  onSelect?: (step: string) => void
}

export function Graph({ steps, statuses, onSelect }: Props) {
  const theme = useMantineTheme()
  const dark = useComputedColorScheme('light') === 'dark'
  const laid = useMemo(() => layoutSteps(steps), [steps])
  const nodes: FlowNode[] = laid.nodes.map((n) => {
    const status = statuses[n.id] ?? 'not_started'
    const color = theme.colors[statusColor(status)] ?? theme.colors.gray
    return {
      id: n.id,
      position: { x: n.x, y: n.y },
      data: { label: n.id },
      draggable: false,
      connectable: false,
      sourcePosition: Position.Right,
      targetPosition: Position.Left,
      className: `step-node status-${status}`,
      style: {
        width: 180,
        borderRadius: 8,
        border: `2px solid ${color[6]}`,
        background: dark ? theme.colors.dark[6] : color[0],
        color: dark ? theme.colors.gray[0] : theme.colors.dark[7],
        fontSize: 13,
        boxShadow: status === 'running' ? `0 0 0 4px ${color[2]}` : undefined,
      },
      ariaLabel: `${n.id}: ${statusText(status)}`,
    }
  })
  const edges: Edge[] = laid.edges.map((e) => ({
    ...e,
    markerEnd: { type: MarkerType.ArrowClosed },
    animated: statuses[e.target] === 'running',
  }))
  const height = Math.min(560, Math.max(180, Math.max(0, ...laid.nodes.map((n) => n.y)) + 120))
  return (
    <div style={{ height, border: `1px solid ${dark ? theme.colors.dark[4] : theme.colors.gray[3]}`, borderRadius: 8 }}>
      <ReactFlow
        nodes={nodes}
        edges={edges}
        fitView
        fitViewOptions={{ padding: 0.15, maxZoom: 1.2 }}
        nodesConnectable={false}
        onNodeClick={(_, n) => onSelect?.(n.id)}
        colorMode={dark ? 'dark' : 'light'}
        proOptions={{ hideAttribution: true }}
      >
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  )
}
