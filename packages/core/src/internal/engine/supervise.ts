/**
 * Supervision: waiting for a job's exit whatever its backend does (retries
 * while it is unreachable, a deadline once a terminate was sent, a last look
 * when it stops answering), the start timeout, terminating, and the abort
 * procedure (the worker asked first, then the grace period, then terminate).
 */
import { Cause, Deferred, Duration, Effect, Fiber, Option, Schedule } from "effect"
import type { BackendUnavailable } from "../../Errors.js"
import type { JobExit, JobHandle } from "../../JobLauncher.js"
import * as Message from "../../Message.js"
import { Channel, ClientStatus, Topic } from "../../Status.js"
import { boundedCall, describeValue, lost, normalizeExit } from "../backendGuard.js"
import { consumeRcFile } from "../rcFile.js"
import type { Engine } from "./context.js"
import { complete } from "./outcome.js"
import type { Entry } from "./registry.js"

/** The first retry of a failed wait for a job's exit. */
const firstWaitRetry = Duration.millis(100)
/** Later retries: doubling from 100 ms, at most every 5 s. */
const waitRetries = Schedule.exponential(firstWaitRetry, 2).pipe(Schedule.union(Schedule.spaced(Duration.seconds(5))))

/**
 * Terminates the job (SIGTERM, SIGKILL after the kill timeout), bounded: a terminate
 * that hangs or throws is logged and given up on; the wait's deadline then decides.
 */
export const terminateJob = (engine: Engine, entry: Entry, handle: JobHandle): Effect.Effect<void> =>
  Effect.zipRight(
    Deferred.succeed(entry.terminateSent, undefined),
    boundedCall(
      engine.launcher.name,
      `job ${entry.jobId}: terminate`,
      () => handle.terminate({ killAfter: engine.settings.killTimeout }),
      engine.settings.killBound
    ).pipe(Effect.catchAll(() => Effect.void))
  )

/**
 * The last look at a job whose backend stopped answering its wait: a bounded poll,
 * then lost (the outcome table's unknown end).
 */
const lastLook = (engine: Engine, entry: Entry, handle: JobHandle): Effect.Effect<JobExit> =>
  handle.poll === undefined
    ? Effect.succeed(lost)
    : boundedCall(engine.launcher.name, `job ${entry.jobId}: poll`, () => handle.poll, engine.settings.backendSlack).pipe(
        Effect.flatMap((polled) =>
          Option.isOption(polled) && Option.isSome(polled)
            ? normalizeExit(engine.launcher.name, entry.jobId, polled.value)
            : Effect.succeed(lost)
        ),
        Effect.catchAll(() => Effect.succeed(lost))
      )

const isBackendUnavailable = (e: unknown): e is BackendUnavailable =>
  (e as { _tag?: unknown } | null)?._tag === "BackendUnavailable"

/**
 * Waits for the exit, retrying while the backend cannot be reached (after 100 ms,
 * then backing off to every 5 s). The retry's machinery is built only on a failure:
 * on every job's way to Started, the wait is the backend's wait and nothing more.
 * A wait that throws (a defect) is given up on at once, and one that has not returned
 * `killTimeout + backendSlack` after a terminate was sent then: the job is terminated
 * (bounded) and, unless a last poll sees its exit, taken as lost.
 */
const waitForExit = (engine: Engine, entry: Entry, handle: JobHandle): Effect.Effect<JobExit> => {
  const backend = engine.launcher.name
  const killBound = engine.settings.killBound
  const deadline = Deferred.await(entry.terminateSent).pipe(Effect.zipRight(Effect.sleep(killBound)), Effect.as("hung" as const))
  const attempt = Effect.suspend(() => handle.wait).pipe(
    Effect.interruptible,
    Effect.disconnect,
    Effect.catchAllCause((cause): Effect.Effect<"broken", BackendUnavailable> => {
      const failure = Cause.failureOption(cause)
      // BackendUnavailable is retried; anything else (a defect, an undeclared error) is a broken wait
      if (Option.isSome(failure) && isBackendUnavailable(failure.value)) {
        return Effect.zipRight(
          Effect.logWarning(`job ${entry.jobId}: backend unreachable while waiting: ${failure.value.detail}`),
          Effect.fail(failure.value)
        )
      }
      const what = Option.isSome(failure)
        ? `failed with an undeclared error: ${describeValue(failure.value)}`
        : `threw a defect: ${describeValue(Cause.squash(cause))}`
      return Effect.as(Effect.logError(`backend "${backend}": job ${entry.jobId}: wait ${what}`), "broken" as const)
    })
  )
  // the deadline races the whole retry loop, not each attempt: retries after the terminate
  // (a backend that stopped answering) end with it too
  return attempt.pipe(
    Effect.catchAll(() => Effect.zipRight(Effect.sleep(firstWaitRetry), Effect.retry(attempt, waitRetries))),
    Effect.orDie,
    Effect.raceFirst(deadline),
    Effect.flatMap((result) => {
      if (result === "broken") return Effect.zipRight(terminateJob(engine, entry, handle), lastLook(engine, entry, handle))
      if (result === "hung") {
        return Effect.zipRight(
          Effect.logError(
            `backend "${backend}": job ${entry.jobId}: wait did not return within ${Duration.toMillis(killBound)} ms of the terminate; taken as lost`
          ),
          lastLook(engine, entry, handle)
        )
      }
      return normalizeExit(backend, entry.jobId, result)
    })
  )
}

/**
 * Supervises a launched job to its completion: the start timeout (when asked),
 * the wait for its exit, the rc file, then `complete`.
 */
export const supervise = (engine: Engine, entry: Entry, handle: JobHandle, withStartTimeout: boolean): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (withStartTimeout) {
      // one sleeping fiber (no race of two), interrupted with the job's scope
      yield* Effect.sleep(engine.settings.startTimeout).pipe(
        Effect.zipRight(
          Effect.suspend(() => {
            if (entry.exitSeen || entry.status >= ClientStatus.Started) return Effect.void
            entry.startTimedOut = true
            return terminateJob(engine, entry, handle)
          })
        ),
        Effect.forkIn(entry.jobScope)
      )
    }
    const exit = yield* waitForExit(engine, entry, handle)
    entry.exitSeen = true
    yield* Deferred.succeed(entry.exited, exit)
    const rc = entry.rcFile === undefined ? undefined : consumeRcFile(entry.rcFile)
    yield* complete(engine, entry, exit, rc)
  })

/** The abort procedure (runs once per job, and again if an abort raced the end of its launch). */
export const runAbort = (engine: Engine, entry: Entry): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (entry.phase === "launching") {
      const fiber = entry.launchFiber
      if (fiber) yield* Fiber.interrupt(fiber)
      return
    }
    const handle = entry.handle!
    if (entry.status === ClientStatus.Starting) return yield* terminateJob(engine, entry, handle)
    const { graceMs, queryTimeout } = engine.settings
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
    const exited = yield* Deferred.await(entry.exited).pipe(Effect.timeout(Duration.millis(graceMs)), Effect.option)
    if (Option.isNone(exited)) yield* terminateJob(engine, entry, handle)
  })

/** Aborts `entry` (idempotent) and returns after its completion. */
export const abortEntry = (engine: Engine, entry: Entry): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (!entry.exitSeen) entry.abortRequested = true
    // interruptible: close() calls this from a finalizer, whose uninterruptibility the fork
    // would inherit, and the grace-period timeout must be able to fire
    if (entry.abortFiber === undefined) {
      entry.abortFiber = yield* Effect.forkIn(Effect.interruptible(runAbort(engine, entry)), engine.jobsScope)
    }
    yield* Deferred.await(entry.completed)
  })
