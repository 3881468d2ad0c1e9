/**
 * The job's own state (signals, stats, errors, log level, status) and the
 * built-in topics of channel `client_command` that read and change it.
 * Internal to the worker runtime.
 */
import { ClientStatus } from "../Status.js"
import { messageOf } from "./errors.js"
import type { Answer } from "./connection.js"
import { payloadProblem } from "./payload.js"
import type { LogLevel, ReportErrorOptions, WorkerMessage } from "./types.js"

/** The `ClientStatus` values the worker reports (one vocabulary: `Status.ts` is dependency-free, bundled into the worker). */
export const Status = { Starting: ClientStatus.Starting, Started: ClientStatus.Started, Stopped: ClientStatus.Stopped } as const

const levels: Readonly<Record<string, LogLevel>> = {
  debug: "debug",
  info: "info",
  warning: "warning",
  warn: "warning",
  error: "error",
  critical: "critical"
}

/** A level name (case-insensitive; `warn` is `warning`), or an explanation of why it is not one. */
export const parseLogLevel = (value: unknown): LogLevel | { readonly reason: string } => {
  if (typeof value !== "string") {
    return { reason: `configure_job_log needs a string "level" (one of debug, info, warning, error, critical), got ${JSON.stringify(value) ?? typeof value}` }
  }
  const level = Object.hasOwn(levels, value.toLowerCase()) ? levels[value.toLowerCase()] : undefined
  return level ?? { reason: `unknown log level ${JSON.stringify(value)}: use one of debug, info, warning, error, critical` }
}

const abortError = (message: string): Error => {
  const error = new Error(message)
  error.name = "AbortError"
  return error
}

/** The job's mutable state. */
export class JobState {
  status: number = Status.Starting
  logLevel: LogLevel = "info"
  private readonly job = new AbortController()
  private task = new AbortController()
  private readonly stats = new Map<string, unknown>()
  private readonly errors = new Map<string, Map<string, string>>()

  /** The job's signal. */
  get signal(): AbortSignal {
    return this.job.signal
  }

  /** The current task's signal; a fresh one once the current one is aborted. */
  taskSignal(): AbortSignal {
    if (this.task.signal.aborted) {
      this.task = new AbortController()
      if (this.job.signal.aborted) this.task.abort(this.job.signal.reason)
    }
    return this.task.signal
  }

  /** Aborts the job (and its current task). */
  abortJob(reason: Error): void {
    if (!this.job.signal.aborted) this.job.abort(reason)
    if (!this.task.signal.aborted) this.task.abort(reason)
  }

  /** Aborts the current task. */
  abortTask(): void {
    if (!this.task.signal.aborted) this.task.abort(abortError("the parent aborted the current task"))
  }

  setStats(group: string, value: unknown): void {
    if (typeof group !== "string") throw new TypeError("setStats: the group must be a string")
    const problem = payloadProblem({ [group]: value })
    if (problem !== undefined) throw new TypeError(`setStats(${JSON.stringify(group)}): ${problem}`)
    if (value === undefined) this.stats.delete(group)
    else this.stats.set(group, value)
  }

  reportError(message: string, options?: ReportErrorOptions): void {
    const group = options?.group ?? "general"
    const level = options?.level ?? "error"
    let byLevel = this.errors.get(group)
    if (byLevel === undefined) {
      byLevel = new Map()
      this.errors.set(group, byLevel)
    }
    byLevel.set(level, `${new Date().toISOString()}: ${String(message)}`)
  }

  /** The built-in topics of `client_command`, or `undefined` for another topic. */
  builtin(topic: string, message: WorkerMessage): Answer | undefined {
    switch (topic) {
      case "abort":
        return { rc: "ok", after: () => this.abortJob(abortError("the parent aborted the job")) }
      case "abort_task":
        this.abortTask()
        return { rc: "ok" }
      case "show_stats":
        return { rc: "ok", payload: Object.fromEntries(this.stats) }
      case "show_errors": {
        const out: Record<string, Record<string, string>> = {}
        for (const [group, byLevel] of this.errors) out[group] = Object.fromEntries(byLevel)
        return { rc: "ok", payload: out }
      }
      case "reset_errors":
        this.errors.clear()
        return { rc: "ok" }
      case "configure_job_log": {
        const config = message.payload
        const level =
          typeof config === "object" && config !== null && !Array.isArray(config) && !(config instanceof Uint8Array)
            ? parseLogLevel((config as Record<string, unknown>).level)
            : { reason: `configure_job_log needs an object { level }, got ${describe(config)}` }
        if (typeof level !== "string") return { rc: "process_exception", payload: level.reason }
        this.logLevel = level
        return { rc: "ok" }
      }
      case "check_status":
        return { rc: "ok", payload: { status: this.status } }
      default:
        return undefined
    }
  }
}

const describe = (value: unknown): string => {
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`
  try {
    return JSON.stringify(value) ?? "nothing"
  } catch (error) {
    return messageOf(error)
  }
}
