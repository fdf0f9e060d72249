import type { ParamDef } from './format'
import type { RunUse } from './resources'

// Typed client for dagd's /api/v1 (Dagu's shapes plus dagd's additions).

export type RunSummary = {
  dagRunId: string
  name: string
  status: number
  statusLabel: string
  startedAt: string
  finishedAt: string
  triggerType?: string
  queuedAt?: string
  error?: string // dagd: why the run failed
}

export type DagSpec = {
  name: string
  group?: string
  description?: string
  schedule?: { expression: string }[]
  params?: string[]
  tags?: string[]
  maxActiveRuns?: number
}

export type DagFile = {
  fileName: string
  dag: DagSpec
  latestDAGRun: RunSummary
  suspended: boolean
  errors: string[]
  nextRun?: string
  runningCount: number
  queuedCount: number
}

export type StepDef = {
  name: string
  id?: string
  description?: string
  depends: string[]
  commands: { command: string }[]
}

export type DagDetails = DagSpec & {
  type?: string
  paramDefs: ParamDef[]
  defaultParams?: string
  maxActiveSteps?: number
  steps: StepDef[]
}

export type Node = {
  step: { name: string }
  startedAt: string
  finishedAt: string
  status: number
  statusLabel: string
  retryCount: number
  doneCount: number
  exitCode: number | null
  cpuUserSec: number
  cpuSysSec: number
  maxRssKb: number
  memorySource: string | null
  error?: string
}

export type RunDetails = RunSummary & {
  nodes: Node[]
  onSuccess?: Node
  onFailure?: Node
  onAbort?: Node
  onExit?: Node
  error?: string
  subRuns?: RunSummary[]
}

export type DagDetail = {
  dag?: DagDetails
  latestDAGRun: RunDetails | RunSummary
  suspended: boolean
  errors: string[]
}

export type Queue = {
  name: string
  type: string
  maxConcurrency: number
  runningCount: number
  queuedCount: number
  running: RunSummary[]
}

export type QueueSummary = {
  totalQueues: number
  totalRunning: number
  totalQueued: number
  totalCapacity: number
  utilizationPercentage: number
}

export type System = {
  version: string
  health: 'healthy' | 'unhealthy'
  reason: string | null
  pid: number
  uptime_sec: number
  node: string
  dags: number
  dags_folder: string
  state_dir: string
  containment: string
  running: number
  queued: number
  max_concurrent_runs: number
  store: { kind: 'sqlite' | 'postgresql'; where: string; size_bytes: number }
  scheduled: number
  suspended: string[]
  next_fires: { dag: string; at: string }[]
  problems: { file: string; error: string }[]
}

export type Worker = {
  id: string
  labels: Record<string, string>
  totalPollers: number
  busyPollers: number
  runningTasks: { dagRunId: string; dagName: string; startedAt: string }[]
  lastHeartbeatAt: string
  healthStatus: 'healthy' | 'warning' | 'unhealthy'
}

export type SpecKeys = { root: string[]; step: string[]; actions: string[] }

export class ApiError extends Error {
  status: number
  details: string[]
  constructor(status: number, message: string, details: string[] = []) {
    super(message)
    this.status = status
    this.details = details
  }
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  const data = text ? JSON.parse(text) : {}
  if (!res.ok) {
    const details: string[] = Array.isArray(data.errors) ? data.errors : []
    throw new ApiError(res.status, data.message ?? details.join('\n') ?? res.statusText, details)
  }
  return data as T
}

const enc = encodeURIComponent

export const api = {
  dags: async (): Promise<DagFile[]> => {
    const all: DagFile[] = []
    for (let page = 1; ; page++) {
      const r = await call<{ dags: DagFile[]; pagination: { totalPages: number } }>(
        'GET',
        `/dags?perPage=1000&page=${page}`,
      )
      all.push(...r.dags)
      if (page >= r.pagination.totalPages) return all
    }
  },
  dag: (name: string) => call<DagDetail>('GET', `/dags/${enc(name)}`),
  runs: (name: string, limit: number, cursor?: string) =>
    call<{ dagRuns: RunSummary[]; nextCursor?: string }>(
      'GET',
      `/dag-runs?name=${enc(name)}&limit=${limit}${cursor ? `&cursor=${enc(cursor)}` : ''}`,
    ),
  system: () => call<System>('GET', '/system'),
  specKeys: () => call<SpecKeys>('GET', '/spec/keys'),
  labels: () => call<{ labels: string[] }>('GET', '/dags/labels').then((r) => r.labels),
  resources: (name: string, limit: number) => call<{ runs: RunUse[] }>('GET', `/dags/${enc(name)}/resources?limit=${limit}`),
  workers: () => call<{ workers: Worker[] }>('GET', '/workers'),
  queues: () => call<{ queues: Queue[]; summary: QueueSummary }>('GET', '/queues'),
  queueItems: (name: string) =>
    call<{ items: RunSummary[]; nextCursor?: string }>('GET', `/queues/${enc(name)}/items?limit=1000`),
  allRuns: (query: string) => call<{ dagRuns: RunSummary[]; nextCursor?: string }>('GET', `/dag-runs?${query}`),
  dequeue: (name: string, id: string) => call<object>('POST', `/dag-runs/${enc(name)}/${enc(id)}/dequeue`),
  deleteRun: (name: string, id: string) => call<object>('DELETE', `/dag-runs/${enc(name)}/${enc(id)}`),
  run: (name: string, id: string) =>
    call<{ dagRunDetails: RunDetails }>('GET', `/dag-runs/${enc(name)}/${enc(id)}`).then((r) => r.dagRunDetails),
  start: (name: string, params: string) => call<{ dagRunId: string }>('POST', `/dags/${enc(name)}/start`, { params }),
  stop: (name: string, id: string) => call<object>('POST', `/dag-runs/${enc(name)}/${enc(id)}/stop`),
  retry: (name: string, id: string) => call<object>('POST', `/dag-runs/${enc(name)}/${enc(id)}/retry`),
  suspend: (name: string, suspend: boolean) => call<object>('POST', `/dags/${enc(name)}/suspend`, { suspend }),
  spec: (name: string) => call<{ spec: string; errors: string[] }>('GET', `/dags/${enc(name)}/spec`),
  saveSpec: (name: string, spec: string) => call<{ errors: string[] }>('PUT', `/dags/${enc(name)}/spec`, { spec }),
  validate: (name: string, spec: string) =>
    call<{ valid: boolean; errors: string[]; errorLines?: { line: number; column: number; message: string }[] }>(
      'POST',
      '/dags/validate',
      { name, spec },
    ),
  stepLog: (name: string, id: string, step: string, stream: 'stdout' | 'stderr') =>
    call<{ content: string; totalLines: number; hasMore: boolean }>(
      'GET',
      `/dag-runs/${enc(name)}/${enc(id)}/steps/${enc(step)}/log?stream=${stream}&tail=5000`,
    ),
  stepLogStreamUrl: (name: string, id: string, step: string, stream: 'stdout' | 'stderr') =>
    `/api/v1/dag-runs/${enc(name)}/${enc(id)}/steps/${enc(step)}/log/stream?stream=${stream}`,
}
