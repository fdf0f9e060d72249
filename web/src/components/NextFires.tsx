import { Anchor, Table, Text } from '@mantine/core'
import { Link } from 'react-router-dom'
import { formatTime, relativeTime } from '../format'

/** The next scheduled starts across DAGs (GET /api/v1/system's next_fires). */
export function NextFires({ fires, now }: { fires: { dag: string; at: string }[]; now?: number }) {
  if (fires.length === 0)
    return (
      <Text c="dimmed" size="sm">
        No schedule is due.
      </Text>
    )
  return (
    <Table data-testid="next-fires-table">
      <Table.Tbody>
        {fires.map((f) => (
          <Table.Tr key={`${f.dag}-${f.at}`} data-fire={f.dag}>
            <Table.Td>
              <Anchor component={Link} to={`/dags/${encodeURIComponent(f.dag)}`}>
                {f.dag}
              </Anchor>
            </Table.Td>
            <Table.Td>{formatTime(f.at)}</Table.Td>
            <Table.Td c="dimmed">{relativeTime(f.at, now)}</Table.Td>
          </Table.Tr>
        ))}
      </Table.Tbody>
    </Table>
  )
}
