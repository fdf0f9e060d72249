import { Button, Group, Modal, Select, Stack, Text, TextInput } from '@mantine/core'
import { useState } from 'react'
import type { ParamDef } from '../format'
import { paramString } from '../format'

type Props = {
  opened: boolean
  onClose: () => void
  defs: ParamDef[]
  onRun: (params: string) => Promise<void>
}

/** Run Now: one field per declared param, prefilled with its default. */
export function RunForm({ opened, onClose, defs, onRun }: Props) {
  const [values, setValues] = useState<Record<string, string>>({})
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState('')
  const set = (name: string, v: string) => setValues((old) => ({ ...old, [name]: v }))
  const missing = defs.filter((d) => d.required && !(values[d.name] ?? d.default))
  const submit = () => {
    setBusy(true)
    setError('')
    onRun(paramString(defs, values))
      .then(() => {
        setValues({})
        onClose()
      })
      .catch((e: Error) => setError(e.message))
      .finally(() => setBusy(false))
  }
  return (
    <Modal opened={opened} onClose={onClose} title="Run now">
      <Stack>
        {defs.length === 0 && <Text c="dimmed">This DAG declares no params.</Text>}
        {defs.map((d) =>
          d.enum && d.enum.length > 0 ? (
            <Select
              key={d.name}
              label={d.name}
              description={d.description}
              data={d.enum}
              value={values[d.name] ?? d.default}
              onChange={(v) => set(d.name, v ?? '')}
              required={d.required}
            />
          ) : (
            <TextInput
              key={d.name}
              label={d.name}
              description={d.description || (d.type !== 'string' ? d.type : undefined)}
              value={values[d.name] ?? d.default}
              onChange={(e) => set(d.name, e.currentTarget.value)}
              required={d.required}
            />
          ),
        )}
        {error && <Text c="red">{error}</Text>}
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button onClick={submit} loading={busy} disabled={missing.length > 0}>
            Start
          </Button>
        </Group>
      </Stack>
    </Modal>
  )
}
