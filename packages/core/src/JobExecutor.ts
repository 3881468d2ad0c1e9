/**
 * `makeJobExecutor`: the engine. It implements every `ClientExecutor` method
 * over any `JobLauncher`: validation, the registry, supervision, the outcome
 * table, completion exactly once, the history, events, recovery.
 *
 * One job's way through it: `startApp` → validate → register `Starting` →
 * open the job's channel → `launcher.launch` → a supervising fiber waits for
 * Started and for the exit → classify → close the job's scope → free →
 * unregister → `Completed`.
 *
 * @since 0.1.0
 */
import {
  Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  Fiber,
  FiberId,
  Layer,
  Option,
  PubSub,
  Runtime,
  Schedule,
  Schema,
  Scope,
  Stream
} from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type {
  ClientExecutorService,
  RecoveryRecord,
  JobOutcome,
  JobSummary,
  SendToJobParams,
  StartAppError,
  StartAppParams
} from "./ClientExecutor.js"
import { ClientExecutor, ExecutorEvent } from "./ClientExecutor.js"
import {
  BackendUnavailable,
  InvalidClient,
  InvalidJobMeta,
  JobAborted,
  JobAlreadyRegistered,
  JobMetaMissing,
  JobNotFound,
  LaunchFailed,
  TargetUnreachable
} from "./Errors.js"
import type { InstanceInUse, InvalidJobId, RequestError } from "./Errors.js"
import type { HandlerOption, JobExecutorOptions } from "./ExecutorOptions.js"
import { decodeClientInfo, decodeJobId } from "./JobId.js"
import type { ClientInfo, JobId } from "./JobId.js"
import type { ChannelInfo, JobExit, JobHandle, LaunchRequest, RecoveredJob } from "./JobLauncher.js"
import { resolveCommand } from "./JobLauncher.js"
import { decodeJobMeta, launcherSpecFor, mergeWithDeployed, resourceSpecFor } from "./JobMeta.js"
import type { JobMeta } from "./JobMeta.js"
import * as Message from "./Message.js"
import { bindJobChannel, openJobChannel } from "./protocol/ChannelServer.js"
import type { ChannelRequest, IncomingRequest, JobChannel } from "./protocol/ChannelServer.js"
import type { Allocation, ResourceManager } from "./ResourceManager.js"
import { adapt, gpuIdsOf } from "./ResourceManagerAdapter.js"
import { Channel, ClientStatus, JobReturnCode, reasonOf, statusMessage, Topic } from "./Status.js"
import { DEFAULT_MAX_FRAME_BYTES } from "./protocol/Frame.js"
import { BackendFault, boundedCall, handleProblem, launchErrorOf, lost, normalizeExit } from "./internal/backendGuard.js"
import { EventListeners, makeEventListeners } from "./internal/eventListeners.js"
import { requestNowOf, SendNow, StatusNow } from "./internal/fastRequest.js"
import type { SendNowFn, StatusNowFn } from "./internal/fastRequest.js"
import { plainTimerFor } from "./internal/liveTimer.js"
import { requestWhenConnected } from "./internal/startingRequest.js"
import { buildJobEnv } from "./internal/jobEnv.js"
import { acquireOwnerLock } from "./internal/ownerLock.js"
import { randomToken } from "./internal/randomPool.js"
import { consumeRcFile, removeRcFile } from "./internal/rcFile.js"
import { makeWorkerCodeCache, prepareWorkerRuntime } from "./internal/workerRuntime.js"

/** Defaults of the executor options, as DESIGN.md fixes them. */
export const defaults = {
  instanceId: "default",
  recover: "reap",
  graceMs: 10_000,
  killTimeoutMs: 5_000,
  startTimeoutMs: 60_000,
  queryTimeoutMs: 5_000,
  completionStepTimeoutMs: 30_000,
  backendSlackMs: 10_000,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  historySize: 1000,
  helloTimeoutMs: 10_000
} as const

/** The first retry of a failed wait for a job's exit. */
const firstWaitRetry = Duration.millis(100)
/** Later retries: doubling from 100 ms, at most every 5 s. */
const waitRetries = Schedule.exponential(firstWaitRetry, 2).pipe(Schedule.union(Schedule.spaced(Duration.seconds(5))))

/** The default runtime directory: `<os tmpdir>/flexec-<uid>/<backend>-<instanceId>`. */
export const defaultRuntimeDir = (backend: string, instanceId: string): string =>
  path.join(os.tmpdir(), `flexec-${process.getuid?.() ?? "user"}`, `${backend}-${instanceId}`)

type LaunchError = LaunchFailed | import("./Errors.js").ImageNotFound | BackendUnavailable | JobAborted

interface Entry {
  readonly jobId: JobId
  status: ClientStatus
  since: number
  phase: "launching" | "launched"
  /** Our own abort (or close) was requested before the exit was seen. */
  abortRequested: boolean
  startTimedOut: boolean
  exitSeen: boolean
  handle: JobHandle | undefined
  channel: JobChannel | undefined
  launchFiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  abortFiber: Fiber.RuntimeFiber<void> | undefined
  /** Done once the first terminate was sent: from then on the backend's wait has a deadline. */
  readonly terminateSent: Deferred.Deferred<void>
  readonly launched: Deferred.Deferred<void, LaunchError>
  readonly started: Deferred.Deferred<void>
  readonly exited: Deferred.Deferred<JobExit>
  readonly completed: Deferred.Deferred<JobOutcome>
  readonly allocation: Allocation
  readonly token: string
  readonly resourceManager: ResourceManager | undefined
  readonly jobScope: Scope.CloseableScope
  readonly rcFile: string | undefined
}

interface HistoryEntry {
  readonly status: ClientStatus
  readonly outcome: JobOutcome
}

const StatusNotification = Schema.Struct({ status: Schema.Literal(2, 3) })
const decodeStatusNotification = Schema.decodeUnknown(StatusNotification)

const emptyExit: JobExit = { code: null, signal: null, oomKilled: false, lost: false }

/**
 * The outcome table of DESIGN.md, top-down, first matching row wins. `rc` (the
 * rc file's value, where the worker left one) stands for the exit code.
 */
export const classifyExit = (facts: {
  readonly abortRequested: boolean
  readonly startTimedOut: boolean
  readonly startedSeen: boolean
  readonly exit: JobExit
  readonly rc: number | undefined
}): number => {
  if (facts.abortRequested) return JobReturnCode.Aborted
  if (facts.startTimedOut) return JobReturnCode.InfrastructureError
  if (facts.exit.lost && facts.rc === undefined) return JobReturnCode.Unknown
  const code = facts.rc ?? facts.exit.code
  if (code === 0 && !facts.exit.oomKilled) return JobReturnCode.Success
  if (code !== null && code >= 101 && code <= 104) return code
  if (!facts.startedSeen) return JobReturnCode.InfrastructureError
  return JobReturnCode.ExecutionError
}

const describe = (e: unknown): string =>
  e instanceof Error ? e.message : typeof e === "string" ? e : (() => {
    try {
      return JSON.stringify(e)
    } catch {
      return String(e)
    }
  })()

const toHandlerEffect = (handler: HandlerOption, jobId: string, message: Message.Message) =>
  Effect.suspend(() => {
    const out = handler(jobId, message)
    if (Effect.isEffect(out)) return out as Effect.Effect<Message.Payload, unknown>
    if (out !== null && typeof out === "object" && typeof (out as PromiseLike<unknown>).then === "function") {
      return Effect.tryPromise({ try: () => Promise.resolve(out as PromiseLike<Message.Payload>), catch: (e) => e })
    }
    return Effect.succeed(out as Message.Payload)
  })

/**
 * Builds an executor over `options.launcher`, for the lifetime of the scope.
 * Closing the scope aborts what still runs and waits for every job's
 * completion. Fails with `InstanceInUse` when a live parent holds the instance.
 */
export const makeJobExecutor = (
  options: JobExecutorOptions
): Effect.Effect<ClientExecutorService, InstanceInUse | BackendUnavailable | InvalidClient, Scope.Scope> =>
  Effect.gen(function* () {
    const launcher = options.launcher
    const client = yield* decodeClientInfo(options.client)
    const instanceId = options.instanceId ?? defaults.instanceId
    const runtimeDir = path.resolve(options.runtimeDir ?? defaultRuntimeDir(launcher.name, instanceId))
    const graceMs = options.graceMs ?? defaults.graceMs
    const killTimeout = Duration.millis(options.killTimeoutMs ?? defaults.killTimeoutMs)
    const startTimeout = Duration.millis(options.startTimeoutMs ?? defaults.startTimeoutMs)
    const queryTimeout = Duration.millis(options.queryTimeoutMs ?? defaults.queryTimeoutMs)
    const stepTimeout = Duration.millis(options.completionStepTimeoutMs ?? defaults.completionStepTimeoutMs)
    const backendSlack = Duration.millis(options.backendSlackMs ?? defaults.backendSlackMs)
    /** How long a terminate may take, and a wait after a terminate was sent. */
    const killBound = Duration.sum(killTimeout, backendSlack)
    const maxFrameBytes = options.maxFrameBytes ?? defaults.maxFrameBytes
    const historySize = Math.max(0, options.historySize ?? defaults.historySize)
    const helloTimeout = Duration.millis(options.helloTimeoutMs ?? defaults.helloTimeoutMs)
    const recoverMode = options.recover ?? defaults.recover
    const runAs = (launcher as { readonly runAs?: { readonly uid: number; readonly gid: number } }).runAs

    // The runtime directory: traversable (a job running as another user reaches its own
    // socket directory), not listable by others.
    yield* Effect.try({
      try: () => {
        fs.mkdirSync(path.join(runtimeDir, "ch"), { recursive: true, mode: 0o711 })
        fs.chmodSync(runtimeDir, 0o711)
        fs.chmodSync(path.join(runtimeDir, "ch"), 0o711)
      },
      catch: (e) => new BackendUnavailable({ backend: launcher.name, detail: `cannot create runtime directory ${runtimeDir}: ${describe(e)}` })
    })
    yield* acquireOwnerLock(runtimeDir, instanceId)
    const workerRuntime = yield* Effect.try({
      try: () => prepareWorkerRuntime(runtimeDir),
      catch: (e) => new BackendUnavailable({ backend: launcher.name, detail: `cannot locate @flexec/core/worker: ${describe(e)}` })
    })

    const events = yield* PubSub.unbounded<ExecutorEvent>()
    const recovered: Array<RecoveryRecord> = []
    const registry = new Map<string, Entry>()
    const history = new Map<string, HistoryEntry>()
    let closing = false

    const executorScope = yield* Effect.scope
    // Job fibers live in their own scope, closed after the abort-all finalizer below has run.
    const jobsScope = yield* Scope.fork(executorScope, ExecutionStrategy.sequential)

    // The worker runtime's code cache, made in the background (jobs started before it is
    // there compile the runtime as usual); the helper process goes with the executor.
    if (launcher.workerRuntimeOnHost === true && options.workerCodeCache !== false) {
      yield* Effect.forkIn(
        makeWorkerCodeCache(workerRuntime, {
          execPath: process.execPath,
          env: buildJobEnv({ parent: process.env, inherit: options.inheritEnv ?? [], site: options.env ?? {}, flexec: {} }),
          timeout: Duration.seconds(30)
        }),
        executorScope
      )
    }

    // plain listeners (the Promise facade's) get each event as it is published
    const direct = makeEventListeners()
    const publish = (event: ExecutorEvent) =>
      Effect.suspend(() => {
        direct.emit(event)
        return PubSub.publish(events, event)
      })
    const now = Clock.currentTimeMillis

    const remember = (jobId: string, entry: HistoryEntry) => {
      history.delete(jobId)
      history.set(jobId, entry)
      while (history.size > historySize) {
        const oldest = history.keys().next()
        if (oldest.done) break
        history.delete(oldest.value)
      }
    }

    const setStatus = (entry: Entry, status: ClientStatus) =>
      Effect.gen(function* () {
        if (status <= entry.status) return false
        entry.status = status
        entry.since = yield* now
        return true
      })

    // ---- requests from the job -------------------------------------------------------
    const onRequest = (entry: Entry) => (request: IncomingRequest) => {
      if (request.channel === Channel.Admin && request.topic === Topic.NotifyJobStatus) {
        return Option.some(
          Effect.gen(function* () {
            const { status } = yield* decodeStatusNotification(request.message.payload)
            // Started is never published before Launched
            yield* Deferred.await(entry.launched).pipe(Effect.ignore)
            const changed = yield* setStatus(entry, status)
            const time = yield* now
            if (status === ClientStatus.Started) {
              yield* Deferred.succeed(entry.started, undefined)
              if (changed) yield* publish(ExecutorEvent.Started({ jobId: entry.jobId, time }))
            } else if (changed) {
              yield* Deferred.succeed(entry.started, undefined)
              yield* publish(ExecutorEvent.Stopped({ jobId: entry.jobId, time }))
            }
            return undefined
          })
        )
      }
      const handler = options.handlers?.[request.channel]?.[request.topic]
      return handler === undefined ? Option.none() : Option.some(toHandlerEffect(handler, entry.jobId, request.message))
    }

    // ---- completion ---------------------------------------------------------------------
    const complete = (entry: Entry, exit: JobExit, rc: number | undefined) =>
      Effect.gen(function* () {
        const returnCode = classifyExit({
          abortRequested: entry.abortRequested,
          startTimedOut: entry.startTimedOut,
          startedSeen: entry.status >= ClientStatus.Started,
          exit,
          rc
        })
        const outcome: JobOutcome = { jobId: entry.jobId, returnCode, reason: reasonOf(returnCode), exit }
        // the job's scope: the channel and whatever the backend acquired
        // Each step may hang: run it interruptibly and disconnected, so its timeout returns.
        yield* Scope.close(entry.jobScope, Exit.void).pipe(
          Effect.disconnect,
          Effect.interruptible,
          Effect.timeout(stepTimeout),
          Effect.catchAllCause((cause) => Effect.logWarning(`job ${entry.jobId}: closing its scope failed`, cause))
        )
        let freeError: string | undefined
        if (entry.resourceManager !== undefined && Object.keys(entry.allocation).length > 0) {
          const freed = yield* entry.resourceManager.freeResources(entry.allocation, entry.token).pipe(
            Effect.disconnect,
            Effect.interruptible,
            Effect.timeoutFail({
              duration: stepTimeout,
              onTimeout: () => `freeResources did not return within ${Duration.toMillis(stepTimeout)} ms`
            }),
            Effect.exit
          )
          if (Exit.isFailure(freed)) {
            freeError = Cause.isFailType(freed.cause) && typeof freed.cause.error === "string"
              ? freed.cause.error
              : describe(Cause.squash(freed.cause))
          }
        }
        const terminal =
          returnCode === JobReturnCode.Success || returnCode === JobReturnCode.Aborted ? ClientStatus.Stopped : ClientStatus.Exception
        registry.delete(entry.jobId)
        remember(entry.jobId, { status: terminal, outcome })
        yield* setStatus(entry, terminal)
        const time = yield* now
        yield* publish(ExecutorEvent.Completed({ jobId: entry.jobId, time, outcome, freeError }))
        yield* Deferred.succeed(entry.completed, outcome)
      }).pipe(Effect.uninterruptible)

    /**
     * Terminates the job (SIGTERM, SIGKILL after the kill timeout), bounded: a terminate
     * that hangs or throws is logged and given up on; the wait's deadline then decides.
     */
    const terminateJob = (entry: Entry, handle: JobHandle) =>
      Effect.suspend(() => {
        Deferred.unsafeDone(entry.terminateSent, Exit.void)
        return boundedCall(launcher.name, `job ${entry.jobId}: terminate`, () => handle.terminate({ killAfter: killTimeout }), killBound).pipe(
          Effect.catchAll(() => Effect.void)
        )
      })

    /**
     * The last look at a job whose backend stopped answering its wait: a bounded poll,
     * then lost (the outcome table's unknown end).
     */
    const lastLook = (entry: Entry, handle: JobHandle): Effect.Effect<JobExit> =>
      handle.poll === undefined
        ? Effect.succeed(lost)
        : boundedCall(launcher.name, `job ${entry.jobId}: poll`, () => handle.poll, backendSlack).pipe(
            Effect.flatMap((polled) =>
              Option.isOption(polled) && Option.isSome(polled)
                ? normalizeExit(launcher.name, entry.jobId, polled.value)
                : Effect.succeed(lost)
            ),
            Effect.catchAll(() => Effect.succeed(lost))
          )

    /**
     * Waits for the exit, retrying while the backend cannot be reached (after 100 ms,
     * then backing off to every 5 s). The retry's machinery is built only on a failure:
     * on every job's way to Started, the wait is the backend's wait and nothing more.
     * A wait that throws (a defect) is given up on at once, and one that has not returned
     * `killTimeout + backendSlack` after a terminate was sent then: the job is terminated
     * (bounded) and, unless a last poll sees its exit, taken as lost.
     */
    const waitForExit = (entry: Entry, handle: JobHandle): Effect.Effect<JobExit> => {
      const deadline = Deferred.await(entry.terminateSent).pipe(
        Effect.zipRight(Effect.sleep(killBound)),
        Effect.as("hung" as const)
      )
      const attempt = Effect.suspend(() => handle.wait).pipe(
        Effect.interruptible,
        Effect.disconnect,
        Effect.catchAllCause((cause): Effect.Effect<"broken", BackendUnavailable> => {
          const failure = Cause.failureOption(cause)
          // BackendUnavailable is retried; anything else (a defect, an undeclared error) is a broken wait
          if (Option.isSome(failure) && (failure.value as { _tag?: unknown } | null)?._tag === "BackendUnavailable") {
            return Effect.zipRight(
              Effect.logWarning(`job ${entry.jobId}: backend unreachable while waiting: ${failure.value.detail}`),
              Effect.fail(failure.value)
            )
          }
          const what = Option.isSome(failure) ? `failed with an undeclared error: ${describe(failure.value)}` : `threw a defect: ${describe(Cause.squash(cause))}`
          return Effect.as(Effect.logError(`backend "${launcher.name}": job ${entry.jobId}: wait ${what}`), "broken" as const)
        })
      )
      // the deadline races the whole retry loop, not each attempt: retries after the terminate
      // (a backend that stopped answering) end with it too
      return attempt.pipe(
        Effect.catchAll(() => Effect.zipRight(Effect.sleep(firstWaitRetry), Effect.retry(attempt, waitRetries))),
        Effect.orDie,
        Effect.raceFirst(deadline),
        Effect.flatMap((result) => {
          if (result === "broken") return Effect.zipRight(terminateJob(entry, handle), lastLook(entry, handle))
          if (result === "hung") {
            return Effect.zipRight(
              Effect.logError(
                `backend "${launcher.name}": job ${entry.jobId}: wait did not return within ${Duration.toMillis(killBound)} ms of the terminate; taken as lost`
              ),
              lastLook(entry, handle)
            )
          }
          return normalizeExit(launcher.name, entry.jobId, result)
        })
      )
    }

    const supervise = (entry: Entry, handle: JobHandle, withStartTimeout: boolean) =>
      Effect.gen(function* () {
        if (withStartTimeout) {
          // one sleeping fiber (no race of two), interrupted with the job's scope
          yield* Effect.sleep(startTimeout).pipe(
            Effect.zipRight(
              Effect.suspend(() => {
                if (entry.exitSeen || entry.status >= ClientStatus.Started) return Effect.void
                entry.startTimedOut = true
                return terminateJob(entry, handle)
              })
            ),
            Effect.forkIn(entry.jobScope)
          )
        }
        const exit = yield* waitForExit(entry, handle)
        entry.exitSeen = true
        yield* Deferred.succeed(entry.exited, exit)
        const rc = entry.rcFile === undefined ? undefined : consumeRcFile(entry.rcFile)
        yield* complete(entry, exit, rc)
      })

    // ---- the abort procedure (runs once per job) ----------------------------------------
    const runAbort = (entry: Entry): Effect.Effect<void> =>
      Effect.gen(function* () {
        if (entry.phase === "launching") {
          const fiber = entry.launchFiber
          if (fiber) yield* Fiber.interrupt(fiber)
          return
        }
        const handle = entry.handle!
        const awaitExitWithin = (ms: number) =>
          Deferred.await(entry.exited).pipe(Effect.timeout(Duration.millis(ms)), Effect.option)
        if (entry.status === ClientStatus.Starting) {
          yield* terminateJob(entry, handle)
          return
        }
        if (entry.status === ClientStatus.Started && entry.channel) {
          yield* entry.channel
            .request({
              channel: Channel.ClientCommand,
              topic: Topic.Abort,
              message: Message.make({}),
              timeout: Duration.millis(Math.max(1, Math.min(graceMs, Duration.toMillis(queryTimeout))))
            })
            .pipe(Effect.ignore)
        }
        const exited = yield* awaitExitWithin(graceMs)
        if (Option.isNone(exited)) yield* terminateJob(entry, handle)
      })

    const abortEntry = (entry: Entry) =>
      Effect.gen(function* () {
        if (!entry.exitSeen) entry.abortRequested = true
        // interruptible: close() calls this from a finalizer, whose uninterruptibility the fork
        // would inherit, and the grace-period timeout must be able to fire
        if (entry.abortFiber === undefined) {
          entry.abortFiber = yield* Effect.forkIn(Effect.interruptible(runAbort(entry)), jobsScope)
        }
        yield* Deferred.await(entry.completed)
      })

    // ---- one job's life -------------------------------------------------------------------
    /** The launch: the channel's socket, the backend's launch, then the rest of the channel. */
    const launchPhase = (entry: Entry, build: (channel: ChannelInfo) => LaunchRequest, channelDir: string, token: string) =>
      Effect.gen(function* () {
        if (entry.rcFile) removeRcFile(entry.rcFile)
        // the socket listens before the launch; the rest of the channel's set-up runs
        // after it, while the job starts (a connection that comes first waits for it)
        const bound = yield* bindJobChannel({
          jobId: entry.jobId,
          token,
          dir: channelDir,
          maxFrameBytes,
          helloTimeout,
          onRequest: onRequest(entry),
          ...(runAs ? { owner: runAs } : {})
        }).pipe(Scope.extend(entry.jobScope))
        const handle = yield* guardedLaunch(entry, build(bound.info))
        entry.channel = yield* bound.serve.pipe(Scope.extend(entry.jobScope))
        return handle
      })

    /**
     * The backend's launch, on a fiber of its own. An abort's interruption waits for that fiber
     * to end, at most `backendSlack`: a launch's uninterruptible steps (an `acquireRelease`'s
     * acquire: a spawn, a pid file) finish and register their release in the job's scope while
     * it is still open, so the scope's close, before `Completed`, releases them. A launch still
     * running after `backendSlack` is given up on (logged): whatever it acquires afterwards goes
     * to the job's scope, closed by then, so it is released as it is acquired.
     */
    const interruptibleLaunch = <A, E>(entry: Entry, launch: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.forkDaemon(Effect.interruptible(launch)), (fiber) =>
          restore(Fiber.join(fiber)).pipe(
            Effect.onInterrupt(() =>
              Effect.flatMap(Effect.fiberId, (self) => Fiber.interruptAsFork(fiber, self)).pipe(
                Effect.zipRight(Effect.interruptible(Fiber.await(fiber))),
                Effect.timeout(backendSlack),
                Effect.catchAll(() =>
                  Effect.logError(
                    `backend "${launcher.name}": job ${entry.jobId}: launch did not end within ${Duration.toMillis(backendSlack)} ms of its interruption; given up on`
                  )
                )
              )
            )
          )
        )
      )

    /**
     * The backend's launch, checked: interrupted, it is waited for at most `backendSlack` (see
     * `interruptibleLaunch`), and a handle the engine cannot supervise is `LaunchFailed` naming
     * what it lacks (its terminate, where it has one, is called first, bounded).
     */
    const guardedLaunch = (entry: Entry, request: LaunchRequest): Effect.Effect<JobHandle, LaunchError> =>
      interruptibleLaunch(entry, Effect.suspend(() => launcher.launch(request)).pipe(Scope.extend(entry.jobScope))).pipe(
        Effect.flatMap((value: unknown) => {
          const problem = handleProblem(value)
          if (problem === undefined) return Effect.succeed(value as JobHandle)
          const reason = `backend "${launcher.name}" ${problem}`
          const terminate = typeof (value as { terminate?: unknown } | null)?.terminate === "function"
            ? terminateJob(entry, value as JobHandle)
            : Effect.void
          return Effect.zipRight(
            Effect.zipRight(Effect.logError(`job ${entry.jobId}: ${reason}`), terminate),
            Effect.fail(new LaunchFailed({ jobId: entry.jobId, reason }))
          )
        })
      )

    /** Everything after the launch: its outcome, then the job's supervision to completion. */
    const jobLife = (entry: Entry, launchExit: Exit.Exit<JobHandle, LaunchError>) =>
      Effect.gen(function* () {
        if (Exit.isFailure(launchExit)) {
          const interrupted = Cause.isInterruptedOnly(launchExit.cause)
          const error: LaunchError = interrupted
            ? new JobAborted({ jobId: entry.jobId })
            : launchErrorOf(launcher.name, entry.jobId, launchExit.cause)
          if (!interrupted) yield* Effect.logWarning(`job ${entry.jobId}: launch failed: ${error.message}`)
          entry.exitSeen = true
          yield* Deferred.succeed(entry.exited, emptyExit)
          // the caller hears of the failure only once the job is unregistered, freed and Completed
          yield* complete(entry, emptyExit, undefined).pipe(
            Effect.ensuring(Deferred.fail(entry.launched, error)),
            Effect.uninterruptible
          )
          return
        }
        const handle = launchExit.value
        entry.handle = handle
        entry.phase = "launched"
        yield* publish(ExecutorEvent.Launched({ jobId: entry.jobId, time: yield* now }))
        yield* Deferred.succeed(entry.launched, undefined)
        // An abort that raced the end of the launch: run it again now that there is a handle.
        if (entry.abortRequested) entry.abortFiber = yield* Effect.forkIn(Effect.interruptible(runAbort(entry)), jobsScope)
        yield* supervise(entry, handle, true)
      })

    const newEntry = (fields: {
      jobId: JobId
      allocation: Allocation
      token: string
      resourceManager: ResourceManager | undefined
      rcFile: string | undefined
      status: ClientStatus
      phase: Entry["phase"]
    }) =>
      Effect.gen(function* () {
        const entry: Entry = {
          ...fields,
          since: yield* now,
          abortRequested: false,
          startTimedOut: false,
          exitSeen: false,
          handle: undefined,
          channel: undefined,
          launchFiber: undefined,
          abortFiber: undefined,
          terminateSent: Deferred.unsafeMake<void>(FiberId.none),
          // made at once: four steps fewer on the way to the spawn
          launched: Deferred.unsafeMake<void, LaunchError>(FiberId.none),
          started: Deferred.unsafeMake<void>(FiberId.none),
          exited: Deferred.unsafeMake<JobExit>(FiberId.none),
          completed: Deferred.unsafeMake<JobOutcome>(FiberId.none),
          jobScope: yield* Scope.make()
        }
        return entry
      })

    const newChannelDir = () => path.join(runtimeDir, "ch", randomToken(6))

    // ---- startApp -------------------------------------------------------------------------
    const startApp = (params: StartAppParams): Effect.Effect<void, StartAppError> =>
      Effect.gen(function* () {
        const jobId = yield* decodeJobId(params.jobId)
        const jobClient: ClientInfo = params.client === undefined ? client : yield* decodeClientInfo(params.client)
        const site = jobClient.clientName
        const workspaceArg = (params.args as StartAppParams["args"] | undefined)?.workspace
        if (typeof workspaceArg !== "string" || workspaceArg.length === 0) {
          return yield* new InvalidJobMeta({ jobId, issues: "args.workspace must be the path of the workspace" })
        }
        const workspace = path.resolve(workspaceArg)
        const jobDir = path.join(workspace, jobId)
        const metaPath = path.join(jobDir, "meta.json")
        const deployedRaw = yield* readDeployedMeta(jobId, jobDir, metaPath)
        const deployed = yield* decodeJobMeta(jobId, deployedRaw)
        // the given meta's job_id is a protected key: a different one is JobMetaMismatch (the drift check)
        if (params.jobMeta !== undefined) yield* decodeJobMeta(jobId, params.jobMeta, { checkJobId: false })
        const meta = yield* mergeWithDeployed(jobId, deployed, params.jobMeta, options.allowByoc === true)
        if (launcher.validate) {
          const validate = launcher.validate
          yield* boundedCall(launcher.name, `job ${jobId}: validate`, () => validate(meta, site), backendSlack).pipe(
            Effect.mapError((e) =>
              e instanceof BackendFault
                ? new LaunchFailed({ jobId, reason: e.message })
                : (e as { _tag?: unknown })?._tag !== "InvalidJobMeta"
                ? new LaunchFailed({ jobId, reason: `backend "${launcher.name}": validate failed with an undeclared error: ${describe(e)}` })
                : e.jobId === jobId
                ? e
                : new InvalidJobMeta({ jobId, issues: e.issues })
            )
          )
        }
        const commandTemplate = yield* commandFor(jobId, meta, site, options.command)
        const allocation: Allocation = params.allocatedResource ?? {}
        const gpus = gpuIdsOf(allocation)
        yield* checkGpuCount(jobId, meta, site, gpus)
        const set = params.args.set ?? {}
        const setJson = yield* Effect.try({
          try: () => JSON.stringify(set),
          catch: () => new InvalidJobMeta({ jobId, issues: "args.set must be JSON-serializable" })
        })
        const resourceManager = params.resourceManager === undefined ? undefined : adapt(params.resourceManager)
        if (Object.keys(allocation).length > 0 && resourceManager === undefined) {
          return yield* new InvalidJobMeta({ jobId, issues: "allocatedResource was given without the resourceManager it is freed to" })
        }

        // Register atomically (no yield between the check and the set).
        if (closing) {
          return yield* new BackendUnavailable({ backend: launcher.name, detail: "the executor is closing" })
        }
        const entry = yield* newEntry({
          jobId,
          allocation,
          token: params.token ?? "",
          resourceManager,
          rcFile: path.join(jobDir, "_process_rc.txt"),
          status: ClientStatus.Starting,
          phase: "launching"
        })
        if (registry.has(jobId)) {
          yield* Scope.close(entry.jobScope, Exit.void)
          return yield* new JobAlreadyRegistered({ jobId })
        }
        registry.set(jobId, entry)
        history.delete(jobId)

        const startup = options.startup ?? path.join(workspace, "startup")
        const paths = {
          workspace,
          jobDir,
          appDir: path.join(jobDir, `app_${site}`),
          startup,
          local: path.join(workspace, "local"),
          logFile: path.join(jobDir, "log.txt"),
          rcFile: path.join(jobDir, "_process_rc.txt"),
          runtimeDir
        }
        const command = resolveCommand(commandTemplate ?? [process.execPath, "{appDir}/main.js"], {
          workspace,
          jobDir: paths.jobDir,
          appDir: paths.appDir,
          jobId,
          startup
        })
        const token = randomToken(32)
        const channelDir = newChannelDir()
        const build = (channel: ChannelInfo): LaunchRequest => ({
          jobId,
          client: jobClient,
          site,
          instanceId,
          meta,
          paths,
          allocation,
          gpus,
          commandTemplate,
          command,
          env: buildJobEnv({
            parent: process.env,
            inherit: options.inheritEnv ?? [],
            site: options.env ?? {},
            flexec: {
              FLEXEC_PARENT_URL: channel.url,
              FLEXEC_CHANNEL_TOKEN: token,
              FLEXEC_JOB_ID: jobId,
              FLEXEC_CLIENT_NAME: site,
              FLEXEC_INSTANCE_ID: instanceId,
              FLEXEC_WORKSPACE: workspace,
              FLEXEC_JOB_DIR: jobDir,
              FLEXEC_STARTUP_DIR: startup,
              FLEXEC_SET: setJson,
              FLEXEC_WORKER_MODULE: workerRuntime.modulePath,
              FLEXEC_JOB_AUTH_TOKEN: jobClient.token,
              FLEXEC_JOB_TOKEN_SIGNATURE: jobClient.tokenSignature,
              FLEXEC_JOB_SSID: jobClient.ssid
            }
          }),
          channel,
          set,
          labels: { ...options.labels },
          killTimeout,
          workerRuntime
        })
        // One fiber before the spawn: the launch. However it ends (launched, failed, or
        // interrupted by abortApp), its exit starts the job's life, so a registered job always
        // has one. Both are interruptible whatever the caller's region.
        entry.launchFiber = yield* Effect.forkIn(
          Effect.interruptible(launchPhase(entry, build, channelDir, token)).pipe(
            Effect.onExit((launchExit) => Effect.forkIn(Effect.interruptible(jobLife(entry, launchExit)), jobsScope))
          ),
          jobsScope
        )
        yield* Deferred.await(entry.launched)
      })

    // ---- queries ----------------------------------------------------------------------------
    const statusOf = (jobId: string) =>
      decodeJobId(jobId).pipe(
        Effect.map((id) => registry.get(id)?.status ?? history.get(id)?.status ?? ClientStatus.NotStarted)
      )

    const channelOf = (jobId: JobId) =>
      Effect.suspend(() => {
        const channel = registry.get(jobId)?.channel
        return channel ? Effect.succeed(channel) : Effect.fail(new TargetUnreachable({ jobId }))
      })

    const request = (jobId: string, topic: string, payload: Message.Payload, timeout = queryTimeout) =>
      Effect.gen(function* () {
        const id = yield* decodeJobId(jobId)
        const channel = yield* channelOf(id)
        return yield* channel.request({ channel: Channel.ClientCommand, topic, message: Message.make(payload), timeout })
      })

    const asRecord = (payload: Message.Payload): Record<string, any> =>
      typeof payload === "object" && payload !== null && !(payload instanceof Uint8Array) && !Array.isArray(payload)
        ? (payload as Record<string, any>)
        : {}

    /** `sendToJob`'s parameters as a channel request: they are one as they are once they name a timeout. */
    const channelRequestOf = (params: SendToJobParams): ChannelRequest =>
      params.timeout !== undefined
        ? (params as ChannelRequest)
        : { channel: params.channel, topic: params.topic, message: params.message, timeout: queryTimeout }

    /** The log line of a failed `sendToJob` (debug for an optional request). */
    const sendFailureLog = (params: SendToJobParams, error: { readonly message: string }) =>
      params.optional
        ? Effect.logDebug(`sendToJob ${params.jobId}: ${error.message}`)
        : Effect.logWarning(`sendToJob ${params.jobId}: ${error.message}`)

    /** A job still starting: the request waits for its connection within its timeout. */
    const startingRequest = (entry: Entry, req: ChannelRequest) =>
      requestWhenConnected(
        {
          jobId: entry.jobId,
          launched: Deferred.await(entry.launched),
          channel: () => entry.channel,
          ended: Deferred.await(entry.exited)
        },
        req
      )

    const sendToJob = (params: SendToJobParams): Effect.Effect<Message.Message, RequestError | InvalidJobId> =>
      Effect.suspend(() => {
        // a registered id was validated when it was registered
        const entry = registry.get(params.jobId as JobId)
        const known = entry?.channel
        const req = channelRequestOf(params)
        const reply: Effect.Effect<Message.Message, RequestError | InvalidJobId> =
          entry !== undefined && entry.status === ClientStatus.Starting
            ? startingRequest(entry, req)
            : known !== undefined
            ? known.request(req)
            : Effect.flatMap(Effect.flatMap(decodeJobId(params.jobId), channelOf), (ch) => ch.request(req))
        return reply.pipe(Effect.tapError((e) => sendFailureLog(params, e)))
      })

    const abortApp = (jobId: string) =>
      Effect.gen(function* () {
        const id = yield* decodeJobId(jobId)
        const entry = registry.get(id)
        if (entry === undefined) return
        yield* abortEntry(entry)
      })

    const service: ClientExecutorService = {
      startApp,
      checkStatus: (jobId) => statusOf(jobId).pipe(Effect.map(statusMessage)),
      getStatus: statusOf,
      abortApp,
      abortTask: (jobId) =>
        Effect.gen(function* () {
          const id = yield* decodeJobId(jobId)
          const entry = registry.get(id)
          if (entry === undefined || entry.status === ClientStatus.Starting) return yield* new TargetUnreachable({ jobId: id })
          yield* request(id, Topic.AbortTask, {})
        }),
      getRunInfo: (jobId) => request(jobId, Topic.ShowStats, {}).pipe(Effect.map((m) => asRecord(m.payload))),
      getErrors: (jobId) => request(jobId, Topic.ShowErrors, {}).pipe(Effect.map((m) => asRecord(m.payload))),
      resetErrors: (jobId) => request(jobId, Topic.ResetErrors, {}).pipe(Effect.asVoid),
      configureJobLog: (jobId, config) =>
        request(jobId, Topic.ConfigureJobLog, config as Message.Json).pipe(Effect.asVoid),
      sendToJob,
      jobs: Effect.sync(() =>
        [...registry.values()].map((e): JobSummary => ({ jobId: e.jobId, status: e.status, since: e.since }))
      ),
      events: Stream.fromPubSub(events),
      recovered: Effect.sync(() => [...recovered]),
      logs: (jobId) => Stream.unwrap(Effect.sync(() => registry.get(jobId)?.handle?.logs ?? Stream.empty)),
      subscribe: PubSub.subscribe(events),
      awaitCompletion: (jobId) =>
        Effect.gen(function* () {
          const id = yield* decodeJobId(jobId)
          const entry = registry.get(id)
          if (entry) return yield* Deferred.await(entry.completed)
          const done = history.get(id)
          if (done) return done.outcome
          return yield* new JobNotFound({ jobId: id })
        })
    }

    Object.defineProperty(service, EventListeners, { value: direct.registry })

    // `sendToJob` without a fiber, for the Promise facade: a registered job, under the live
    // clock (timeouts as plain timers); anything else goes the Effect way (false)
    const engineRuntime = yield* Effect.runtime<never>()
    const liveClockHere = plainTimerFor(yield* Effect.clock, 0)
    const sendNow: SendNowFn = (params, done) => {
      if (!liveClockHere) return false
      const entry = registry.get(params.jobId as JobId)
      // a job still starting: the Effect way, which waits for its connection
      if (entry === undefined || entry.status === ClientStatus.Starting) return false
      const channel = entry.channel
      const now = channel === undefined ? undefined : requestNowOf(channel)
      if (now === undefined) return false
      return now(channelRequestOf(params), (outcome) => {
        if (!outcome.ok) Runtime.runFork(engineRuntime)(sendFailureLog(params, outcome.error))
        done(outcome)
      })
    }
    Object.defineProperty(service, SendNow, { value: sendNow })
    // a known job's status without a fiber (an id registered or remembered was valid)
    const statusNow: StatusNowFn = (jobId) => registry.get(jobId)?.status ?? history.get(jobId)?.status
    Object.defineProperty(service, StatusNow, { value: statusNow })

    // ---- recovery -------------------------------------------------------------------------
    if (recoverMode !== "off" && launcher.recover && launcher.capabilities.recover) {
      // bounded: a recover that hangs or throws fails the executor's start, it does not hang it
      const recover = launcher.recover
      const found = yield* boundedCall(launcher.name, "recover", () => recover(instanceId), stepTimeout).pipe(
        Effect.flatMap((value) =>
          Array.isArray(value) ? Effect.succeed(value as ReadonlyArray<RecoveredJob>) : Effect.fail(new BackendFault({
            backend: launcher.name,
            call: "recover",
            detail: `returned ${describe(value)}, not an array of jobs`
          }))
        ),
        Effect.mapError((e) => (e instanceof BackendFault ? new BackendUnavailable({ backend: launcher.name, detail: e.message }) : e))
      )
      const adopt = recoverMode === "adopt" && launcher.capabilities.adopt
      for (const job of found) {
        const problem = typeof job === "object" && job !== null ? handleProblem(job.handle) : "is not a recovered job"
        if (problem !== undefined) {
          yield* Effect.logError(`backend "${launcher.name}": recover ${problem} for job ${describe((job as { jobId?: unknown } | null)?.jobId)}; skipped`)
          continue
        }
        if (adopt && job.channelToken !== undefined && job.channelDir !== undefined && !registry.has(job.jobId)) {
          yield* adoptJob(job)
        } else {
          yield* reapJob(job)
        }
      }
    }

    function reapJob(job: RecoveredJob) {
      return Effect.gen(function* () {
        yield* boundedCall(launcher.name, `recovery: job ${job.jobId}: terminate`, () => job.handle.terminate({ killAfter: killTimeout }), killBound).pipe(
          Effect.ignore
        )
        yield* boundedCall(launcher.name, `recovery: job ${job.jobId}: wait`, () => job.handle.wait, killBound).pipe(
          Effect.catchAll((e) => Effect.logWarning(`recovery: job ${job.jobId} did not confirm its exit: ${describe(e)}`))
        )
        if (job.channelDir) fs.rmSync(job.channelDir, { recursive: true, force: true })
        const time = yield* now
        recovered.push({ jobId: job.jobId, action: "reaped", time })
        yield* publish(ExecutorEvent.Recovered({ jobId: job.jobId, time, action: "reaped" }))
      })
    }

    function adoptJob(job: RecoveredJob) {
      return Effect.gen(function* () {
        const entry = yield* newEntry({
          jobId: job.jobId,
          allocation: {},
          token: "",
          resourceManager: undefined,
          rcFile: undefined,
          status: ClientStatus.Started,
          phase: "launched"
        })
        // Keep the directory: a container has it bind-mounted, and the worker reconnects to the same path.
        const channel = yield* openJobChannel({
          jobId: job.jobId,
          token: job.channelToken!,
          dir: job.channelDir!,
          reuseDir: true,
          maxFrameBytes,
          helloTimeout,
          onRequest: onRequest(entry),
          ...(runAs ? { owner: runAs } : {})
        }).pipe(
          Scope.extend(entry.jobScope),
          Effect.mapError((e) => new BackendUnavailable({ backend: launcher.name, detail: e.message }))
        )
        entry.channel = channel
        entry.handle = job.handle
        yield* Deferred.succeed(entry.started, undefined)
        yield* Deferred.succeed(entry.launched, undefined)
        registry.set(job.jobId, entry)
        yield* Effect.forkIn(supervise(entry, job.handle, false), jobsScope)
        const time = yield* now
        recovered.push({ jobId: job.jobId, action: "adopted", time })
        yield* publish(ExecutorEvent.Recovered({ jobId: job.jobId, time, action: "adopted" }))
      })
    }

    // Leftover socket directories of the previous parent that nobody adopted.
    yield* Effect.sync(() => {
      const adoptedDirs = new Set([...registry.values()].map((e) => e.channel?.info.dir))
      for (const name of fs.readdirSync(path.join(runtimeDir, "ch"))) {
        const dir = path.join(runtimeDir, "ch", name)
        if (!adoptedDirs.has(dir)) fs.rmSync(dir, { recursive: true, force: true })
      }
    })

    // close(): abort what still runs and wait for every pipeline (runs before jobsScope closes).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        closing = true
        yield* Effect.forEach([...registry.values()], abortEntry, { concurrency: "unbounded", discard: true })
      })
    )

    return service
  })

// ---- validation helpers ---------------------------------------------------------------------

/** Largest deployed meta.json read (bytes). */
const MAX_META_BYTES = 4 * 1024 * 1024

const readDeployedMeta = (jobId: JobId, jobDir: string, metaPath: string): Effect.Effect<unknown, JobMetaMissing | InvalidJobMeta> =>
  // one step: plain reads, then the outcome
  Effect.suspend((): Effect.Effect<unknown, JobMetaMissing | InvalidJobMeta> => {
    let jobDirStat: fs.Stats | undefined
    try {
      jobDirStat = fs.lstatSync(jobDir, { throwIfNoEntry: false })
    } catch {
      jobDirStat = undefined
    }
    if (jobDirStat === undefined) return Effect.fail(new JobMetaMissing({ jobId, path: metaPath }))
    if (jobDirStat.isSymbolicLink() || !jobDirStat.isDirectory()) {
      return Effect.fail(new InvalidJobMeta({ jobId, issues: `${jobDir} must be a directory, not a symbolic link or a file` }))
    }
    // The job may have written its own directory: never block on a FIFO or device
    // (O_NONBLOCK, regular files only) and never read an unbounded file.
    let text: string
    let fd: number | undefined
    try {
      fd = fs.openSync(metaPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
      const stat = fs.fstatSync(fd)
      if (!stat.isFile()) return Effect.fail(new InvalidJobMeta({ jobId, issues: `${metaPath} must be a regular file` }))
      if (stat.size > MAX_META_BYTES) {
        return Effect.fail(new InvalidJobMeta({ jobId, issues: `${metaPath} is ${stat.size} bytes, over the ${MAX_META_BYTES} allowed` }))
      }
      text = fs.readFileSync(fd, "utf8")
    } catch {
      return Effect.fail(new JobMetaMissing({ jobId, path: metaPath }))
    } finally {
      if (fd !== undefined) fs.closeSync(fd)
    }
    try {
      return Effect.succeed(JSON.parse(text) as unknown)
    } catch (e) {
      return Effect.fail(new InvalidJobMeta({ jobId, issues: `${metaPath} is not valid JSON: ${describe(e)}` }))
    }
  })

/** The argv template: the job's own `launcher_spec.<site|default>.process.command` with BYOC, else the site's. */
const commandFor = (
  jobId: string,
  meta: JobMeta,
  site: string,
  siteCommand: ReadonlyArray<string> | undefined
): Effect.Effect<ReadonlyArray<string> | undefined, InvalidJobMeta> => {
  const processSpec = launcherSpecFor(meta, site, "process")
  const own = processSpec?.command
  if (own !== undefined) {
    if (meta.byoc !== true) {
      return Effect.fail(
        new InvalidJobMeta({
          jobId,
          issues: "launcher_spec.process.command needs a deployed meta with byoc: true and a site that allows BYOC (allowByoc)"
        })
      )
    }
    if (!Array.isArray(own) || own.length === 0 || !own.every((a) => typeof a === "string" && a.length > 0)) {
      return Effect.fail(new InvalidJobMeta({ jobId, issues: "launcher_spec.process.command must be a non-empty array of non-empty strings" }))
    }
    return Effect.succeed(own as ReadonlyArray<string>)
  }
  if (siteCommand !== undefined && (siteCommand.length === 0 || !siteCommand.every((a) => typeof a === "string"))) {
    return Effect.fail(new InvalidJobMeta({ jobId, issues: "the site's command must be a non-empty array of strings" }))
  }
  return Effect.succeed(siteCommand)
}

const checkGpuCount = (jobId: string, meta: JobMeta, site: string, gpus: ReadonlyArray<string>) => {
  const requested = resourceSpecFor(meta, site).num_of_gpus
  if (requested === undefined || requested === null) return Effect.void
  if (typeof requested !== "number" || !Number.isInteger(requested) || requested < 0) {
    return Effect.fail(new InvalidJobMeta({ jobId, issues: `resource_spec.num_of_gpus must be an integer ≥ 0, got ${JSON.stringify(requested)}` }))
  }
  if (requested !== gpus.length) {
    return Effect.fail(
      new InvalidJobMeta({ jobId, issues: `resource_spec asks for ${requested} GPU(s) but the allocation holds ${gpus.length}` })
    )
  }
  return Effect.void
}

/** `makeJobExecutor` as a `Layer` of `ClientExecutor`. */
export const jobExecutorLayer = (
  options: JobExecutorOptions
): Layer.Layer<ClientExecutor, InstanceInUse | BackendUnavailable | InvalidClient> =>
  Layer.scoped(ClientExecutor, makeJobExecutor(options))

/** Re-exported for callers that only want the types. */
export type { RequestError }
