import { autocompletion, type CompletionContext, type CompletionResult } from '@codemirror/autocomplete'
import { yaml } from '@codemirror/lang-yaml'
import { type Diagnostic, lintGutter, setDiagnostics } from '@codemirror/lint'
import { Compartment, EditorState } from '@codemirror/state'
import { EditorView } from '@codemirror/view'
import { useComputedColorScheme } from '@mantine/core'
import { basicSetup } from 'codemirror'
import { useEffect, useRef } from 'react'
import type { SpecKeys } from '../api'
import type { LineError } from '../specerrors'

/** Key completion from dagd's own key tables: a key at the left margin is a DAG key, an
 * indented one a step key, and the value of `action:`/`type:` one of dagd's actions. */
function completer(keys: SpecKeys) {
  return (ctx: CompletionContext): CompletionResult | null => {
    const line = ctx.state.doc.lineAt(ctx.pos)
    const before = line.text.slice(0, ctx.pos - line.from)
    const value = /^\s*(?:-\s+)?(action|type):\s*([\w.-]*)$/.exec(before)
    if (value) {
      return {
        from: ctx.pos - value[2].length,
        options: keys.actions.map((a) => ({ label: a, type: 'enum' })),
      }
    }
    const key = /^(\s*)(-\s+)?([\w]*)$/.exec(before)
    if (!key || (!ctx.explicit && key[3] === '')) return null
    const indented = key[1].length > 0 || !!key[2]
    return {
      from: ctx.pos - key[3].length,
      options: (indented ? keys.step : keys.root).map((k) => ({ label: k, type: 'property', apply: `${k}: ` })),
    }
  }
}

/** The YAML of a DAG in CodeMirror 6: highlighting, completion of dagd's keys and actions, and
 * dagd's own validation errors marked on their lines. */
export function YamlEditor({
  value,
  onChange,
  readOnly,
  errors,
  keys,
}: {
  value: string
  onChange: (text: string) => void
  readOnly: boolean
  errors: LineError[]
  keys: SpecKeys | null
}) {
  const host = useRef<HTMLDivElement>(null)
  const view = useRef<EditorView | null>(null)
  const readOnlyCfg = useRef(new Compartment())
  const themeCfg = useRef(new Compartment())
  const completionCfg = useRef(new Compartment())
  const onChangeRef = useRef(onChange)
  const dark = useComputedColorScheme('light') === 'dark'
  useEffect(() => {
    onChangeRef.current = onChange
  })

  useEffect(() => {
    const state = EditorState.create({
      doc: value,
      extensions: [
        basicSetup,
        yaml(),
        lintGutter(),
        completionCfg.current.of([]),
        readOnlyCfg.current.of(EditorState.readOnly.of(readOnly)),
        themeCfg.current.of(EditorView.theme({}, { dark })),
        EditorView.contentAttributes.of({ 'aria-label': 'DAG YAML' }),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) onChangeRef.current(u.state.doc.toString())
        }),
        EditorView.theme({ '&': { fontSize: '13px' }, '.cm-scroller': { fontFamily: 'var(--mantine-font-family-monospace)' } }),
      ],
    })
    view.current = new EditorView({ state, parent: host.current! })
    return () => view.current?.destroy()
    // the editor is made once; later props reach it through the effects below
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [])

  useEffect(() => {
    const v = view.current
    if (v && v.state.doc.toString() !== value) v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value } })
  }, [value])
  useEffect(() => {
    view.current?.dispatch({ effects: readOnlyCfg.current.reconfigure(EditorState.readOnly.of(readOnly)) })
  }, [readOnly])
  useEffect(() => {
    view.current?.dispatch({ effects: themeCfg.current.reconfigure(EditorView.theme({}, { dark })) })
  }, [dark])
  useEffect(() => {
    if (keys) view.current?.dispatch({ effects: completionCfg.current.reconfigure(autocompletion({ override: [completer(keys)] })) })
  }, [keys])
  useEffect(() => {
    const v = view.current
    if (!v) return
    const diagnostics: Diagnostic[] = errors.map((e) => {
      const line = v.state.doc.line(Math.min(Math.max(1, e.line), v.state.doc.lines))
      return { from: line.from, to: line.to, severity: 'error', message: e.message }
    })
    v.dispatch(setDiagnostics(v.state, diagnostics)) // dagd's errors, on their lines
  }, [errors])

  return (
    <div
      ref={host}
      data-testid="yaml-editor"
      style={{ border: '1px solid var(--mantine-color-default-border)', borderRadius: 4, minHeight: 240 }}
    />
  )
}
