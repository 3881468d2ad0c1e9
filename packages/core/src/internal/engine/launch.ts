/**
 * The launch phases: the job's socket listens, the backend launches (on a fiber
 * of its own, so an abort can interrupt it and still wait for what it
 * acquired), the rest of the channel comes up while the job starts; then the
 * job's life: a failed launch completes at once, a launched job is supervised.
 */
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Scope } from "effect"
import { ExecutorEvent } from "../../ClientExecutor.js"
import { JobAborted, LaunchFailed } from "../../Errors.js"
import type { ChannelInfo, JobHandle, LaunchRequest } from "../../JobLauncher.js"
import { bindJobChannel } from "../../protocol/ChannelServer.js"
import { ChannelTransport } from "../../protocol/ChannelTransport.js"
import { handleProblem, launchErrorOf } from "../backendGuard.js"
import { removeRcFile } from "../rcFile.js"
import type { Engine } from "./context.js"
import { publishNow } from "./context.js"
import { complete, emptyExit } from "./outcome.js"
import type { Entry, LaunchError } from "./registry.js"
import { jobRequestHandler } from "./requests.js"
import { runAbort, supervise, terminateJob } from "./supervise.js"

/**
 * The backend's launch, on a fiber of its own. An abort's interruption waits for that fiber
 * to end, at most `backendSlack`: a launch's uninterruptible steps (an `acquireRelease`'s
 * acquire: a spawn, a pid file) finish and register their release in the job's scope while
 * it is still open, so the scope's close, before `Completed`, releases them. A launch still
 * running after `backendSlack` is given up on (logged): whatever it acquires afterwards goes
 * to the job's scope, closed by then, so it is released as it is acquired.
 */
const interruptibleLaunch = <A, E>(engine: Engine, entry: Entry, launch: Effect.Effect<A, E>): Effect.Effect<A, E> => {
  const slack = engine.settings.backendSlack
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.forkDaemon(Effect.interruptible(launch)), (fiber) =>
      restore(Fiber.join(fiber)).pipe(
        Effect.onInterrupt(() =>
          Effect.flatMap(Effect.fiberId, (self) => Fiber.interruptAsFork(fiber, self)).pipe(
            Effect.zipRight(Effect.interruptible(Fiber.await(fiber))),
            Effect.timeout(slack),
            Effect.catchAll(() =>
              Effect.logError(
                `backend "${engine.launcher.name}": job ${entry.jobId}: launch did not end within ${Duration.toMillis(slack)} ms of its interruption; given up on`
              )
            )
          )
        )
      )
    )
  )
}

/**
 * The backend's launch, checked: interrupted, it is waited for at most `backendSlack` (see
 * `interruptibleLaunch`), and a handle the engine cannot supervise is `LaunchFailed` naming
 * what it lacks (its terminate, where it has one, is called first, bounded).
 */
const guardedLaunch = (engine: Engine, entry: Entry, request: LaunchRequest): Effect.Effect<JobHandle, LaunchError> =>
  interruptibleLaunch(engine, entry, Effect.suspend(() => engine.launcher.launch(request)).pipe(Scope.extend(entry.jobScope))).pipe(
    Effect.flatMap((value: unknown) => {
      const problem = handleProblem(value)
      if (problem === undefined) return Effect.succeed(value as JobHandle)
      const reason = `backend "${engine.launcher.name}" ${problem}`
      const terminate = typeof (value as { terminate?: unknown } | null)?.terminate === "function"
        ? terminateJob(engine, entry, value as JobHandle)
        : Effect.void
      return Effect.zipRight(
        Effect.zipRight(Effect.logError(`job ${entry.jobId}: ${reason}`), terminate),
        Effect.fail(new LaunchFailed({ jobId: entry.jobId, reason }))
      )
    })
  )

/** The launch: the channel's socket, the backend's launch, then the rest of the channel. */
const launchPhase = (engine: Engine, entry: Entry, build: (channel: ChannelInfo) => LaunchRequest, channelDir: string, token: string) =>
  Effect.gen(function* () {
    if (entry.rcFile) removeRcFile(entry.rcFile)
    const runAs = engine.launcher.runAs
    // the socket listens before the launch; the rest of the channel's set-up runs
    // after it, while the job starts (a connection that comes first waits for it)
    const bound = yield* bindJobChannel({
      jobId: entry.jobId,
      token,
      dir: channelDir,
      maxFrameBytes: engine.settings.maxFrameBytes,
      helloTimeout: engine.settings.helloTimeout,
      onRequest: jobRequestHandler(engine, entry),
      ...(runAs ? { owner: runAs } : {})
    }).pipe(Effect.provideService(ChannelTransport, engine.transport), Scope.extend(entry.jobScope))
    const handle = yield* guardedLaunch(engine, entry, build(bound.info))
    entry.channel = yield* bound.serve.pipe(Scope.extend(entry.jobScope))
    return handle
  })

/** Everything after the launch: its outcome, then the job's supervision to completion. */
const jobLife = (engine: Engine, entry: Entry, launchExit: Exit.Exit<JobHandle, LaunchError>) =>
  Effect.gen(function* () {
    if (Exit.isFailure(launchExit)) {
      const interrupted = Cause.isInterruptedOnly(launchExit.cause)
      const error: LaunchError = interrupted
        ? new JobAborted({ jobId: entry.jobId })
        : launchErrorOf(engine.launcher.name, entry.jobId, launchExit.cause)
      if (!interrupted) yield* Effect.logWarning(`job ${entry.jobId}: launch failed: ${error.message}`)
      entry.exitSeen = true
      yield* Deferred.succeed(entry.exited, emptyExit)
      // the caller hears of the failure only once the job is unregistered, freed and Completed
      yield* complete(engine, entry, emptyExit, undefined).pipe(
        Effect.ensuring(Deferred.fail(entry.launched, error)),
        Effect.uninterruptible
      )
      return
    }
    const handle = launchExit.value
    entry.handle = handle
    entry.phase = "launched"
    yield* publishNow(engine, (time) => ExecutorEvent.Launched({ jobId: entry.jobId, time }))
    yield* Deferred.succeed(entry.launched, undefined)
    // An abort that raced the end of the launch: run it again now that there is a handle.
    if (entry.abortRequested) entry.abortFiber = yield* Effect.forkIn(Effect.interruptible(runAbort(engine, entry)), engine.jobsScope)
    yield* supervise(engine, entry, handle, true)
  })

/**
 * Starts a registered job: one fiber before the spawn, the launch. However it ends
 * (launched, failed, or interrupted by abortApp), its exit starts the job's life, so a
 * registered job always has one. Both are interruptible whatever the caller's region.
 * Returns once launched; fails with the launch's error once the job is Completed.
 */
export const launchJob = (
  engine: Engine,
  entry: Entry,
  build: (channel: ChannelInfo) => LaunchRequest,
  channelDir: string,
  token: string
): Effect.Effect<void, LaunchError> =>
  Effect.gen(function* () {
    entry.launchFiber = yield* Effect.forkIn(
      Effect.interruptible(launchPhase(engine, entry, build, channelDir, token)).pipe(
        Effect.onExit((launchExit) => Effect.forkIn(Effect.interruptible(jobLife(engine, entry, launchExit)), engine.jobsScope))
      ),
      engine.jobsScope
    )
    yield* Deferred.await(entry.launched)
  })
