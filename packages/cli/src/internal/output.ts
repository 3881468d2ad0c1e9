/**
 * The CLI's output, guarded: once stdout or stderr is gone (EPIPE: `flexec run
 * … | head` ended; EIO: the terminal closed), writes are dropped instead of
 * crashing the command, and whoever listens is told once, so the run can
 * abort its job and clean up.
 *
 * @internal
 */

/** Why the output is gone: the errno code (`EPIPE`, `EIO`, ...). */
export type OutputGone = string

let gone: OutputGone | undefined
let installed = false
const listeners = new Set<(why: OutputGone) => void>()
/** The streams that failed: nothing more is written to them. */
const broken = new Set<NodeJS.WriteStream>()

const onError = (stream: NodeJS.WriteStream) => (error: NodeJS.ErrnoException): void => {
  broken.add(stream)
  if (gone !== undefined) return
  gone = error.code ?? "EPIPE"
  for (const l of listeners) l(gone)
}

/** Installs the 'error' listeners of stdout and stderr (once). */
export const guardOutput = (): void => {
  if (installed) return
  installed = true
  process.stdout.on("error", onError(process.stdout))
  process.stderr.on("error", onError(process.stderr))
}

/** Whether the output is gone. */
export const outputGone = (): OutputGone | undefined => gone

/** Calls `listener` once the output is gone (at once if it already is); returns the way to stop listening. */
export const onOutputGone = (listener: (why: OutputGone) => void): (() => void) => {
  if (gone !== undefined) {
    listener(gone)
    return () => {}
  }
  listeners.add(listener)
  return () => void listeners.delete(listener)
}

const writeTo = (stream: NodeJS.WriteStream, text: string): void => {
  if (broken.has(stream)) return
  try {
    stream.write(text)
  } catch (e) {
    onError(stream)(e as NodeJS.ErrnoException)
  }
}

/** Writes to stdout unless it is gone. */
export const writeOut = (text: string): void => writeTo(process.stdout, text)

/** Writes to stderr unless it is gone. */
export const writeErr = (text: string): void => writeTo(process.stderr, text)
