/**
 * Slurm's job states and exit encodings, decoded into flexec's `JobExit`.
 *
 * - `squeue -O exit_code` (and slurmrestd) print the raw wait status: exit 7 is
 *   1792, a SIGKILL 9, an OOM kill 253 (signal 125 with the core bit).
 * - `scontrol` and the jobcomp file print `ExitCode=X:Y`: X the code, Y the signal.
 * - `OUT_OF_MEMORY` is the only trustworthy OOM sign (Y reads 125, a made-up signal).
 *
 * @internal
 */
import * as os from "node:os"
import type { JobExit } from "./core.js"

/** States in which the job may still run (or has processes being killed: `COMPLETING`). */
const activeStates = new Set([
  "PENDING",
  "CONFIGURING",
  "RUNNING",
  "SUSPENDED",
  "COMPLETING",
  "RESIZING",
  "REQUEUED",
  "REQUEUE_FED",
  "REQUEUE_HOLD",
  "RESV_DEL_HOLD",
  "SPECIAL_EXIT",
  "STAGE_OUT",
  "SIGNALING",
  "STOPPED"
])

/** True for a state in which the job has ended and its processes are gone. */
export const isTerminal = (state: string): boolean => !activeStates.has(state.toUpperCase())

/** `PENDING` and its kin: the job holds no node yet and cannot be signalled, only cancelled. */
export const isPending = (state: string): boolean => ["PENDING", "REQUEUE_HOLD", "REQUEUED", "RESV_DEL_HOLD"].includes(state.toUpperCase())

/** States in which a job's processes run on its node, so that `scancel --signal` reaches them (else it is cancelled). */
export const isSignallable = (state: string | undefined): boolean => state === "RUNNING" || state === "SUSPENDED" || state === "COMPLETING"

const signalNames = new Map<number, string>(Object.entries(os.constants.signals).map(([name, n]) => [n as number, name]))

/** The signal name of `n`, or `SIG<n>` for a number this platform does not name. */
export const signalName = (n: number): string => signalNames.get(n) ?? `SIG${n}`

/**
 * The exit of a job in terminal `state` with exit code `code` and signal `signal`
 * (Y of `X:Y`). A code 0 counts as success only for `COMPLETED`: a job cancelled
 * before it ran, or ended by a node failure, says `0:0` too.
 */
export const exitOf = (state: string, code: number, signal: number): JobExit => {
  const upper = state.toUpperCase()
  if (upper === "OUT_OF_MEMORY") return { code: null, signal: "SIGKILL", oomKilled: true, lost: false }
  if (signal !== 0) return { code: null, signal: signalName(signal), oomKilled: false, lost: false }
  if (code !== 0 || upper === "COMPLETED") return { code, signal: null, oomKilled: false, lost: false }
  return { code: null, signal: null, oomKilled: false, lost: false }
}

/** `exitOf` from a raw wait status (`squeue -O exit_code`). */
export const exitOfRawStatus = (state: string, raw: number): JobExit => {
  const signal = raw & 0x7f
  return signal !== 0 ? exitOf(state, 0, signal) : exitOf(state, (raw >> 8) & 0xff, 0)
}

/** Parses `X:Y` (`ExitCode=`); `undefined` when it is not that. */
export const parseExitCode = (text: string): { readonly code: number; readonly signal: number } | undefined => {
  const match = /^([0-9]+):([0-9]+)$/.exec(text.trim())
  return match ? { code: Number(match[1]), signal: Number(match[2]) } : undefined
}

/** The job's exit when it is gone from the controller and no record of it is left. */
export const lostExit: JobExit = { code: null, signal: null, oomKilled: false, lost: true }

/** One line of `squeue -h -O JobID:|,State:|,exit_code:|[,Comment:|]`. */
export interface QueueRow {
  readonly slurmId: string
  readonly state: string
  readonly rawExit: number
  readonly comment: string | undefined
}

/** The rows of `squeue` with the fields above (lines that do not parse are skipped). */
export const parseQueue = (text: string): ReadonlyArray<QueueRow> => {
  const rows: Array<QueueRow> = []
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue
    const [id, state, raw, ...rest] = line.split("|")
    if (id === undefined || state === undefined || raw === undefined) continue
    const slurmId = id.trim()
    if (!/^[0-9]+(_[0-9]+)?$/.test(slurmId) || !/^[0-9]+$/.test(raw.trim())) continue
    // the comment is the last field; it may itself hold `|`, and the line ends with the suffix `|`
    const comment = rest.length === 0 ? undefined : rest.join("|").replace(/\|$/, "").trim()
    rows.push({ slurmId, state: state.trim(), rawExit: Number(raw.trim()), comment: comment === "(null)" || comment === "" ? undefined : comment })
  }
  return rows
}

/**
 * The last jobcomp line (`JobId=N ... Name=... JobState=... ExitCode=X:Y`) of job
 * `slurmId` named `name` (ids restart when a cluster's state is wiped: the name
 * must match too).
 */
export const findJobCompExit = (text: string, slurmId: string, name: string): JobExit | undefined => {
  let found: JobExit | undefined
  for (const line of text.split("\n")) {
    if (!line.startsWith(`JobId=${slurmId} `)) continue
    const field = (key: string): string | undefined => {
      const match = new RegExp(`(?:^| )${key}=(\\S*)`).exec(line)
      return match?.[1]
    }
    if (field("Name") !== name) continue
    const state = field("JobState")
    const exit = parseExitCode(field("ExitCode") ?? "")
    if (state === undefined || exit === undefined || !isTerminal(state)) continue
    found = exitOf(state, exit.code, exit.signal)
  }
  return found
}
