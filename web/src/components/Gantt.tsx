import { Box, Group, Text, Tooltip, useMantineTheme } from '@mantine/core'
import type { Node } from '../api'
import { formatDuration, statusColor } from '../format'
import { ganttBars } from '../gantt'

export function Gantt({ nodes, now }: { nodes: Node[]; now: number }) {
  const theme = useMantineTheme()
  const { bars, totalSec } = ganttBars(nodes, now)
  if (bars.length === 0) return <Text c="dimmed">No step has started yet.</Text>
  return (
    <Box data-testid="gantt">
      {bars.map((b) => (
        <Group key={b.name} gap="xs" wrap="nowrap" mb={4}>
          <Text size="sm" w={{ base: 96, sm: 160 }} truncate="end" title={b.name}>
            {b.name}
          </Text>
          <Box style={{ flex: 1, position: 'relative', height: 18 }}>
            <Tooltip label={`${b.name}: starts +${formatDuration(b.startSec)}, takes ${formatDuration(b.durationSec)}`}>
              <Box
                data-bar={b.name}
                style={{
                  position: 'absolute',
                  left: `${b.leftPct}%`,
                  width: `${b.widthPct}%`,
                  top: 2,
                  bottom: 2,
                  borderRadius: 4,
                  background: theme.colors[statusColor(b.status)][6],
                }}
              />
            </Tooltip>
          </Box>
          <Text size="xs" c="dimmed" w={64} ta="right">
            {formatDuration(b.durationSec)}
          </Text>
        </Group>
      ))}
      <Text size="xs" c="dimmed" ta="right">
        total {formatDuration(totalSec)}
      </Text>
    </Box>
  )
}
