/**
 * The public types of the worker runtime (`@flexec/core/worker`).
 */
import type { Duplex } from "node:stream"

import type { HeaderValue, Headers, Payload } from "../Message.js"

export type { HeaderValue, Headers, Json, Payload } from "../Message.js"

/** A message received from the parent (a request to a handler, or the reply of `ctx.request`). */
export interface WorkerMessage {
  readonly headers: Headers
  readonly payload: Payload
}

/**
 * A message to send. `payload`: a `Uint8Array` travels as raw bytes, `undefined`
 * as nothing, anything else as JSON (a `Uint8Array` nested inside JSON is refused).
 */
export interface OutgoingMessage {
  readonly headers?: Readonly<Record<string, HeaderValue>>
  readonly payload?: unknown
}

/** Log levels `configure_job_log` accepts (`warn` is taken as `warning`). */
export type LogLevel = "debug" | "info" | "warning" | "error" | "critical"

/** Options of `ctx.reportError`. */
export interface ReportErrorOptions {
  /** The error's group (default `"general"`). */
  readonly group?: string
  /** The error's level (default `"error"`). */
  readonly level?: string
}

/** Parameters of `ctx.request`. */
export interface RequestOptions {
  readonly channel: string
  readonly topic: string
  /** The message (default: no headers, no payload). */
  readonly message?: OutgoingMessage
  /** Milliseconds to wait for the reply (default 30000). */
  readonly timeout?: number
}

/** The FL client's credentials, read (and removed) from the job's environment. */
export interface Credentials {
  /** `FLEXEC_JOB_AUTH_TOKEN`. */
  readonly token?: string
  /** `FLEXEC_JOB_TOKEN_SIGNATURE`. */
  readonly tokenSignature?: string
  /** `FLEXEC_JOB_SSID`. */
  readonly ssid?: string
}

/** What `run` and every handler get: the job's identity, signals, stats, errors and the way back to the parent. */
export interface JobContext {
  /** `FLEXEC_JOB_ID`. */
  readonly jobId: string
  /** `FLEXEC_CLIENT_NAME` (the site the job runs for). */
  readonly clientName: string | undefined
  /** The `set` arguments of `startApp` (`FLEXEC_SET`, parsed; `{}` when absent). */
  readonly set: Readonly<Record<string, unknown>>
  /** The FL credentials (from the environment, which no longer holds them). */
  readonly credentials: Credentials
  /** `FLEXEC_WORKSPACE`. */
  readonly workspace: string | undefined
  /** `FLEXEC_JOB_DIR`. */
  readonly jobDir: string | undefined
  /** `FLEXEC_STARTUP_DIR`. */
  readonly startupDir: string | undefined
  /** Aborts when the job must stop: the parent's `abort`, or the channel lost for good. */
  readonly signal: AbortSignal
  /**
   * The current task's signal: `abort_task` (and a job abort) aborts it; once
   * aborted, the next call returns a fresh one (already aborted after a job abort).
   */
  taskSignal(): AbortSignal
  /** Sets the value `show_stats` reports for `group` (it must be JSON). */
  setStats(group: string, value: unknown): void
  /** Records an error `show_errors` reports: the latest per group and level. */
  reportError(message: string, options?: ReportErrorOptions): void
  /** The level `configure_job_log` set (default `"info"`). */
  readonly logLevel: LogLevel
  /**
   * A request to the parent's handlers. Resolves with the reply; rejects with a
   * `ChannelError` whose `code` is the return code.
   */
  request(options: RequestOptions): Promise<WorkerMessage>
}

/**
 * A handler of the parent's requests on one channel/topic. Its result is the
 * reply's payload: a `Uint8Array` travels as bytes, `undefined` as nothing,
 * anything else as JSON. A throw answers `process_exception` with the message.
 */
export type Handler = (message: WorkerMessage, ctx: JobContext) => unknown

/** Handlers by channel, then topic. Built-ins on `client_command` cannot be overridden. */
export type Handlers = Readonly<Record<string, Readonly<Record<string, Handler>>>>

/** What `runJob` runs. */
export interface JobSpec {
  /**
   * The job. Its result (a number, or anything else for 0) is the exit code.
   * Called once Started is acknowledged, before any request that follows the
   * acknowledgement is handled (an abort right behind it finds `run` running).
   */
  readonly run: (ctx: JobContext) => unknown
  /** Handlers of the parent's requests, answered while `run` runs. */
  readonly handlers?: Handlers
}

/** What `WorkerIO.connect` gets besides the URL (from the job's environment). */
export interface ConnectOptions {
  /** The pinned SHA-256 of the parent's TLS certificate (`FLEXEC_CHANNEL_CERT_SHA256`, 64 lowercase hex digits). */
  readonly certSha256?: string
}

/** What `runJobWith` uses instead of `process`: for in-process backends and tests. */
export interface WorkerIO {
  /** The job's environment. Read; its secrets are deleted from it. */
  readonly env: Record<string, string | undefined>
  /**
   * Opens a stream to the parent (`FLEXEC_PARENT_URL`). May throw a `ConfigError`
   * for a URL it cannot use, or destroy the stream with one (a certificate that
   * is not the pinned one): the job then exits 103 without retrying.
   */
  readonly connect: (url: string, options: ConnectOptions) => Duplex
  /** Called once with the exit code, at the end. */
  readonly exit: (code: number) => void
  /**
   * True when work the job started is still alive at exit (then the rc file is
   * written). Default: only a `run` that has not returned counts.
   */
  readonly workAlive?: () => boolean
  /** Where the runtime's own diagnostics go (default `console.error`). */
  readonly log?: (line: string) => void
  /** Called once the parent has acknowledged Started, just before `run`. */
  readonly started?: () => void
}
