import { Alert, Button, Group, List, Stack, Text, Textarea } from '@mantine/core'
import { useEffect, useState } from 'react'
import { api, ApiError } from '../api'

/** The DAG file's YAML: view, edit, validate, save (the server refuses invalid YAML). */
export function SpecEditor({ name, onSaved }: { name: string; onSaved: () => void }) {
  const [original, setOriginal] = useState<string | null>(null)
  const [text, setText] = useState('')
  const [editing, setEditing] = useState(false)
  const [errors, setErrors] = useState<string[]>([])
  const [message, setMessage] = useState('')
  const [busy, setBusy] = useState(false)

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
      <Textarea
        aria-label="DAG YAML"
        value={text}
        readOnly={!editing}
        onChange={(e) => setText(e.currentTarget.value)}
        autosize
        minRows={12}
        maxRows={40}
        spellCheck={false}
        styles={{ input: { fontFamily: 'var(--mantine-font-family-monospace)', fontSize: 13 } }}
      />
    </Stack>
  )
}
