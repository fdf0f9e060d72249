import { Alert, Anchor, Badge, Button, Group, Loader, Stack, Table, Tabs, Text, Title } from '@mantine/core'
import { useDisclosure } from '@mantine/hooks'
import { useCallback, useEffect, useMemo, useState } from 'react'
import { Link, useNavigate, useParams } from 'react-router-dom'
import { api, type DagDetail, type RunDetails, type RunSummary } from '../api'
import { Graph } from '../components/Graph'
import { Resources } from '../components/Resources'
import { RunForm } from '../components/RunForm'
import { SpecEditor } from '../components/SpecEditor'
import { StatusBadge } from '../components/StatusBadge'
import { throttle, useRunEvents } from '../events'
import { durationSec, formatDuration, formatTime } from '../format'

const HISTORY_PAGE = 20

function History({ name, version }: { name: string; version: number }) {
  const [runs, setRuns] = useState<RunSummary[]>([])
  const [cursors, setCursors] = useState<string[]>([]) // cursor of each page after the first
  const [page, setPage] = useState(0)
  const [next, setNext] = useState<string | undefined>()

  useEffect(() => {
    api.runs(name, HISTORY_PAGE, page === 0 ? undefined : cursors[page - 1]).then((r) => {
      setRuns(r.dagRuns)
      setNext(r.nextCursor)
    })
  }, [name, page, cursors, version])

  if (runs.length === 0 && page === 0) return <Text c="dimmed">No runs yet.</Text>
  return (
    <Stack>
      <Table striped highlightOnHover data-testid="history">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Status</Table.Th>
            <Table.Th>Trigger</Table.Th>
            <Table.Th>Started</Table.Th>
            <Table.Th>Duration</Table.Th>
            <Table.Th visibleFrom="sm">Run id</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {runs.map((r) => (
            <Table.Tr key={r.dagRunId}>
              <Table.Td>
                <Anchor component={Link} to={`/dags/${encodeURIComponent(name)}/runs/${encodeURIComponent(r.dagRunId)}`}>
                  <StatusBadge label={r.statusLabel} />
                </Anchor>
              </Table.Td>
              <Table.Td>{r.triggerType}</Table.Td>
              <Table.Td>{formatTime(r.startedAt)}</Table.Td>
              <Table.Td>{formatDuration(durationSec(r.startedAt, r.finishedAt))}</Table.Td>
              <Table.Td visibleFrom="sm">
                <Text size="xs" ff="monospace">
                  {r.dagRunId}
                </Text>
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      <Group>
        <Button variant="default" size="xs" disabled={page === 0} onClick={() => setPage(page - 1)}>
          Newer
        </Button>
        <Text size="sm">page {page + 1}</Text>
        <Button
          variant="default"
          size="xs"
          disabled={!next}
          onClick={() => {
            if (!next) return
            setCursors((c) => [...c.slice(0, page), next])
            setPage(page + 1)
          }}
        >
          Older
        </Button>
      </Group>
    </Stack>
  )
}

export function DagPage() {
  const { name = '' } = useParams()
  const navigate = useNavigate()
  const [detail, setDetail] = useState<DagDetail | null>(null)
  const [error, setError] = useState('')
  const [live, setLive] = useState<{ runId: string; steps: Record<string, string> }>({ runId: '', steps: {} })
  const [version, setVersion] = useState(0)
  const [formOpen, form] = useDisclosure(false)

  const load = useCallback(() => {
    api
      .dag(name)
      .then((d) => {
        setDetail(d)
        setError('')
      })
      .catch((e: Error) => setError(e.message))
    setVersion((v) => v + 1)
  }, [name])
  useEffect(load, [load])
  const refresh = useMemo(() => throttle(load, 300), [load])

  const latest = detail?.latestDAGRun as RunDetails | undefined
  useRunEvents((e) => {
    if (e.type === 'Reconnected') return refresh()
    if (e.dag !== name) return
    if (e.type === 'StepChanged' && e.step && e.status) {
      const step = e.step
      const status = e.status
      setLive((l) =>
        l.runId === e.run_id
          ? { runId: l.runId, steps: { ...l.steps, [step]: status } }
          : { runId: e.run_id, steps: { [step]: status } },
      )
      if (e.run_id !== latest?.dagRunId) refresh()
    } else refresh()
  })

  const statuses = useMemo(() => {
    const out: Record<string, string> = {}
    for (const n of latest?.nodes ?? []) out[n.step.name] = n.statusLabel
    if (!live.runId) return out
    return live.runId === latest?.dagRunId ? { ...out, ...live.steps } : live.steps // a newer run than the page's
  }, [latest, live])

  if (error) return <Alert color="red">{error}</Alert>
  if (!detail) return <Loader />
  const dag = detail.dag
  const running = latest?.statusLabel === 'running'
  return (
    <Stack>
      <Group justify="space-between" align="start">
        <div>
          <Title order={2}>{name}</Title>
          {dag?.description && <Text c="dimmed">{dag.description}</Text>}
          <Group gap={6} mt={4}>
            {(dag?.tags ?? []).map((t) => (
              <Badge key={t} variant="outline" size="sm">
                {t}
              </Badge>
            ))}
            {(dag?.schedule ?? []).map((s) => (
              <Badge key={s.expression} variant="light" color="gray" size="sm" ff="monospace">
                {s.expression}
              </Badge>
            ))}
            {detail.suspended && <Badge variant="light" color="yellow">suspended</Badge>}
          </Group>
        </div>
        <Group>
          {running && latest && (
            <Button
              color="red"
              variant="light"
              onClick={() => api.stop(name, latest.dagRunId).then(load, (e: Error) => setError(e.message))}
            >
              Stop
            </Button>
          )}
          <Button onClick={form.open} disabled={!dag}>
            Run now
          </Button>
        </Group>
      </Group>
      {detail.errors.length > 0 && (
        <Alert color="red" title="This DAG file does not load">
          <Text ff="monospace" size="sm" style={{ whiteSpace: 'pre-wrap' }}>
            {detail.errors.join('\n')}
          </Text>
        </Alert>
      )}
      {latest && latest.statusLabel !== 'not_started' && (
        <Group gap="xs" data-testid="latest-run">
          <Text size="sm">Latest run</Text>
          <Anchor component={Link} to={`/dags/${encodeURIComponent(name)}/runs/${encodeURIComponent(latest.dagRunId)}`}>
            <StatusBadge label={latest.statusLabel} />
          </Anchor>
          <Text size="sm" c="dimmed">
            {formatTime(latest.startedAt)} · {formatDuration(durationSec(latest.startedAt, latest.finishedAt))}
          </Text>
        </Group>
      )}
      <Tabs defaultValue="graph" keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="graph">Graph</Tabs.Tab>
          <Tabs.Tab value="history">History</Tabs.Tab>
          <Tabs.Tab value="resources">Resources</Tabs.Tab>
          <Tabs.Tab value="spec">Spec</Tabs.Tab>
          <Tabs.Tab value="info">Details</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="graph" pt="md">
          {dag && (
            <Graph
              steps={dag.steps}
              statuses={statuses}
              onSelect={(step) =>
                latest &&
                latest.statusLabel !== 'not_started' &&
                navigate(`/dags/${encodeURIComponent(name)}/runs/${encodeURIComponent(latest.dagRunId)}?step=${encodeURIComponent(step)}`)
              }
            />
          )}
        </Tabs.Panel>
        <Tabs.Panel value="history" pt="md">
          <History name={name} version={version} />
        </Tabs.Panel>
        <Tabs.Panel value="resources" pt="md">
          <Resources name={name} steps={(dag?.steps ?? []).map((s) => s.name)} version={version} />
        </Tabs.Panel>
        <Tabs.Panel value="spec" pt="md">
          <SpecEditor name={name} onSaved={load} />
        </Tabs.Panel>
        <Tabs.Panel value="info" pt="md">
          {dag && (
            <Table variant="vertical" withTableBorder maw={640}>
              <Table.Tbody>
                <Table.Tr>
                  <Table.Th w={200}>Type</Table.Th>
                  <Table.Td>{dag.type}</Table.Td>
                </Table.Tr>
                <Table.Tr>
                  <Table.Th>Group</Table.Th>
                  <Table.Td>{dag.group || '—'}</Table.Td>
                </Table.Tr>
                <Table.Tr>
                  <Table.Th>Params</Table.Th>
                  <Table.Td ff="monospace">{dag.defaultParams || '—'}</Table.Td>
                </Table.Tr>
                <Table.Tr>
                  <Table.Th>Max active runs / steps</Table.Th>
                  <Table.Td>
                    {dag.maxActiveRuns} / {dag.maxActiveSteps || 'unlimited'}
                  </Table.Td>
                </Table.Tr>
                <Table.Tr>
                  <Table.Th>Steps</Table.Th>
                  <Table.Td>{dag.steps.length}</Table.Td>
                </Table.Tr>
              </Table.Tbody>
            </Table>
          )}
        </Tabs.Panel>
      </Tabs>
      <RunForm
        opened={formOpen}
        onClose={form.close}
        defs={dag?.paramDefs ?? []}
        onRun={async (params) => {
          const { dagRunId } = await api.start(name, params)
          setLive({ runId: dagRunId, steps: {} })
          load()
        }}
      />
    </Stack>
  )
}
