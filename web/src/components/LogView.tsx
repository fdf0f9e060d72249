import { Code, Group, ScrollArea, SegmentedControl, Text } from '@mantine/core'
import { useEffect, useRef, useState } from 'react'
import { api } from '../api'

type Props = { dag: string; runId: string; step: string; running: boolean }

/** A step's stdout or stderr; while the step runs, new output streams in (SSE) and stays in view. */
export function LogView({ dag, runId, step, running }: Props) {
  const [stream, setStream] = useState<'stdout' | 'stderr'>('stdout')
  const [text, setText] = useState('')
  const [error, setError] = useState('')
  const viewport = useRef<HTMLDivElement>(null)

  useEffect(() => {
    let cancelled = false
    setText('')
    setError('')
    if (running && typeof EventSource !== 'undefined') {
      const src = new EventSource(api.stepLogStreamUrl(dag, runId, step, stream))
      src.addEventListener('chunk', (m) => {
        const { text: chunk } = JSON.parse((m as MessageEvent<string>).data) as { text: string }
        if (!cancelled) setText((t) => t + chunk)
      })
      src.addEventListener('end', () => src.close())
      return () => {
        cancelled = true
        src.close()
      }
    }
    api
      .stepLog(dag, runId, step, stream)
      .then((r) => !cancelled && setText(r.content + (r.content ? '\n' : '')))
      .catch((e: Error) => !cancelled && setError(e.message))
    return () => {
      cancelled = true
    }
  }, [dag, runId, step, stream, running])

  useEffect(() => {
    viewport.current?.scrollTo({ top: viewport.current.scrollHeight })
  }, [text])

  return (
    <div>
      <Group justify="space-between" mb="xs">
        <Text fw={600}>{step}</Text>
        <SegmentedControl
          size="xs"
          value={stream}
          onChange={(v) => setStream(v as 'stdout' | 'stderr')}
          data={['stdout', 'stderr']}
        />
      </Group>
      {error ? (
        <Text c="red">{error}</Text>
      ) : (
        <ScrollArea h={360} viewportRef={viewport} type="auto">
          <Code block data-testid="log" style={{ whiteSpace: 'pre-wrap', wordBreak: 'break-all', minHeight: 340 }}>
            {text || (running ? 'waiting for output…' : '(empty)')}
          </Code>
        </ScrollArea>
      )}
    </div>
  )
}
