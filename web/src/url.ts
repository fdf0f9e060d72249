// A view's state kept in the URL's query (shareable; the back button restores it).
import { useSearchParams } from 'react-router-dom'

/** The query and a setter of some of its keys ('' removes one); `reset` keys are dropped
 * whenever another key changes (a new filter starts at the first page). */
export function useUrlParams(reset: string[] = []): [URLSearchParams, (changes: Record<string, string>) => void] {
  const [params, setParams] = useSearchParams()
  const set = (changes: Record<string, string>) => {
    const p = new URLSearchParams(params)
    for (const [k, v] of Object.entries(changes)) {
      if (v) p.set(k, v)
      else p.delete(k)
    }
    for (const k of reset) if (!(k in changes)) p.delete(k)
    setParams(p)
  }
  return [params, set]
}
