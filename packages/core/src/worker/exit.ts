/**
 * How the worker's run ends: the exit code of `run`'s outcome, and the rc file
 * written when work outlives the runtime. Internal to the worker runtime.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { JobReturnCode } from "../Status.js"
import { isConfigError, isUnsafeComponentError, messageOf } from "./errors.js"

/** The name of the rc file in the job directory. */
export const RC_FILE_NAME = "_process_rc.txt"

/** Exit codes of the runtime itself (`JobReturnCode`). */
export const Exit = JobReturnCode

/** How `run` settled. */
export type Settled = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown }

/** The exit code of `run`'s outcome. */
export const exitCodeOf = (settled: Settled, log: (line: string) => void): number => {
  if (settled.ok) {
    const value = settled.value
    if (typeof value !== "number") return 0
    if (Number.isInteger(value) && value >= 0 && value <= 255) return value
    log(`flexec worker: run returned ${value}, which is not an exit code (0-255); exiting 1`)
    return 1
  }
  const error = settled.error
  const code = isConfigError(error)
    ? Exit.ConfigError
    : isUnsafeComponentError(error)
      ? Exit.UnsafeComponent
      : Exit.Exception
  const text = error instanceof Error && error.stack !== undefined ? error.stack : messageOf(error)
  log(`flexec worker: run failed (exit ${code}): ${text}`)
  return code
}

/** Writes the rc file with exclusive create: the first writer wins, a symlink is never followed. */
export const writeRcFile = (jobDir: string | undefined, code: number, log: (line: string) => void): void => {
  if (jobDir === undefined) {
    log("flexec worker: work is still alive at exit, but FLEXEC_JOB_DIR is not set: no rc file written")
    return
  }
  try {
    writeFileSync(join(jobDir, RC_FILE_NAME), `${code}\n`, { flag: "wx", mode: 0o644 })
  } catch (error) {
    if ((error as { code?: unknown }).code !== "EEXIST") log(`flexec worker: cannot write the rc file: ${messageOf(error)}`)
  }
}
