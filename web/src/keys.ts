// Keyboard use of every list: `/` focuses the page's search, `j`/`k` move down and up the rows,
// Enter opens the row (its `data-open` element, else its first link), Escape leaves the search. Rows opt in with `data-nav`,
// the search field with `data-search`.
import { useEffect } from 'react'
import { useLocation } from 'react-router-dom'

function typing(t: EventTarget | null): boolean {
  const el = t as HTMLElement | null
  if (!el) return false
  const tag = el.tagName
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || el.isContentEditable
}

function rows(): HTMLElement[] {
  return Array.from(document.querySelectorAll<HTMLElement>('[data-nav]'))
}

function mark(list: HTMLElement[], index: number): void {
  for (const r of list) r.removeAttribute('data-active')
  const row = list[index]
  if (!row) return
  row.setAttribute('data-active', 'true')
  row.scrollIntoView({ block: 'nearest' })
}

export function useKeyboardNav(): void {
  const location = useLocation()
  useEffect(() => {
    for (const r of rows()) r.removeAttribute('data-active') // a new page starts with none
  }, [location.pathname])
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return
      if (typing(e.target)) {
        if (e.key === 'Escape') (e.target as HTMLElement).blur()
        return
      }
      const list = rows()
      const current = list.findIndex((r) => r.getAttribute('data-active') === 'true')
      if (e.key === '/') {
        const search = document.querySelector<HTMLElement>('[data-search]')
        if (search) {
          e.preventDefault()
          search.focus()
        }
      } else if (e.key === 'j' || e.key === 'k') {
        if (list.length === 0) return
        e.preventDefault()
        const next = current < 0 ? 0 : Math.min(list.length - 1, Math.max(0, current + (e.key === 'j' ? 1 : -1)))
        mark(list, next)
      } else if (e.key === 'Enter' && current >= 0) {
        const row = list[current]
        const link = row.querySelector<HTMLElement>('[data-open]') ?? row.querySelector<HTMLElement>('a[href]')
        if (link) {
          e.preventDefault()
          link.click()
        }
      }
    }
    document.addEventListener('keydown', onKey)
    return () => document.removeEventListener('keydown', onKey)
  }, [])
}
