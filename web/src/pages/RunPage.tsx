import { Alert, Anchor, Button, Card, Group, Loader, ScrollArea, Stack, Table, Text, Title } from '@mantine/core'
import { useCallback, useEffect, useMemo, useState } from 'react'
import { Link, useNavigate, useParams, useSearchParams } from 'react-router-dom'
import { api, type Node, type RunDetails } from '../api'
import { Gantt } from '../components/Gantt'
import { LogView } from '../components/LogView'
import { StatusBadge } from '../components/StatusBadge'
import { throttle, useRunEvents } from '../events'
import { durationSec, formatDuration, formatMemory, formatTime } from '../format'
import { type Measure, ratioText, type RunUse, series, usualRatio } from '../resources'

const LIVE = new Set(['running', 'queued', 'not_started', 'retrying', 'waiting'])

export function RunPage() {
  const { name = '', runId = '' } = useParams()
  const [search, setSearch] = useSearchParams()
  const navigate = useNavigate()
  const [run, setRun] = useState<RunDetails | null>(null)
  const [error, setError] = useState('')
  const [now, setNow] = useState(Date.now())
  const [history, setHistory] = useState<RunUse[]>([]) // the DAG's last runs: what "usual" means
  useEffect(() => {
    api
      .resources(name, 21)
      .then((r) => setHistory(r.runs))
      .catch(() => setHistory([]))
  }, [name, runId])

  const load = useCallback(() => {
    api
      .run(name, runId)
      .then((r) => {
        setRun(r)
        setError('')
      })
      .catch((e: Error) => setError(e.message))
  }, [name, runId])
  useEffect(load, [load])
  const refresh = useMemo(() => throttle(load, 250), [load])
  useRunEvents((e) => {
    if (e.run_id === runId || e.type === 'Reconnected' || (e.type === 'RunStarted' && run?.subRuns !== undefined)) refresh()
  })

  const running = run ? LIVE.has(run.statusLabel) : false
  useEffect(() => {
    if (!running) return
    const t = setInterval(() => setNow(Date.now()), 1000) // durations tick locally; no API polling
    return () => clearInterval(t)
  }, [running])

  const steps: Node[] = useMemo(() => {
    if (!run) return []
    const handlers = [run.onSuccess, run.onFailure, run.onAbort, run.onExit].filter((n): n is Node => !!n)
    return [...run.nodes, ...handlers]
  }, [run])
  // a failed run opens on its failed step (its log says why), a running one on its running step
  const selected =
    search.get('step') ??
    steps.find((s) => s.statusLabel === 'failed')?.step.name ??
    steps.find((s) => s.statusLabel === 'running')?.step.name ??
    steps[0]?.step.name
  const usual = (step: string, measure: Measure, value: number | null) =>
    usualRatio(value, series(history.filter((r) => r.dagRunId !== runId), step, measure))

  if (error) return <Alert color="red">{error}</Alert>
  if (!run) return <Loader />
  const selectedNode = steps.find((s) => s.step.name === selected)
  return (
    <Stack>
      <Group justify="space-between" align="start">
        <div>
          <Group gap="xs">
            <Anchor component={Link} to={`/dags/${encodeURIComponent(name)}`}>
              <Title order={2}>{name}</Title>
            </Anchor>
            <StatusBadge label={run.statusLabel} />
          </Group>
          <Text size="sm" c="dimmed" ff="monospace">
            {run.dagRunId}
          </Text>
          <Text size="sm">
            {run.triggerType} · started {formatTime(run.startedAt)} · {formatDuration(durationSec(run.startedAt, run.finishedAt, now))}
          </Text>
          {run.error && (
            <Text size="sm" c="red">
              {run.error}
            </Text>
          )}
        </div>
        <Group>
          {running ? (
            <Button color="red" onClick={() => api.stop(name, runId).then(load, (e: Error) => setError(e.message))}>
              Stop
            </Button>
          ) : (
            <Button
              variant="light"
              onClick={() => api.retry(name, runId).then(() => navigate(`/dags/${encodeURIComponent(name)}`), (e: Error) => setError(e.message))}
            >
              Retry
            </Button>
          )}
        </Group>
      </Group>
      <Card withBorder>
        <Text fw={600} mb="xs">
          Timeline
        </Text>
        <Gantt nodes={steps} now={now} />
      </Card>
      <ScrollArea type="auto">
        <Table highlightOnHover miw={720} data-testid="steps">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Step</Table.Th>
              <Table.Th>Status</Table.Th>
              <Table.Th>Attempts</Table.Th>
              <Table.Th>Started</Table.Th>
              <Table.Th>Duration</Table.Th>
              <Table.Th>Exit</Table.Th>
              <Table.Th>CPU</Table.Th>
              <Table.Th>Peak memory</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {steps.map((s) => (
              <Table.Tr
                key={s.step.name}
                data-step={s.step.name}
                onClick={() => setSearch({ step: s.step.name }, { replace: true })}
                style={{ cursor: 'pointer' }}
                bg={s.step.name === selected ? 'var(--mantine-primary-color-light)' : undefined}
              >
                <Table.Td>
                  <Text size="sm" fw={500}>
                    {s.step.name}
                  </Text>
                  {s.error && (
                    <Text size="xs" c="red" lineClamp={2}>
                      {s.error}
                    </Text>
                  )}
                </Table.Td>
                <Table.Td>
                  <StatusBadge label={s.statusLabel} />
                </Table.Td>
                <Table.Td>{s.doneCount || (s.startedAt ? 1 : 0)}</Table.Td>
                <Table.Td>{formatTime(s.startedAt)}</Table.Td>
                <Table.Td>
                  {formatDuration(durationSec(s.startedAt, s.finishedAt, now))}
                  <Usual ratio={s.finishedAt ? usual(s.step.name, 'durationSec', durationSec(s.startedAt, s.finishedAt, now)) : null} />
                </Table.Td>
                <Table.Td>{s.exitCode ?? '—'}</Table.Td>
                <Table.Td>{s.startedAt ? formatDuration((s.cpuUserSec ?? 0) + (s.cpuSysSec ?? 0)) : '—'}</Table.Td>
                <Table.Td title={s.memorySource ? `from ${s.memorySource}` : 'not measured on this host'}>
                  {s.memorySource ? formatMemory(s.maxRssKb) : '—'}
                  <Usual ratio={s.memorySource ? usual(s.step.name, 'maxRssKb', s.maxRssKb) : null} />
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </ScrollArea>
      {(run.subRuns ?? []).length > 0 && (
        <Card withBorder>
          <Text fw={600} mb="xs">
            Sub-DAG runs
          </Text>
          {(run.subRuns ?? []).map((c) => (
            <Group key={c.dagRunId} gap="xs">
              <StatusBadge label={c.statusLabel} />
              <Anchor component={Link} to={`/dags/${encodeURIComponent(c.name)}/runs/${encodeURIComponent(c.dagRunId)}`}>
                {c.name} · {c.dagRunId}
              </Anchor>
            </Group>
          ))}
        </Card>
      )}
      {selectedNode && (
        <Card withBorder>
          <LogView dag={name} runId={runId} step={selectedNode.step.name} running={LIVE.has(selectedNode.statusLabel) && selectedNode.statusLabel !== 'not_started'} />
        </Card>
      )}
    </Stack>
  )
}

/** "3.1× its usual" under a figure that strays from the median of the DAG's last 20 runs. */
function Usual({ ratio }: { ratio: number | null }) {
  const text = ratioText(ratio)
  if (!text) return null
  return (
    <Text size="xs" c={ratio !== null && ratio >= 2 ? 'orange' : 'teal'} data-usual title="against the median of the last 20 runs">
      {text}
    </Text>
  )
}
