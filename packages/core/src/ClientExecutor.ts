/**
 * The service callers use: NVFlare's `ClientExecutor` / `JobExecutor` as an
 * Effect service.
 *
 * @since 0.1.0
 */
import { Context, Data, Effect, Queue, Runtime } from "effect"
import type { Duration, Exit, Scope, Stream } from "effect"
import type {
  InvalidJobId,
  InvalidRequest,
  JobNotFound,
  MessageTooBig,
  RemoteError,
  RequestError,
  RequestTimeout,
  StartError,
  TargetUnreachable
} from "./Errors.js"
import type { ClientInfo } from "./JobId.js"
import type { JobExit, LogLine } from "./JobLauncher.js"
import type { Message, Payload } from "./Message.js"
import type { Allocation, ResourceManager, ResourceManagerLike } from "./ResourceManager.js"
import type { ClientStatus, StatusMessage } from "./Status.js"
import { callSafely } from "./internal/listeners.js"

/** How a job ended, after the engine classified its exit. */
export interface JobOutcome {
  readonly jobId: string
  /** A `JobReturnCode` value. */
  readonly returnCode: number
  /** `reasonOf(returnCode)`. */
  readonly reason: string | undefined
  /** The raw exit as the backend saw it (code and signal kept apart). */
  readonly exit: JobExit
}

/** A job that recovery on start found, and what it did with it. */
export interface RecoveryRecord {
  readonly jobId: string
  readonly action: "reaped" | "adopted"
  readonly time: number
}

/** Events of the executor, published to every subscriber from the moment it subscribed. */
export type ExecutorEvent = Data.TaggedEnum<{
  /** The backend launched the job. */
  Launched: { readonly jobId: string; readonly time: number }
  /** The worker reported Started. */
  Started: { readonly jobId: string; readonly time: number }
  /** The worker reported Stopped (its `run` returned). */
  Stopped: { readonly jobId: string; readonly time: number }
  /** The job is finished, freed and unregistered: exactly once per registered job. */
  Completed: { readonly jobId: string; readonly time: number; readonly outcome: JobOutcome; readonly freeError?: string | undefined }
  /** Recovery on start found a job a previous parent left, and reaped or adopted it. */
  Recovered: { readonly jobId: string; readonly time: number; readonly action: "reaped" | "adopted" }
}>

/** Constructors and matchers of `ExecutorEvent`. */
export const ExecutorEvent = Data.taggedEnum<ExecutorEvent>()

/** `args` of `startApp`. */
export interface StartArgs {
  /** The workspace root; the job is deployed at `<workspace>/<jobId>`. */
  readonly workspace: string
  /** Reaches the job as `ctx.set`. */
  readonly set?: Readonly<Record<string, unknown>>
}

/** Parameters of `startApp`. */
export interface StartAppParams {
  /** Who the job runs as; defaults to the executor's `client`. */
  readonly client?: ClientInfo
  readonly jobId: string
  /** The START_JOB meta; its protected keys must equal the deployed meta's. */
  readonly jobMeta?: Readonly<Record<string, unknown>>
  readonly args: StartArgs
  /** The allocation the job will own (from `allocateResources`); `{}` or absent: none. */
  readonly allocatedResource?: Allocation
  /** The resource token of the allocation. */
  readonly token?: string
  /** The manager the allocation is freed to. */
  readonly resourceManager?: ResourceManager | ResourceManagerLike
}

/** Parameters of `sendToJob`. */
export interface SendToJobParams {
  readonly jobId: string
  readonly channel: string
  readonly topic: string
  readonly message: Message
  /** Defaults to the executor's `queryTimeoutMs`. */
  readonly timeout?: Duration.DurationInput
  /** Only lowers the log level of failures. */
  readonly optional?: boolean
}

/** A registered job, as `jobs` lists it. */
export interface JobSummary {
  readonly jobId: string
  readonly status: ClientStatus
  /** Epoch milliseconds of the last status change. */
  readonly since: number
}

/** Errors `startApp` can fail with. */
export type StartAppError = StartError

/** The job log configuration `configureJobLog` sends (more keys may come). */
export interface JobLogConfig {
  readonly level: string
  readonly [key: string]: unknown
}

/** A parent-side handler for a job's `ctx.request`; its value is the reply's payload. */
export type ParentHandler = (jobId: string, message: Message) => Effect.Effect<Payload, unknown>

/** Parent-side handlers: `{ [channel]: { [topic]: handler } }`. */
export type ParentHandlers = Readonly<Record<string, Readonly<Record<string, ParentHandler>>>>

/** The executor service. */
export interface ClientExecutorService {
  /** Validates, registers `Starting`, launches; returns once launched. */
  readonly startApp: (params: StartAppParams) => Effect.Effect<void, StartAppError>
  /** The status message; unknown ids are "not started". */
  readonly checkStatus: (jobId: string) => Effect.Effect<StatusMessage, InvalidJobId>
  /** The `ClientStatus`; unknown ids are `NotStarted`, finished jobs keep their terminal status. */
  readonly getStatus: (jobId: string) => Effect.Effect<ClientStatus, InvalidJobId>
  /** Idempotent; returns after the job's `Completed`. */
  readonly abortApp: (jobId: string) => Effect.Effect<void, InvalidJobId>
  /** The worker aborts its current task; `TargetUnreachable` while Starting. */
  readonly abortTask: (jobId: string) => Effect.Effect<void, RequestError | InvalidJobId>
  /** `{ [group]: stats }` from the worker. */
  readonly getRunInfo: (jobId: string) => Effect.Effect<Readonly<Record<string, unknown>>, RequestError | InvalidJobId>
  /** `{ [group]: { [level]: "<ISO time>: <message>" } }` from the worker (`{}` when none). */
  readonly getErrors: (
    jobId: string
  ) => Effect.Effect<Readonly<Record<string, Readonly<Record<string, string>>>>, RequestError | InvalidJobId>
  /** The worker clears its errors. */
  readonly resetErrors: (jobId: string) => Effect.Effect<void, RequestError | InvalidJobId>
  /** The worker applies the log config, or the call fails with `RemoteError` saying why. */
  readonly configureJobLog: (jobId: string, config: JobLogConfig) => Effect.Effect<void, RequestError | InvalidJobId>
  /**
   * Request/reply to the job. A job still starting (launched, not yet connected) is
   * waited for within the request's timeout: `RequestTimeout` if it does not connect
   * in time, `TargetUnreachable` if it ends first.
   */
  readonly sendToJob: (
    params: SendToJobParams
  ) => Effect.Effect<Message, TargetUnreachable | RequestTimeout | MessageTooBig | InvalidRequest | RemoteError | InvalidJobId>
  /** The registered jobs. */
  readonly jobs: Effect.Effect<ReadonlyArray<JobSummary>>
  /** A hot stream of events from the moment it is run. */
  readonly events: Stream.Stream<ExecutorEvent>
  /** A subscription to events that is live once this Effect returns. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<ExecutorEvent>, never, Scope.Scope>
  /** What recovery on start found and did (also published as `Recovered` events, before anyone could subscribe). */
  readonly recovered: Effect.Effect<ReadonlyArray<RecoveryRecord>>
  /** The job's output lines, where the backend has `capabilities.logs` (empty otherwise, or for an unknown job). */
  readonly logs: (jobId: string) => Stream.Stream<LogLine>
  /** The outcome, also of a job already finished; `JobNotFound` for an id never seen. */
  readonly awaitCompletion: (jobId: string) => Effect.Effect<JobOutcome, JobNotFound | InvalidJobId>
}

/** The executor service tag. */
export class ClientExecutor extends Context.Tag("@flexec/core/ClientExecutor")<ClientExecutor, ClientExecutorService>() {}

/**
 * The executor's hot operations with callbacks instead of fibers, for callers
 * outside Effect (the Promise facade): a fiber per call is most of the cost of
 * a small message. Each `done` gets the operation's exit once, maybe before the
 * call returns. The engine's layer provides it beside `ClientExecutor`, as the
 * implementation its Effect API wraps; `unsafeClientExecutorOf` derives it
 * from any other `ClientExecutor`.
 */
export interface UnsafeClientExecutorService {
  /** `sendToJob`, its exit to `done`. */
  readonly unsafeSendToJob: (
    params: SendToJobParams,
    done: (exit: Exit.Exit<Message, RequestError | InvalidJobId>) => void
  ) => void
  /** `getStatus`, its exit to `done`. */
  readonly unsafeGetStatus: (jobId: string, done: (exit: Exit.Exit<ClientStatus, InvalidJobId>) => void) => void
  /**
   * Calls `listener` with every event published from now on, as it is
   * published, in the order every subscriber sees; the result removes it. A
   * listener that throws is skipped.
   */
  readonly unsafeSubscribe: (listener: (event: ExecutorEvent) => void) => () => void
}

/** The tag of the executor's fiberless door (see `UnsafeClientExecutorService`). */
export class UnsafeClientExecutor extends Context.Tag("@flexec/core/UnsafeClientExecutor")<
  UnsafeClientExecutor,
  UnsafeClientExecutorService
>() {}

/**
 * The fiberless door of an executor that has none: each call runs the
 * service's Effect, and one subscription (live once this returns, until the
 * scope closes) hands events to the listeners.
 */
export const unsafeClientExecutorOf = (
  service: ClientExecutorService
): Effect.Effect<UnsafeClientExecutorService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const listeners = new Set<(event: ExecutorEvent) => void>()
    const queue = yield* service.subscribe
    yield* Effect.forkScoped(
      Effect.forever(Effect.map(Queue.take(queue), (event) => listeners.forEach((listener) => callSafely(listener, event))))
    )
    return {
      unsafeSendToJob: (params, done) => Runtime.runCallback(runtime)(service.sendToJob(params), { onExit: done }),
      unsafeGetStatus: (jobId, done) => Runtime.runCallback(runtime)(service.getStatus(jobId), { onExit: done }),
      unsafeSubscribe: (listener) => {
        listeners.add(listener)
        return () => {
          listeners.delete(listener)
        }
      }
    } satisfies UnsafeClientExecutorService
  })
