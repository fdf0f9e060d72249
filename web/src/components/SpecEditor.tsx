import { Alert, Button, Group, List, Stack, Text } from '@mantine/core'
import { lazy, Suspense, useEffect, useMemo, useState } from 'react'
import { api, ApiError, type SpecKeys } from '../api'
import { type LineError, lineErrors } from '../specerrors'

let keysOnce: Promise<SpecKeys> | null = null // dagd's key tables: asked once per page load
// the editor (CodeMirror, ≈ 150 kB gzipped) loads with the Spec tab, not with every page
const YamlEditor = lazy(() => import('./YamlEditor').then((m) => ({ default: m.YamlEditor })))

/** The DAG file's YAML: view, edit (highlighting, completion of dagd's keys, dagd's own
 * validation as you type, errors on their lines), validate, save (the server refuses invalid
 * YAML). */
export function SpecEditor({ name, onSaved }: { name: string; onSaved: () => void }) {
  const [original, setOriginal] = useState<string | null>(null)
  const [text, setText] = useState('')
  const [editing, setEditing] = useState(false)
  const [errors, setErrors] = useState<string[]>([])
  const [located, setLocated] = useState<LineError[] | null>(null) // where dagd says each error is
  const [message, setMessage] = useState('')
  const [busy, setBusy] = useState(false)

  const [keys, setKeys] = useState<SpecKeys | null>(null)
  useEffect(() => {
    keysOnce ??= api.specKeys()
    keysOnce.then(setKeys).catch(() => setKeys(null))
  }, [])
  // while editing, dagd validates the text 0.6 s after the last keystroke
  useEffect(() => {
    if (!editing || original === null || text === original) return
    const timer = setTimeout(() => {
      api
        .validate(name, text)
        .then((r) => {
          setErrors(r.errors)
          setLocated(r.errorLines ?? null)
        })
        .catch(() => undefined)
    }, 600)
    return () => clearTimeout(timer)
  }, [editing, name, original, text])
  const marks = useMemo(() => located ?? lineErrors(errors), [located, errors])
  useEffect(() => {
    api.spec(name).then((r) => {
      setOriginal(r.spec)
      setText(r.spec)
      setErrors(r.errors)
    })
  }, [name])

  const validate = async () => {
    const r = await api.validate(name, text)
    setErrors(r.errors)
    setLocated(r.errorLines ?? null)
    setMessage(r.valid ? 'Valid.' : '')
    return r.valid
  }
  const save = async () => {
    setBusy(true)
    setMessage('')
    try {
      await api.saveSpec(name, text)
      setOriginal(text)
      setErrors([])
      setEditing(false)
      setMessage('Saved.')
      onSaved()
    } catch (e) {
      setErrors(e instanceof ApiError && e.details.length ? e.details : [(e as Error).message])
      setLocated(null)
    } finally {
      setBusy(false)
    }
  }

  if (original === null) return <Text c="dimmed">Loading…</Text>
  return (
    <Stack>
      <Group>
        {!editing ? (
          <Button variant="light" onClick={() => setEditing(true)}>
            Edit
          </Button>
        ) : (
          <>
            <Button variant="default" onClick={() => void validate()}>
              Validate
            </Button>
            <Button onClick={() => void save()} loading={busy} disabled={text === original}>
              Save
            </Button>
            <Button
              variant="subtle"
              color="gray"
              onClick={() => {
                setText(original)
                setEditing(false)
                setErrors([])
              }}
            >
              Cancel
            </Button>
          </>
        )}
        {message && <Text c="green">{message}</Text>}
      </Group>
      {errors.length > 0 && (
        <Alert color="red" title="Invalid DAG" data-testid="spec-errors">
          <List size="sm">
            {errors.map((e) => (
              <List.Item key={e}>{e}</List.Item>
            ))}
          </List>
        </Alert>
      )}
      <Suspense fallback={<Text c="dimmed">Loading the editor…</Text>}>
        <YamlEditor value={text} onChange={setText} readOnly={!editing} errors={marks} keys={keys} />
      </Suspense>
    </Stack>
  )
}
