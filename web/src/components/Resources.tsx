import { Alert, Group, Select, Table, Text } from '@mantine/core'
import { useEffect, useState } from 'react'
import { useNavigate } from 'react-router-dom'
import { api } from '../api'
import { formatDuration, formatMemory } from '../format'
import { type Measure, median, outliers, type RunUse, series } from '../resources'

const MEASURES: { key: Measure; label: string; fmt: (x: number) => string; floor: number }[] = [
  { key: 'durationSec', label: 'Duration', fmt: (x) => formatDuration(x), floor: 0.5 },
  { key: 'cpuSec', label: 'CPU', fmt: (x) => formatDuration(x), floor: 0.5 },
  { key: 'maxRssKb', label: 'Peak memory', fmt: (x) => formatMemory(Math.round(x)), floor: 10 * 1024 },
]

/** A line of one measure across runs (oldest left); the runs that stand out as red dots, each a
 * link to its run. */
function Spark({
  runs,
  values,
  fmt,
  floor,
  dag,
  label,
}: {
  runs: RunUse[]
  values: (number | null)[]
  fmt: (x: number) => string
  floor: number
  dag: string
  label: string
}) {
  const navigate = useNavigate()
  const known = values.filter((x): x is number => x !== null)
  if (known.length === 0) return <Text c="dimmed">—</Text>
  const W = 220
  const H = 36
  const max = Math.max(...known) || 1
  const x = (i: number) => (values.length === 1 ? W / 2 : (i * (W - 8)) / (values.length - 1) + 4)
  const y = (v: number) => H - 4 - (v / max) * (H - 8)
  const points = values.map((v, i) => (v === null ? null : `${x(i)},${y(v)}`)).filter(Boolean)
  const odd = outliers(values, floor)
  const m = median(known)
  return (
    <Group gap="xs" wrap="nowrap">
      <svg width={W} height={H} role="img" aria-label={`${label}: median ${m === null ? '—' : fmt(m)}, ${odd.size} outliers`}>
        <polyline points={points.join(' ')} fill="none" stroke="var(--mantine-color-blue-6)" strokeWidth={1.5} />
        {values.map((v, i) =>
          v !== null && odd.has(i) ? (
            <circle
              key={runs[i].dagRunId}
              cx={x(i)}
              cy={y(v)}
              r={4}
              fill="var(--mantine-color-red-6)"
              data-outlier={runs[i].dagRunId}
              style={{ cursor: 'pointer' }}
              onClick={() => navigate(`/dags/${encodeURIComponent(dag)}/runs/${encodeURIComponent(runs[i].dagRunId)}`)}
            >
              <title>{`${runs[i].dagRunId}: ${fmt(v)} (median ${m === null ? '—' : fmt(m)})`}</title>
            </circle>
          ) : null,
        )}
      </svg>
      <Text size="xs" c="dimmed" w={90}>
        median {m === null ? '—' : fmt(m)}
      </Text>
    </Group>
  )
}

/** The DAG page's Resources tab: per step (and for the whole run), duration, CPU and peak memory
 * across its last runs, the ones that stand out marked. */
export function Resources({ name, steps, version }: { name: string; steps: string[]; version: number }) {
  const [limit, setLimit] = useState('50')
  const [runs, setRuns] = useState<RunUse[] | null>(null)
  const [error, setError] = useState('')
  useEffect(() => {
    api
      .resources(name, Number(limit))
      .then((r) => {
        setRuns(r.runs)
        setError('')
      })
      .catch((e: Error) => setError(e.message))
  }, [name, limit, version])
  if (error) return <Alert color="red">{error}</Alert>
  if (!runs) return <Text c="dimmed">loading…</Text>
  if (runs.length === 0) return <Text c="dimmed">No run yet: the charts fill as the DAG runs.</Text>
  return (
    <>
      <Group mb="sm" gap="sm">
        <Text size="sm">Across the last</Text>
        <Select
          aria-label="Runs to chart"
          data={['20', '50', '100', '200']}
          value={limit}
          onChange={(v) => v && setLimit(v)}
          w={90}
          allowDeselect={false}
        />
        <Text size="sm">runs ({runs.length} found); red: at least twice the median.</Text>
      </Group>
      <Table data-testid="resources">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Step</Table.Th>
            {MEASURES.map((m) => (
              <Table.Th key={m.key}>{m.label}</Table.Th>
            ))}
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          <Table.Tr data-resource="(run)">
            <Table.Td>
              <Text fw={600} size="sm">
                whole run
              </Text>
            </Table.Td>
            <Table.Td>
              <Spark runs={runs} values={series(runs, null, 'durationSec')} fmt={MEASURES[0].fmt} floor={0.5} dag={name} label="run duration" />
            </Table.Td>
            <Table.Td />
            <Table.Td />
          </Table.Tr>
          {steps.map((step) => (
            <Table.Tr key={step} data-resource={step}>
              <Table.Td>
                <Text size="sm">{step}</Text>
              </Table.Td>
              {MEASURES.map((m) => (
                <Table.Td key={m.key}>
                  <Spark
                    runs={runs}
                    values={series(runs, step, m.key)}
                    fmt={m.fmt}
                    floor={m.floor}
                    dag={name}
                    label={`${step} ${m.label.toLowerCase()}`}
                  />
                </Table.Td>
              ))}
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </>
  )
}
