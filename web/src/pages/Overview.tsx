import {
  Alert,
  Anchor,
  Box,
  Button,
  Card,
  Group,
  SimpleGrid,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
  Tooltip,
} from '@mantine/core'
import { useCallback, useEffect, useMemo, useState } from 'react'
import { Link } from 'react-router-dom'
import { api, type RunSummary, type System } from '../api'
import { NextFires } from '../components/NextFires'
import { StatusBadge } from '../components/StatusBadge'
import { useLiveReload } from '../events'
import { durationSec, formatDuration, formatTime, relativeTime, statusColor } from '../format'
import { counts, ticks, timeline, viewWindow } from '../overview'
import { dayRange } from '../runs'
import { useUrlParams } from '../url'

const SPANS = [24, 12, 6, 3, 1]
const runLink = (r: RunSummary) => `/dags/${encodeURIComponent(r.name)}/runs/${encodeURIComponent(r.dagRunId)}`
const STUCK_RUNNING_SEC = 3600 // running longer than this, or
const STUCK_QUEUED_SEC = 600 // queued longer than this: worth a look

async function runsBetween(fromSec: number, toSec: number, status?: number): Promise<RunSummary[]> {
  const out: RunSummary[] = []
  let cursor: string | undefined
  for (let page = 0; page < 10; page++) {
    const q = new URLSearchParams({ limit: '500', fromDate: String(fromSec), toDate: String(toSec) })
    if (status !== undefined) q.set('status', String(status))
    if (cursor) q.set('cursor', cursor)
    const r = await api.allRuns(q.toString())
    out.push(...r.dagRuns)
    cursor = r.nextCursor
    if (!cursor) break
  }
  return out
}

/** The home page: what ran in the last 24 hours (or on a chosen day) across every DAG, what
 * failed and why, what runs or waits now (and for how long), and what fires next. */
export function Overview() {
  const [params, set] = useUrlParams()
  const day = params.get('day') ?? ''
  const span = Number(params.get('span') ?? 24) || 24
  const shift = Number(params.get('shift') ?? 0) || 0
  const [now, setNow] = useState(() => Date.now())
  const [runs, setRuns] = useState<RunSummary[] | null>(null)
  const [active, setActive] = useState<RunSummary[]>([])
  const [sys, setSys] = useState<System | null>(null)
  const [error, setError] = useState<string | null>(null)
  const whole = useMemo(() => viewWindow(day, 24, 0, now), [day, now])
  const view = useMemo(() => viewWindow(day, span, shift, now), [day, span, shift, now])

  const load = useCallback(() => {
    const t = Date.now()
    const w = viewWindow(day, 24, 0, t)
    Promise.all([
      runsBetween(Math.floor(w.start / 1000), Math.ceil(w.end / 1000)),
      api.allRuns('status=1&status=5&status=7&limit=200'),
      api.system(),
    ])
      .then(([r, a, s]) => {
        setNow(t)
        setRuns(r)
        setActive(a.dagRuns)
        setSys(s)
        setError(null)
      })
      .catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)))
  }, [day])
  useEffect(() => {
    load()
    const timer = setInterval(() => setNow(Date.now()), 30_000) // running bars grow
    return () => clearInterval(timer)
  }, [load])
  useLiveReload(load)

  const c = counts(runs ?? [])
  const failed = (runs ?? []).filter((r) => r.statusLabel === 'failed' || r.statusLabel === 'rejected')
  const rows = timeline(runs ?? [], view, now)
  const stuck = (r: RunSummary) =>
    r.statusLabel === 'running'
      ? (durationSec(r.startedAt, '', now) ?? 0) > STUCK_RUNNING_SEC
      : r.queuedAt !== undefined && (now - Date.parse(r.queuedAt)) / 1000 > STUCK_QUEUED_SEC
  const what = day ? `on ${new Date(whole.start).toLocaleDateString()}` : 'in the last 24 hours'
  const stat = (label: string, value: number, color: string, status?: string) => (
    <Card withBorder padding="sm" data-count={label.toLowerCase()}>
      <Text size="xs" c="dimmed" tt="uppercase" fw={600}>
        {label}
      </Text>
      {status && value > 0 ? (
        <Anchor component={Link} to={`/runs?status=${status}&from=${dayOf(whole.start)}&to=${dayOf(whole.end - 1)}`}>
          <Text fw={700} size="xl" c={color}>
            {value}
          </Text>
        </Anchor>
      ) : (
        <Text fw={700} size="xl" c={value > 0 ? color : undefined}>
          {value}
        </Text>
      )}
    </Card>
  )

  return (
    <Stack gap="md">
      <Group justify="space-between" align="end">
        <Title order={2}>Overview</Title>
        <Group gap="xs" align="end">
          <Button variant={day ? 'default' : 'filled'} onClick={() => set({ day: '', shift: '' })}>
            Last 24 h
          </Button>
          <Button variant="default" onClick={() => set({ day: dayRange('yesterday').from, shift: '' })}>
            Yesterday
          </Button>
          <TextInput
            type="date"
            aria-label="Show a day"
            value={day}
            onChange={(e) => set({ day: e.currentTarget.value, shift: '' })}
          />
        </Group>
      </Group>
      {error && (
        <Alert color="red" title="Cannot read the runs">
          {error}
        </Alert>
      )}
      {sys && sys.health !== 'healthy' && (
        <Alert color="red" title="dagd is degraded">
          {sys.reason} — see <Anchor component={Link} to="/system">System</Anchor>
        </Alert>
      )}
      <Text size="sm" c="dimmed" data-testid="overview-what">
        Runs started {what}
      </Text>
      <SimpleGrid cols={{ base: 2, sm: 5 }}>
        {stat('Runs', c.runs, 'blue')}
        {stat('Succeeded', c.succeeded, 'green', 'succeeded')}
        {stat('Failed', c.failed, 'red', 'failed')}
        {stat('Aborted', c.aborted, 'orange', 'aborted')}
        {stat('Active now', active.length, 'blue')}
      </SimpleGrid>
      <Card withBorder data-testid="attention">
        <Title order={4} mb="xs">
          Needs attention
        </Title>
        {failed.length === 0 && !active.some(stuck) && (
          <Text c="dimmed" size="sm">
            Nothing failed {what}, and nothing looks stuck.
          </Text>
        )}
        <Table>
          <Table.Tbody>
            {failed.map((r) => (
              <Attention key={`${r.name}/${r.dagRunId}`} run={r} mark="failed">
                <Table.Td c="dimmed" title={formatTime(r.startedAt)}>
                  {relativeTime(r.startedAt, now)}
                </Table.Td>
                <Table.Td c="red" style={{ whiteSpace: 'pre-wrap' }}>
                  {r.error ?? 'a step failed'}
                </Table.Td>
              </Attention>
            ))}
            {active.filter(stuck).map((r) => (
              <Attention key={`${r.name}/${r.dagRunId}`} run={r} mark="stuck">
                <Table.Td c="dimmed">
                  {r.statusLabel === 'running'
                    ? `running for ${formatDuration(durationSec(r.startedAt, '', now))}`
                    : `waiting since ${relativeTime(r.queuedAt, now)}`}
                </Table.Td>
                <Table.Td c="orange">may be stuck</Table.Td>
              </Attention>
            ))}
          </Table.Tbody>
        </Table>
      </Card>
      <Card withBorder data-testid="timeline">
        <Group justify="space-between" mb="xs">
          <Title order={4}>Timeline</Title>
          <Group gap={4}>
            <Button
              size="xs"
              variant="default"
              aria-label="Earlier"
              disabled={shift + span >= 24}
              onClick={() => set({ shift: String(Math.min(24 - span, shift + span / 2)) })}
            >
              ←
            </Button>
            <Button
              size="xs"
              variant="default"
              aria-label="Later"
              disabled={shift <= 0}
              onClick={() => set({ shift: String(Math.max(0, shift - span / 2)) })}
            >
              →
            </Button>
            <Button.Group>
              {SPANS.map((s) => (
                <Button
                  key={s}
                  size="xs"
                  variant={s === Math.min(24, span) ? 'filled' : 'default'}
                  onClick={() => set({ span: s === 24 ? '' : String(s), shift: String(Math.min(shift, 24 - s) || '') })}
                >
                  {s} h
                </Button>
              ))}
            </Button.Group>
          </Group>
        </Group>
        <Box pos="relative" ml={170} h={18} data-testid="ticks">
          {ticks(view).map((t) => (
            <Text
              key={t}
              size="xs"
              c="dimmed"
              pos="absolute"
              style={{ left: `${(100 * (t - view.start)) / (view.end - view.start)}%`, transform: 'translateX(-50%)' }}
            >
              {new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })}
            </Text>
          ))}
        </Box>
        {runs !== null && rows.length === 0 && (
          <Text c="dimmed" size="sm">
            No run in this window.
          </Text>
        )}
        {rows.map((row) => (
          <Group key={row.dag} gap={0} wrap="nowrap" h={24} data-row={row.dag}>
            <Anchor
              component={Link}
              to={`/dags/${encodeURIComponent(row.dag)}`}
              w={170}
              size="sm"
              truncate="end"
              pr="xs"
            >
              {row.dag}
            </Anchor>
            <Box pos="relative" h={16} style={{ flex: 1, background: 'var(--mantine-color-default-hover)', borderRadius: 3 }}>
              {row.bars.map((b) => (
                <Tooltip
                  key={b.run.dagRunId}
                  label={`${b.run.dagRunId} · ${b.run.statusLabel} · ${formatDuration(durationSec(b.run.startedAt, b.run.finishedAt, now))}`}
                >
                  <Link
                    to={runLink(b.run)}
                    data-bar={b.run.dagRunId}
                    data-status={b.run.statusLabel}
                    aria-label={`${b.run.name} ${b.run.dagRunId} ${b.run.statusLabel}`}
                    style={{
                      position: 'absolute',
                      top: 0,
                      bottom: 0,
                      left: `${100 * b.left}%`,
                      width: `max(3px, ${100 * b.width}%)`,
                      background: `var(--mantine-color-${statusColor(b.run.statusLabel)}-6)`,
                      borderRadius: 2,
                    }}
                  />
                </Tooltip>
              ))}
            </Box>
          </Group>
        ))}
      </Card>
      <Card withBorder data-testid="next-fires">
        <Title order={4} mb="xs">
          Next fires
        </Title>
        {sys && <NextFires fires={sys.next_fires} now={now} />}
      </Card>
    </Stack>
  )
}

/** A run that needs a look: its status, its DAG (a link to the run), then what is said of it. */
function Attention({ run, mark, children }: { run: RunSummary; mark: 'failed' | 'stuck'; children: React.ReactNode }) {
  return (
    <Table.Tr {...{ [`data-${mark}`]: run.dagRunId }} data-nav>
      <Table.Td>
        <StatusBadge label={run.statusLabel} />
      </Table.Td>
      <Table.Td>
        <Anchor component={Link} to={runLink(run)}>
          {run.name}
        </Anchor>
      </Table.Td>
      {children}
    </Table.Tr>
  )
}

function dayOf(ms: number): string {
  const d = new Date(ms)
  const p = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`
}
