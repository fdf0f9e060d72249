// One EventSource on /api/v1/events shared by every component; the browser reconnects it.
import { useEffect, useRef, useState } from 'react'

export type RunEvent = {
  // Reconnected: the stream broke and is back; events may have been missed, so reload
  type: 'RunStarted' | 'StepChanged' | 'RunFinished' | 'Reconnected'
  run_id: string
  dag?: string
  step?: string
  status?: string
}

type Listener = (e: RunEvent) => void
const listeners = new Set<Listener>()
let source: EventSource | null = null

function open(): void {
  if (source || typeof EventSource === 'undefined') return
  source = new EventSource('/api/v1/events')
  let opened = false
  source.addEventListener('open', () => {
    if (opened) for (const l of listeners) l({ type: 'Reconnected', run_id: '' })
    opened = true
  })
  for (const type of ['RunStarted', 'StepChanged', 'RunFinished']) {
    source.addEventListener(type, (msg) => {
      const event = JSON.parse((msg as MessageEvent<string>).data) as RunEvent
      for (const l of listeners) l(event)
    })
  }
}

export function subscribe(l: Listener): () => void {
  listeners.add(l)
  open()
  return () => {
    listeners.delete(l)
  }
}

/** Call `onEvent` for every run event; the latest callback is used without resubscribing. */
export function useRunEvents(onEvent: Listener): void {
  const ref = useRef(onEvent)
  useEffect(() => {
    ref.current = onEvent
  })
  useEffect(() => subscribe((e) => ref.current(e)), [])
}

/** A function that runs `fn` at most once per `ms`, trailing (coalesces bursts of events). */
export function throttle(fn: () => void, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null
  return () => {
    if (timer) return
    timer = setTimeout(() => {
      timer = null
      fn()
    }, ms)
  }
}

/** Call `load` again (at most once per `ms`) whenever a run starts, ends or the stream
 * reconnects: a page of runs, queues or counts stays current without polling. */
export function useLiveReload(load: () => void, ms: number = 500): void {
  const ref = useRef(load)
  useEffect(() => {
    ref.current = load
  })
  const [reload] = useState(() => throttle(() => ref.current(), ms))
  useRunEvents((e) => {
    if (e.type !== 'StepChanged') reload()
  })
}
