/**
 * The options of `makeJobExecutor` and of the backends' executors.
 *
 * @since 0.1.0
 */
import type { ClientInfo } from "./JobId.js"
import type { ChannelOption } from "./protocol/ChannelTransport.js"
import type { JobLauncher } from "./JobLauncher.js"
import type { Payload, Message } from "./Message.js"
import type { Effect } from "effect"

/** What `recover` does with jobs a previous parent of this instance left. */
export type RecoverMode = "reap" | "adopt" | "off"

/** A handler in the options: the Effect API returns an Effect; the Promise facade a value or a Promise. */
export type HandlerOption = (jobId: string, message: Message) => Effect.Effect<Payload, unknown> | Payload | PromiseLike<Payload>

/** Parent-side handlers for the jobs' `ctx.request`: `{ [channel]: { [topic]: handler } }`. */
export type HandlersOption = Readonly<Record<string, Readonly<Record<string, HandlerOption>>>>

/** Options shared by every executor (durations in milliseconds). */
export interface ExecutorOptions {
  /** The site's client identity; `startApp` may name another. */
  readonly client: ClientInfo
  /** The site's startup folder (`{startup}`; `FLEXEC_STARTUP_DIR`). Default `<workspace>/startup` per job. */
  readonly startup?: string
  /** Default `"default"`. */
  readonly instanceId?: string
  /** Default `<os tmpdir>/flexec-<uid>/<backend>-<instanceId>`. */
  readonly runtimeDir?: string
  /** Default `"reap"`. */
  readonly recover?: RecoverMode
  /** How long an aborted job may take to exit before it is terminated (default 10000). */
  readonly graceMs?: number
  /** SIGTERM → SIGKILL (default 5000). */
  readonly killTimeoutMs?: number
  /** A job that has not reported Started by then is killed, outcome 104 (default 60000). */
  readonly startTimeoutMs?: number
  /** Default timeout of requests to jobs (default 5000). */
  readonly queryTimeoutMs?: number
  /**
   * The slack the engine gives a backend beyond the kill timeout (default 10000):
   * a `terminate` that has not returned after `killTimeoutMs + backendSlackMs`, or a
   * `wait` that has not returned that long after a terminate was sent, is given up
   * on (the job completes as lost); `poll` and `validate` get `backendSlackMs` alone.
   */
  readonly backendSlackMs?: number
  /** Each step of the completion pipeline, and the backend's `recover` (default 30000). */
  readonly completionStepTimeoutMs?: number
  /** Largest frame (default 128 MiB). */
  readonly maxFrameBytes?: number
  /** Finished jobs remembered for `getStatus` / `awaitCompletion` (default 1000). */
  readonly historySize?: number
  /** Variables added to every job's environment. */
  readonly env?: Readonly<Record<string, string>>
  /** Names of the parent's variables a job inherits (beyond the allowlist). */
  readonly inheritEnv?: ReadonlyArray<string>
  /** Honour a deployed meta's `byoc: true` (default false). */
  readonly allowByoc?: boolean
  /** Parent-side handlers for the jobs' requests. */
  readonly handlers?: HandlersOption
  /** The argv template (`{workspace}`, `{jobDir}`, `{appDir}`, `{jobId}`, `{startup}`). */
  readonly command?: ReadonlyArray<string>
  /** Labels added to everything launched (the conformance suite's per-run label). */
  readonly labels?: Readonly<Record<string, string>>
  /** How long a worker may take to say hello once connected (default 10000). */
  readonly helloTimeoutMs?: number
  /**
   * For backends whose jobs run on this host's `node` (the process backend): make
   * a V8 code cache of the worker runtime when the executor starts (a short-lived
   * helper process, in the background), so each job loads it about 1 ms faster.
   * Default true.
   */
  readonly workerCodeCache?: boolean
  /**
   * How jobs reach the parent (see `ChannelOption`): `{ transport: "unix" }` or
   * `{ transport: "tcp", host?, port?, advertiseHost?, tls? }`. Default: the
   * `ChannelTransport` of the executor's context, a unix socket unless provided.
   */
  readonly channel?: ChannelOption
  /**
   * How long a job's worker keeps trying to reach its parent, at its start and
   * after its connection drops (the job's `FLEXEC_RECONNECT_MS`; default the
   * worker's 10000). Make it longer than a parent restart when a later parent is
   * to adopt the jobs (`recover: "adopt"`). A positive integer.
   */
  readonly reconnectWindowMs?: number
}

/** Options of `makeJobExecutor`: the shared options and the backend. */
export interface JobExecutorOptions extends ExecutorOptions {
  readonly launcher: JobLauncher
}
