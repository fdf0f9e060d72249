import { Alert, Badge, Card, Group, SimpleGrid, Stack, Table, Text, Title } from '@mantine/core'
import { useCallback, useEffect, useState } from 'react'
import { api, type System, type Worker } from '../api'
import { NextFires } from '../components/NextFires'
import { useLiveReload } from '../events'
import { formatDuration, formatMemory, relativeTime } from '../format'

function Fact({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <Group justify="space-between" gap="xs" wrap="nowrap">
      <Text size="sm" c="dimmed">
        {label}
      </Text>
      <Text size="sm" ta="right" style={{ overflowWrap: 'anywhere' }}>
        {children}
      </Text>
    </Group>
  )
}

/** dagd itself: health, version and uptime, its store and its size, the scheduler's next fires,
 * DAG files that do not load, and the nodes of the store. */
export function SystemPage() {
  const [sys, setSys] = useState<System | null>(null)
  const [workers, setWorkers] = useState<Worker[]>([])
  const [error, setError] = useState<string | null>(null)
  const load = useCallback(() => {
    Promise.all([api.system(), api.workers()])
      .then(([s, w]) => {
        setSys(s)
        setWorkers(w.workers)
        setError(null)
      })
      .catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)))
  }, [])
  useEffect(() => {
    load()
    const timer = setInterval(load, 15_000) // uptime, heartbeats and sizes change without events
    return () => clearInterval(timer)
  }, [load])
  useLiveReload(load, 1000)

  if (error) return <Alert color="red" title="Cannot read dagd's state">{error}</Alert>
  if (!sys) return <Text c="dimmed">loading…</Text>
  return (
    <Stack gap="md">
      <Group justify="space-between">
        <Title order={2}>System</Title>
        <Badge size="lg" variant="light" color={sys.health === 'healthy' ? 'green' : 'red'} data-testid="health">
          {sys.health}
        </Badge>
      </Group>
      {sys.reason && (
        <Alert color="red" title="dagd is degraded">
          {sys.reason}
        </Alert>
      )}
      <SimpleGrid cols={{ base: 1, md: 3 }}>
        <Card withBorder data-testid="daemon">
          <Title order={4} mb="xs">
            Daemon
          </Title>
          <Fact label="Version">{sys.version}</Fact>
          <Fact label="Up for">{formatDuration(sys.uptime_sec)}</Fact>
          <Fact label="Process">pid {sys.pid}</Fact>
          <Fact label="Runs">
            {sys.running} running of {sys.max_concurrent_runs} at once · {sys.queued} queued
          </Fact>
          <Fact label="Containment">{sys.containment}</Fact>
        </Card>
        <Card withBorder data-testid="store">
          <Title order={4} mb="xs">
            History store
          </Title>
          <Fact label="Kind">{sys.store.kind === 'postgresql' ? 'PostgreSQL' : 'SQLite'}</Fact>
          <Fact label="Where">{sys.store.where}</Fact>
          <Fact label="Size">{formatMemory(Math.round(sys.store.size_bytes / 1024))}</Fact>
          <Fact label="State folder">{sys.state_dir}</Fact>
        </Card>
        <Card withBorder data-testid="scheduler">
          <Title order={4} mb="xs">
            Scheduler
          </Title>
          <Fact label="DAGs">
            {sys.dags} in {sys.dags_folder}
          </Fact>
          <Fact label="On a schedule">{sys.scheduled}</Fact>
          <Fact label="Suspended">{sys.suspended.length ? sys.suspended.join(', ') : 'none'}</Fact>
        </Card>
      </SimpleGrid>
      <Title order={4}>Next fires</Title>
      <NextFires fires={sys.next_fires} />
      <Title order={4}>DAG files that do not load</Title>
      {sys.problems.length === 0 ? (
        <Text c="dimmed">Every DAG file loads.</Text>
      ) : (
        <Table data-testid="problems">
          <Table.Tbody>
            {sys.problems.map((p) => (
              <Table.Tr key={p.file} data-problem={p.file}>
                <Table.Td ff="monospace">{p.file}</Table.Td>
                <Table.Td c="red" style={{ whiteSpace: 'pre-wrap' }}>
                  {p.error}
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
      <Title order={4}>Nodes</Title>
      <Table data-testid="nodes">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Node</Table.Th>
            <Table.Th>Labels</Table.Th>
            <Table.Th>Running</Table.Th>
            <Table.Th>Last heartbeat</Table.Th>
            <Table.Th>Health</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {workers.map((w) => (
            <Table.Tr key={w.id} data-node={w.id}>
              <Table.Td>{w.id}</Table.Td>
              <Table.Td>
                {Object.entries(w.labels)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(', ') || '—'}
              </Table.Td>
              <Table.Td>
                {w.runningTasks.length} / {w.totalPollers}
              </Table.Td>
              <Table.Td>{relativeTime(w.lastHeartbeatAt)}</Table.Td>
              <Table.Td>
                <Badge variant="light" color={w.healthStatus === 'healthy' ? 'green' : w.healthStatus === 'warning' ? 'yellow' : 'red'}>
                  {w.healthStatus}
                </Badge>
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Stack>
  )
}
