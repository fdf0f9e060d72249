import {
  Alert,
  Anchor,
  Badge,
  Group,
  Loader,
  MultiSelect,
  Pagination,
  ScrollArea,
  Stack,
  Switch,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core'
import { useCallback, useEffect, useMemo, useState } from 'react'
import { Link } from 'react-router-dom'
import { api, type DagFile } from '../api'
import { StatusBadge } from '../components/StatusBadge'
import { throttle, useRunEvents } from '../events'
import { formatTime, matchesDag, relativeTime } from '../format'

const PER_PAGE = 50

export function DagList() {
  const [dags, setDags] = useState<DagFile[] | null>(null)
  const [error, setError] = useState('')
  const [search, setSearch] = useState('')
  const [tags, setTags] = useState<string[]>([])
  const [page, setPage] = useState(1)

  const load = useCallback(() => {
    api
      .dags()
      .then((d) => {
        setDags(d)
        setError('')
      })
      .catch((e: Error) => setError(e.message))
  }, [])
  useEffect(load, [load])
  const refresh = useMemo(() => throttle(load, 500), [load])
  useRunEvents((e) => {
    if (e.type !== 'StepChanged') refresh()
  })

  const allTags = useMemo(() => [...new Set((dags ?? []).flatMap((d) => d.dag.tags ?? []))].sort(), [dags])
  const shown = useMemo(() => (dags ?? []).filter((d) => matchesDag(d, search, tags)), [dags, search, tags])
  const pages = Math.max(1, Math.ceil(shown.length / PER_PAGE))
  const current = Math.min(page, pages)
  const rows = shown.slice((current - 1) * PER_PAGE, current * PER_PAGE)

  const toggle = (d: DagFile) => {
    api
      .suspend(d.fileName, !d.suspended)
      .then(load)
      .catch((e: Error) => setError(e.message))
  }

  return (
    <Stack>
      <Group justify="space-between" align="end">
        <Title order={2}>DAGs</Title>
        <Text c="dimmed" size="sm" data-testid="dag-count">
          {dags ? `${shown.length} of ${dags.length}` : ''}
        </Text>
      </Group>
      <Group grow preventGrowOverflow={false} wrap="wrap">
        <TextInput
          placeholder="Search name, description, group"
          aria-label="Search DAGs"
          data-search
          value={search}
          onChange={(e) => {
            setSearch(e.currentTarget.value)
            setPage(1)
          }}
        />
        <MultiSelect
          placeholder={tags.length ? '' : 'Filter by tag'}
          aria-label="Filter by tag"
          data={allTags}
          value={tags}
          onChange={(t) => {
            setTags(t)
            setPage(1)
          }}
          searchable
          clearable
        />
      </Group>
      {error && <Alert color="red">{error}</Alert>}
      {!dags && !error && <Loader />}
      {dags && (
        <ScrollArea type="auto">
          <Table striped highlightOnHover verticalSpacing="xs">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th visibleFrom="sm">Schedule</Table.Th>
                <Table.Th>Last run</Table.Th>
                <Table.Th visibleFrom="sm">Now</Table.Th>
                <Table.Th>Enabled</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {rows.map((d) => (
                <Table.Tr key={d.fileName} data-dag={d.fileName} data-nav>
                  <Table.Td>
                    <Anchor component={Link} to={`/dags/${encodeURIComponent(d.fileName)}`} fw={600}>
                      {d.fileName}
                    </Anchor>
                    {d.dag.description && (
                      <Text size="xs" c="dimmed" lineClamp={1}>
                        {d.dag.description}
                      </Text>
                    )}
                    <Group gap={4} mt={2}>
                      {(d.dag.tags ?? []).map((t) => (
                        <Badge
                          key={t}
                          size="xs"
                          variant="outline"
                          style={{ cursor: 'pointer' }}
                          onClick={() => !tags.includes(t) && setTags([...tags, t])}
                        >
                          {t}
                        </Badge>
                      ))}
                      {d.errors.length > 0 && (
                        <Badge size="xs" color="red" title={d.errors.join('\n')}>
                          invalid
                        </Badge>
                      )}
                    </Group>
                  </Table.Td>
                  <Table.Td visibleFrom="sm">
                    {(d.dag.schedule ?? []).map((s) => (
                      <Text key={s.expression} size="sm" ff="monospace">
                        {s.expression}
                      </Text>
                    ))}
                    {d.nextRun && !d.suspended && (
                      <Text size="xs" c="dimmed" title={formatTime(d.nextRun)}>
                        next {relativeTime(d.nextRun)}
                      </Text>
                    )}
                  </Table.Td>
                  <Table.Td>
                    {d.latestDAGRun.statusLabel !== 'not_started' ? (
                      <Stack gap={0}>
                        <Anchor
                          component={Link}
                          to={`/dags/${encodeURIComponent(d.fileName)}/runs/${encodeURIComponent(d.latestDAGRun.dagRunId)}`}
                        >
                          <StatusBadge label={d.latestDAGRun.statusLabel} />
                        </Anchor>
                        <Text size="xs" c="dimmed" title={formatTime(d.latestDAGRun.startedAt)}>
                          {relativeTime(d.latestDAGRun.startedAt)}
                        </Text>
                      </Stack>
                    ) : (
                      <Text size="sm" c="dimmed">
                        never
                      </Text>
                    )}
                  </Table.Td>
                  <Table.Td visibleFrom="sm">
                    <Group gap={4}>
                      {d.runningCount > 0 && <Badge color="blue">{d.runningCount} running</Badge>}
                      {d.queuedCount > 0 && <Badge color="violet">{d.queuedCount} queued</Badge>}
                    </Group>
                  </Table.Td>
                  <Table.Td>
                    <Switch
                      checked={!d.suspended}
                      onChange={() => toggle(d)}
                      aria-label={`${d.suspended ? 'Resume' : 'Suspend'} ${d.fileName}`}
                    />
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </ScrollArea>
      )}
      {pages > 1 && <Pagination total={pages} value={current} onChange={setPage} />}
    </Stack>
  )
}
