import { Alert, Anchor, Badge, Button, Group, Progress, Stack, Table, Text, Title } from '@mantine/core'
import { useCallback, useEffect, useState } from 'react'
import { Link, useSearchParams } from 'react-router-dom'
import { api, type Queue, type QueueSummary, type RunSummary } from '../api'
import { useLiveReload } from '../events'
import { formatTime, relativeTime } from '../format'

const runLink = (r: RunSummary) => `/dags/${encodeURIComponent(r.name)}/runs/${encodeURIComponent(r.dagRunId)}`

/** Each DAG's queue: what runs, what waits (oldest first), and a dequeue per waiting run. The
 * open queue is in the URL (?open=NAME); everything follows the event stream. */
export function QueuesPage() {
  const [params, setParams] = useSearchParams()
  const open = params.get('open') ?? ''
  const [queues, setQueues] = useState<Queue[] | null>(null)
  const [summary, setSummary] = useState<QueueSummary | null>(null)
  const [items, setItems] = useState<RunSummary[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState<string | null>(null)

  const load = useCallback(() => {
    api
      .queues()
      .then((r) => {
        setQueues(r.queues)
        setSummary(r.summary)
        setError(null)
      })
      .catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)))
    if (open) {
      api
        .queueItems(open)
        .then((r) => setItems(r.items))
        .catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)))
    } else setItems(null)
  }, [open])
  useEffect(load, [load])
  useLiveReload(load)

  const dequeue = async (r: RunSummary) => {
    setBusy(r.dagRunId)
    try {
      await api.dequeue(r.name, r.dagRunId)
      setError(null)
    } catch (e) {
      setError(`${r.dagRunId}: ${e instanceof Error ? e.message : String(e)}`)
    } finally {
      setBusy(null)
      load()
    }
  }

  return (
    <Stack gap="md">
      <Group justify="space-between">
        <Title order={2}>Queues</Title>
        {summary && (
          <Group gap="md" data-testid="queue-summary">
            <Text size="sm">
              {summary.totalRunning} running of {summary.totalCapacity} at once · {summary.totalQueued} waiting
            </Text>
            <Progress
              w={160}
              value={summary.utilizationPercentage}
              aria-label="Runs at once, of the limit"
              color={summary.utilizationPercentage >= 100 ? 'orange' : 'blue'}
            />
          </Group>
        )}
      </Group>
      <Text size="sm" c="dimmed">
        Each DAG queues its runs and starts them oldest first, up to its max_active_runs, while dagd has room
        (max_concurrent_runs).
      </Text>
      {error && (
        <Alert color="red" title="Queues">
          {error}
        </Alert>
      )}
      {queues !== null && queues.length === 0 && <Text c="dimmed">Nothing runs and nothing waits.</Text>}
      <Table highlightOnHover data-testid="queues-table">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Queue (DAG)</Table.Th>
            <Table.Th>Running</Table.Th>
            <Table.Th>Waiting</Table.Th>
            <Table.Th>Running now</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {(queues ?? []).map((q) => (
            <Table.Tr key={q.name} data-queue={q.name} data-nav>
              <Table.Td>
                <Anchor
                  component="button"
                  onClick={() => setParams(q.name === open ? {} : { open: q.name })}
                  aria-expanded={q.name === open}
                  data-open
                >
                  {q.name}
                </Anchor>
              </Table.Td>
              <Table.Td>
                {q.runningCount} / {q.maxConcurrency}
              </Table.Td>
              <Table.Td>
                {q.queuedCount > 0 ? <Badge variant="light" color="violet">{q.queuedCount}</Badge> : <Text c="dimmed">0</Text>}
              </Table.Td>
              <Table.Td>
                <Group gap={6}>
                  {q.running.map((r) => (
                    <Anchor key={r.dagRunId} component={Link} to={runLink(r)} ff="monospace" size="sm">
                      {r.dagRunId}
                    </Anchor>
                  ))}
                </Group>
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      {open && (
        <Stack gap="xs" data-testid="queue-items">
          <Title order={4}>Waiting in {open}</Title>
          {items !== null && items.length === 0 && <Text c="dimmed">No run waits in this queue.</Text>}
          <Table>
            <Table.Tbody>
              {(items ?? []).map((r, i) => (
                <Table.Tr key={r.dagRunId} data-item={r.dagRunId}>
                  <Table.Td w={40}>{i + 1}</Table.Td>
                  <Table.Td>
                    <Anchor component={Link} to={runLink(r)} ff="monospace" size="sm">
                      {r.dagRunId}
                    </Anchor>
                  </Table.Td>
                  <Table.Td>{r.triggerType ?? 'manual'}</Table.Td>
                  <Table.Td title={formatTime(r.queuedAt)}>queued {relativeTime(r.queuedAt)}</Table.Td>
                  <Table.Td>
                    <Button
                      size="xs"
                      variant="default"
                      loading={busy === r.dagRunId}
                      onClick={() => dequeue(r)}
                      aria-label={`Dequeue ${r.dagRunId}`}
                    >
                      Dequeue
                    </Button>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Stack>
      )}
    </Stack>
  )
}
