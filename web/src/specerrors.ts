// dagd's validation errors ("FILE:LINE:COL: key: what is wrong") → the line each is about.

export type LineError = { line: number; message: string }

export function lineErrors(errors: string[]): LineError[] {
  const out: LineError[] = []
  for (const e of errors) {
    const m = /^(?:[^\n]*?\.ya?ml|<[^>]+>):(\d+)(?::\d+)?:\s*([\s\S]*)$/.exec(e)
    out.push(m ? { line: Number(m[1]), message: m[2] } : { line: 1, message: e })
  }
  return out
}
