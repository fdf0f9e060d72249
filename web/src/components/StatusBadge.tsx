import { Badge } from '@mantine/core'
import { statusColor, statusText } from '../format'

export function StatusBadge({ label }: { label: string }) {
  return (
    <Badge color={statusColor(label)} variant="light" data-status={label}>
      {statusText(label)}
    </Badge>
  )
}
