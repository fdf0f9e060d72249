import {
  Alert,
  Anchor,
  Button,
  Checkbox,
  Group,
  List,
  Modal,
  MultiSelect,
  Progress,
  SegmentedControl,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core'
import { Fragment, useCallback, useEffect, useMemo, useState } from 'react'
import { Link } from 'react-router-dom'
import { api, ApiError, type RunSummary } from '../api'
import { StatusBadge } from '../components/StatusBadge'
import { useLiveReload } from '../events'
import { durationSec, formatDuration, formatTime } from '../format'
import { BULK_ACTIONS, type BulkAction, dayRange, groupRuns, RUN_STATUS_CODES, runsQuery } from '../runs'
import { useUrlParams } from '../url'

const PAGE = 50

type Outcome = { run: RunSummary; ok: boolean; message: string }

/** Every run of every DAG: filters in the URL (a view can be shared, the back button restores
 * it), cursor paging, and bulk retry / stop / dequeue / delete with a result per run. */
export function RunsPage() {
  const [params, set] = useUrlParams(['cursor']) // a new filter starts at the newest run
  const [runs, setRuns] = useState<RunSummary[] | null>(null)
  const [next, setNext] = useState<string | undefined>()
  const [error, setError] = useState<string | null>(null)
  const [selected, setSelected] = useState<Set<string>>(new Set())
  const [asking, setAsking] = useState<BulkAction | null>(null)
  const [progress, setProgress] = useState<{ done: number; total: number } | null>(null)
  const [outcomes, setOutcomes] = useState<Outcome[] | null>(null)
  const [nameDraft, setNameDraft] = useState(params.get('name') ?? '')
  const [idDraft, setIdDraft] = useState(params.get('runId') ?? '')
  useEffect(() => {
    // the back button (or a link) changed the URL: the text fields show its filters again
    setNameDraft(params.get('name') ?? '')
    setIdDraft(params.get('runId') ?? '')
  }, [params])
  const commit = (key: 'name' | 'runId', draft: string) => {
    if (draft.trim() !== (params.get(key) ?? '')) set({ [key]: draft.trim() })
  }

  const grouped = params.get('view') === 'grouped'
  const statuses = useMemo(() => (params.get('status') ?? '').split(',').filter(Boolean), [params])
  const labels = useMemo(() => (params.get('labels') ?? '').split(',').filter(Boolean), [params])
  const [known, setKnown] = useState<string[]>([])
  useEffect(() => {
    api
      .labels()
      .then(setKnown)
      .catch(() => setKnown([]))
  }, [])
  const query = useMemo(
    () =>
      runsQuery(
        {
          name: params.get('name') ?? '',
          runId: params.get('runId') ?? '',
          statuses,
          labels,
          from: params.get('from') ?? '',
          to: params.get('to') ?? '',
          cursor: params.get('cursor') ?? '',
        },
        PAGE,
      ),
    [params, statuses, labels],
  )

  const load = useCallback(() => {
    api
      .allRuns(query)
      .then((r) => {
        setRuns(r.dagRuns)
        setNext(r.nextCursor)
        setError(null)
      })
      .catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)))
  }, [query])

  useEffect(() => {
    setSelected(new Set())
    load()
  }, [load])

  // live: a run started, ended or was queued anywhere: read the page again
  useLiveReload(load)


  const key = (r: RunSummary) => `${r.name}\u0000${r.dagRunId}`
  const chosen = (runs ?? []).filter((r) => selected.has(key(r)))
  const all = runs !== null && runs.length > 0 && chosen.length === runs.length

  const runBulk = async (action: BulkAction) => {
    setAsking(null)
    const todo = chosen
    setProgress({ done: 0, total: todo.length })
    const results: Outcome[] = []
    for (const run of todo) {
      try {
        await BULK_ACTIONS[action].call(run.name, run.dagRunId)
        results.push({ run, ok: true, message: BULK_ACTIONS[action].done })
      } catch (e) {
        results.push({ run, ok: false, message: e instanceof ApiError || e instanceof Error ? e.message : String(e) })
      }
      setProgress({ done: results.length, total: todo.length })
    }
    setOutcomes(results)
    setProgress(null)
    load()
  }

  const row = (r: RunSummary) => (
    <Table.Tr key={key(r)} data-run={r.dagRunId} data-nav>
      <Table.Td>
        <Checkbox
          aria-label={`Select run ${r.dagRunId} of ${r.name}`}
          checked={selected.has(key(r))}
          onChange={() => {
            const s = new Set(selected)
            if (s.has(key(r))) s.delete(key(r))
            else s.add(key(r))
            setSelected(s)
          }}
        />
      </Table.Td>
      <Table.Td>
        <Anchor component={Link} to={`/dags/${encodeURIComponent(r.name)}`}>
          {r.name}
        </Anchor>
      </Table.Td>
      <Table.Td>
        <Anchor
          component={Link}
          to={`/dags/${encodeURIComponent(r.name)}/runs/${encodeURIComponent(r.dagRunId)}`}
          data-open
          ff="monospace"
          size="sm"
        >
          {r.dagRunId}
        </Anchor>
      </Table.Td>
      <Table.Td>
        <StatusBadge label={r.statusLabel} />
      </Table.Td>
      <Table.Td>{r.triggerType ?? 'manual'}</Table.Td>
      <Table.Td>{formatTime(r.queuedAt)}</Table.Td>
      <Table.Td>{formatTime(r.startedAt)}</Table.Td>
      <Table.Td>{formatDuration(durationSec(r.startedAt, r.finishedAt))}</Table.Td>
    </Table.Tr>
  )
  const today = dayRange('today')
  return (
    <Stack gap="md">
      <Group justify="space-between">
        <Group gap="md">
          <Title order={2}>Runs</Title>
          <SegmentedControl
            aria-label="Show runs"
            size="xs"
            data={[
              { value: 'flat', label: 'Flat' },
              { value: 'grouped', label: 'By DAG' },
            ]}
            value={grouped ? 'grouped' : 'flat'}
            onChange={(v) => set({ view: v === 'grouped' ? 'grouped' : '', cursor: params.get('cursor') ?? '' })}
          />
        </Group>
        <Text c="dimmed" size="sm" data-testid="runs-count">
          {runs === null ? 'loading…' : `${runs.length} shown${next ? ', more below' : ''}`}
        </Text>
      </Group>
      <Group align="end" gap="sm" wrap="wrap">
        <TextInput
          label="DAG"
          aria-label="Filter by DAG name"
          data-search
          placeholder="name"
          value={nameDraft}
          onChange={(e) => setNameDraft(e.currentTarget.value)}
          onBlur={() => commit('name', nameDraft)}
          onKeyDown={(e) => e.key === 'Enter' && commit('name', nameDraft)}
        />
        <TextInput
          label="Run id"
          aria-label="Filter by run id"
          placeholder="run id"
          value={idDraft}
          onChange={(e) => setIdDraft(e.currentTarget.value)}
          onBlur={() => commit('runId', idDraft)}
          onKeyDown={(e) => e.key === 'Enter' && commit('runId', idDraft)}
        />
        <MultiSelect
          label="Status"
          aria-label="Filter by status"
          placeholder={statuses.length ? undefined : 'any'}
          data={Object.keys(RUN_STATUS_CODES).map((s) => ({ value: s, label: s.replace(/_/g, ' ') }))}
          value={statuses}
          onChange={(v) => set({ status: v.join(',') })}
          clearable
          w={260}
        />
        <MultiSelect
          label="Labels"
          aria-label="Filter by DAG labels"
          placeholder={labels.length ? undefined : 'any'}
          data={[...new Set([...known, ...labels])]}
          value={labels}
          onChange={(v) => set({ labels: v.join(',') })}
          clearable
          searchable
          w={220}
        />
        <TextInput
          label="From"
          type="date"
          aria-label="Started on or after"
          value={params.get('from') ?? ''}
          onChange={(e) => set({ from: e.currentTarget.value })}
        />
        <TextInput
          label="To"
          type="date"
          aria-label="Started on or before"
          value={params.get('to') ?? ''}
          onChange={(e) => set({ to: e.currentTarget.value })}
        />
        <Button.Group>
          <Button variant="default" onClick={() => set({ from: today.from, to: today.to })}>
            Today
          </Button>
          <Button variant="default" onClick={() => set(dayRange('yesterday'))}>
            Yesterday
          </Button>
          <Button variant="default" onClick={() => set(dayRange('week'))}>
            7 days
          </Button>
          <Button variant="default" onClick={() => set({ from: '', to: '' })}>
            Any time
          </Button>
        </Button.Group>
      </Group>
      {error && (
        <Alert color="red" title="Cannot list runs">
          {error}
        </Alert>
      )}
      <Group gap="xs" data-testid="bulk-actions">
        <Text size="sm" c="dimmed">
          {chosen.length} selected
        </Text>
        {(Object.keys(BULK_ACTIONS) as BulkAction[]).map((a) => (
          <Button
            key={a}
            size="xs"
            variant={a === 'delete' ? 'light' : 'default'}
            color={a === 'delete' ? 'red' : undefined}
            disabled={chosen.length === 0 || progress !== null}
            onClick={() => setAsking(a)}
          >
            {BULK_ACTIONS[a].label}
          </Button>
        ))}
      </Group>
      {progress && (
        <Progress value={(100 * progress.done) / Math.max(1, progress.total)} aria-label="Bulk action progress" />
      )}
      <Table striped highlightOnHover data-testid="runs-table">
        <Table.Thead>
          <Table.Tr>
            <Table.Th w={36}>
              <Checkbox
                aria-label="Select every run shown"
                checked={all}
                indeterminate={chosen.length > 0 && !all}
                onChange={() => setSelected(all ? new Set() : new Set((runs ?? []).map(key)))}
              />
            </Table.Th>
            <Table.Th>DAG</Table.Th>
            <Table.Th>Run</Table.Th>
            <Table.Th>Status</Table.Th>
            <Table.Th>Trigger</Table.Th>
            <Table.Th>Queued</Table.Th>
            <Table.Th>Started</Table.Th>
            <Table.Th>Duration</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {(grouped ? groupRuns(runs ?? []) : [{ dag: '', runs: runs ?? [] }]).map((g) => (
            <Fragment key={g.dag || 'all'}>
              {g.dag && (
                <Table.Tr data-group={g.dag}>
                  <Table.Td colSpan={8}>
                    <Text fw={600} size="sm">
                      {g.dag} · {g.runs.length} {g.runs.length === 1 ? 'run' : 'runs'}
                    </Text>
                  </Table.Td>
                </Table.Tr>
              )}
              {g.runs.map(row)}
            </Fragment>
          ))}
        </Table.Tbody>
      </Table>
      {runs !== null && runs.length === 0 && <Text c="dimmed">No run matches these filters.</Text>}
      <Group>
        <Button variant="default" disabled={!params.get('cursor')} onClick={() => set({ cursor: '' })}>
          Newest
        </Button>
        <Button variant="default" disabled={!next} onClick={() => next && set({ cursor: next })}>
          Older
        </Button>
      </Group>
      <Modal
        opened={asking !== null}
        onClose={() => setAsking(null)}
        title={asking ? `${BULK_ACTIONS[asking].label} ${chosen.length} runs?` : ''}
      >
        {asking && (
          <Stack>
            <Text size="sm">{BULK_ACTIONS[asking].explain}</Text>
            <List size="sm" spacing={2}>
              {chosen.slice(0, 10).map((r) => (
                <List.Item key={key(r)}>
                  {r.name} / {r.dagRunId}
                </List.Item>
              ))}
              {chosen.length > 10 && <List.Item>… and {chosen.length - 10} more</List.Item>}
            </List>
            <Group justify="end">
              <Button variant="default" onClick={() => setAsking(null)}>
                Cancel
              </Button>
              <Button color={asking === 'delete' ? 'red' : undefined} onClick={() => runBulk(asking)}>
                {BULK_ACTIONS[asking].label} {chosen.length}
              </Button>
            </Group>
          </Stack>
        )}
      </Modal>
      <Modal opened={outcomes !== null} onClose={() => setOutcomes(null)} title="Done" size="lg">
        <Stack data-testid="bulk-outcomes">
          <Text size="sm">
            {(outcomes ?? []).filter((o) => o.ok).length} of {(outcomes ?? []).length} succeeded
          </Text>
          <Table>
            <Table.Tbody>
              {(outcomes ?? []).map((o) => (
                <Table.Tr key={key(o.run)} data-outcome={o.ok ? 'ok' : 'failed'}>
                  <Table.Td>
                    {o.run.name} / {o.run.dagRunId}
                  </Table.Td>
                  <Table.Td c={o.ok ? 'green' : 'red'}>{o.message}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Stack>
      </Modal>
    </Stack>
  )
}
