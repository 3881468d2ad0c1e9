/**
 * The parent side of a job's channel: a private per-job unix socket (and an
 * in-process connector), the hello handshake, and request/reply both ways.
 *
 * @since 0.1.0
 */
import type { Duration, Effect, Option, Scope } from "effect"
import type { LaunchFailed, RequestError } from "../Errors.js"
import type { ChannelInfo } from "../JobLauncher.js"
import type { Message, Payload } from "../Message.js"

/** A request or notification the job sent to the parent. */
export interface IncomingRequest {
  readonly channel: string
  readonly topic: string
  readonly message: Message
}

/**
 * Handles a job's request. `None`: no handler (the job gets `invalid_request`).
 * A failure or defect of the Effect answers `process_exception` with its message.
 */
export type RequestHandler = (request: IncomingRequest) => Option.Option<Effect.Effect<Payload, unknown>>

/** Options of `openJobChannel`. */
export interface JobChannelOptions {
  readonly jobId: string
  /** The token the worker must present in its hello (compared in constant time). */
  readonly token: string
  /** The job's private socket directory: created 0700 (must not exist yet), removed when the scope closes. */
  readonly dir: string
  /** The socket file's name in `dir` (default `"ch.sock"`). */
  readonly socketName?: string
  /** Largest frame accepted and sent (default 128 MiB). */
  readonly maxFrameBytes?: number
  /** A connection that has not said hello by then is closed (default 10 s). */
  readonly helloTimeout?: Duration.DurationInput
  /** Handles the job's requests (and `notify` frames, whose result is discarded). */
  readonly onRequest: RequestHandler
  /** Owner of `dir` and the socket (a container user); default: the parent's. */
  readonly owner?: { readonly uid: number; readonly gid: number }
  /** At most this many of the job's requests are handled at once; more are answered `service_unavailable` (default 64). */
  readonly maxConcurrentRequests?: number
}

/** Parameters of `JobChannel.request`. */
export interface ChannelRequest {
  readonly channel: string
  readonly topic: string
  readonly message: Message
  readonly timeout: Duration.DurationInput
}

/** The parent end of one job's channel. */
export interface JobChannel {
  /** What the backend hands to the job. */
  readonly info: ChannelInfo
  /**
   * A request to the job. Not connected: `TargetUnreachable` at once. Reply codes
   * map to `InvalidRequest`, `MessageTooBig`, `RemoteError`; no reply in time:
   * `RequestTimeout` (a late reply is dropped). The connection dropping fails
   * every pending request with `TargetUnreachable` at once.
   */
  readonly request: (request: ChannelRequest) => Effect.Effect<Message, RequestError>
  /** True while a worker is connected (after a valid hello). */
  readonly isConnected: Effect.Effect<boolean>
  /** Waits until a worker is connected. */
  readonly awaitConnected: Effect.Effect<void>
  /** Closes the live connection, if any. */
  readonly disconnect: Effect.Effect<void>
}

/** Opens a job's channel in the given scope. Fails with `LaunchFailed` (e.g. socket path too long). */
export declare const openJobChannel: (options: JobChannelOptions) => Effect.Effect<JobChannel, LaunchFailed, Scope.Scope>
