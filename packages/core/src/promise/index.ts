/**
 * `@flexec/core/promise`: the executor as Promises, for callers who do not use
 * Effect. Rejections are the tagged error objects themselves (`_tag` and fields
 * intact), never a `FiberFailure` wrapper.
 *
 * @module @flexec/core/promise
 * @since 0.1.0
 */
import { Cause, Effect, Exit, ManagedRuntime, Option, Scope } from "effect"
import type { Layer } from "effect"
import { ClientExecutor, UnsafeClientExecutor, unsafeClientExecutorOf } from "../ClientExecutor.js"
import { guardExit } from "../internal/exitGuard.js"
import { statusMessage } from "../Status.js"
import type {
  ExecutorEvent,
  UnsafeClientExecutorService,
  JobLogConfig,
  JobOutcome,
  JobSummary,
  RecoveryRecord,
  StartAppParams
} from "../ClientExecutor.js"
import type { Message } from "../Message.js"
import type { ClientStatus, StatusMessage } from "../Status.js"

/** Parameters of the facade's `sendToJob` (timeout in milliseconds). */
export interface PromiseSendToJobParams {
  readonly jobId: string
  readonly channel: string
  readonly topic: string
  readonly message: Message
  readonly timeout?: number
  readonly optional?: boolean
}

/** The executor as Promises. */
export interface PromiseExecutor {
  startApp(params: StartAppParams): Promise<void>
  checkStatus(jobId: string): Promise<StatusMessage>
  getStatus(jobId: string): Promise<ClientStatus>
  abortApp(jobId: string): Promise<void>
  abortTask(jobId: string): Promise<void>
  getRunInfo(jobId: string): Promise<Readonly<Record<string, unknown>>>
  getErrors(jobId: string): Promise<Readonly<Record<string, Readonly<Record<string, string>>>>>
  resetErrors(jobId: string): Promise<void>
  configureJobLog(jobId: string, config: JobLogConfig): Promise<void>
  sendToJob(params: PromiseSendToJobParams): Promise<Message>
  awaitCompletion(jobId: string): Promise<JobOutcome>
  jobs(): Promise<ReadonlyArray<JobSummary>>
  /** What recovery on start found and did. */
  recovered(): Promise<ReadonlyArray<RecoveryRecord>>
  /** Events from the moment of this call, until the loop breaks or the executor closes. */
  events(): AsyncIterable<ExecutorEvent>
  /** Aborts what still runs and releases every resource. */
  close(): Promise<void>
}

/**
 * What happens to the jobs when the program ends without `close()`: `"abort"`
 * (the default) aborts them — on SIGINT, SIGTERM or SIGHUP (when the program
 * installed no handler of its own for it) and on an uncaught exception or
 * unhandled rejection the executor is closed (the real abort) and the program
 * then ends by that signal, or with status 1; on any other exit the backend
 * kills them synchronously (the process backend SIGKILLs their process
 * groups). `"leave"` leaves them running, for a later parent of the same
 * instance to adopt (`recover: "adopt"`) or reap.
 */
export type OnParentExit = "abort" | "leave"

/** Options of `toPromiseExecutor`. */
export interface PromiseExecutorOptions {
  /** Default `"abort"`. */
  readonly onParentExit?: OnParentExit
}

const toRejection = (cause: Cause.Cause<unknown>): unknown => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return failure.value
  const squashed = Cause.squash(cause)
  return squashed instanceof Error ? squashed : new Error(Cause.pretty(cause))
}

/**
 * Builds the executor of `layer` and resolves once it is fully started
 * (recovery done). Rejects with the layer's error (e.g. `InstanceInUse`).
 * Until `close()`, the program's end aborts the executor's jobs (see
 * `OnParentExit`; `{ onParentExit: "leave" }` opts out).
 */
export const toPromiseExecutor = async <E>(
  layer: Layer.Layer<ClientExecutor, E>,
  options: PromiseExecutorOptions = {}
): Promise<PromiseExecutor> => {
  const onParentExit = options.onParentExit ?? "abort"
  if (onParentExit !== "abort" && onParentExit !== "leave") {
    throw new TypeError(`toPromiseExecutor: onParentExit must be "abort" or "leave", not ${JSON.stringify(onParentExit)}`)
  }
  const runtime = ManagedRuntime.make(layer)
  // one promise per call, settled from the fiber's exit (no await in between)
  const run = <A>(effect: Effect.Effect<A, unknown, ClientExecutor>): Promise<A> =>
    new Promise<A>((resolve, reject) => {
      runtime.runCallback(effect, {
        onExit: (exit) => (Exit.isSuccess(exit) ? resolve(exit.value) : reject(toRejection(exit.cause)))
      })
    })
  let service: ClientExecutor["Type"]
  try {
    service = await run(ClientExecutor)
  } catch (e) {
    await runtime.dispose().catch(() => undefined)
    throw e
  }

  // The executor's fiberless door: the engine's own (the implementation its Effect API
  // wraps), or, for any other ClientExecutor layer, one derived from its service. Every
  // hot call below goes through it: one code path.
  const doorScope = Effect.runSync(Scope.make())
  let door: UnsafeClientExecutorService
  try {
    const own = await run(Effect.serviceOption(UnsafeClientExecutor))
    door = Option.isSome(own) ? own.value : await run(Scope.extend(unsafeClientExecutorOf(service), doorScope))
  } catch (e) {
    await runtime.dispose().catch(() => undefined)
    throw e
  }
  /** A door call as a Promise: resolved or rejected from its exit (no await in between). */
  const viaDoor = <A>(call: (done: (exit: Exit.Exit<A, unknown>) => void) => void): Promise<A> =>
    new Promise<A>((resolve, reject) =>
      call((exit) => (Exit.isSuccess(exit) ? resolve(exit.value) : reject(toRejection(exit.cause))))
    )

  // One listener fans out to every `events()` iterator, so an iterator is live from the
  // moment `events()` is called.
  const listeners = new Set<(event: ExecutorEvent | undefined) => void>()
  // the jobs running now, for the exit guard's message
  const running = new Set<string>()
  const fanOut = (event: ExecutorEvent) => {
    if (event._tag === "Completed") running.delete(event.jobId)
    else if (event._tag === "Launched" || (event._tag === "Recovered" && event.action === "adopted")) running.add(event.jobId)
    listeners.forEach((l) => l(event))
  }
  const removeListener = door.unsafeSubscribe(fanOut)
  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= (async () => {
      await runtime.dispose()
      unguard?.()
      removeListener()
      await Effect.runPromise(Scope.close(doorScope, Exit.void))
      listeners.forEach((l) => l(undefined))
      listeners.clear()
    })()
    return closed
  }
  const unguard = onParentExit === "abort" ? guardExit({ running: () => running.size, close }) : undefined

  const events = (): AsyncIterable<ExecutorEvent> => {
    const buffer: Array<ExecutorEvent> = []
    let wake: (() => void) | undefined
    let done = closed !== undefined
    const listener = (event: ExecutorEvent | undefined) => {
      if (event === undefined) done = true
      else buffer.push(event)
      wake?.()
    }
    listeners.add(listener)
    return {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<ExecutorEvent>> => {
          while (buffer.length === 0 && !done) await new Promise<void>((resolve) => (wake = resolve))
          wake = undefined
          const event = buffer.shift()
          if (event !== undefined) return { value: event, done: false }
          listeners.delete(listener)
          return { value: undefined, done: true }
        },
        return: async (): Promise<IteratorResult<ExecutorEvent>> => {
          done = true
          listeners.delete(listener)
          return { value: undefined, done: true }
        }
      })
    }
  }

  return {
    startApp: (params) => run(service.startApp(params)),
    checkStatus: (jobId) => viaDoor((done) => door.unsafeGetStatus(jobId, (exit) => done(Exit.map(exit, statusMessage)))),
    getStatus: (jobId) => viaDoor((done) => door.unsafeGetStatus(jobId, done)),
    abortApp: (jobId) => run(service.abortApp(jobId)),
    abortTask: (jobId) => run(service.abortTask(jobId)),
    getRunInfo: (jobId) => run(service.getRunInfo(jobId)),
    getErrors: (jobId) => run(service.getErrors(jobId)),
    resetErrors: (jobId) => run(service.resetErrors(jobId)),
    configureJobLog: (jobId, config) => run(service.configureJobLog(jobId, config)),
    // a number is a DurationInput in milliseconds: the parameters pass as they are
    sendToJob: (params) => viaDoor((done) => door.unsafeSendToJob(params, done)),
    awaitCompletion: (jobId) => run(service.awaitCompletion(jobId)),
    jobs: () => run(service.jobs),
    recovered: () => run(service.recovered),
    events,
    close
  }
}
