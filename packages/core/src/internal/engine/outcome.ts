/**
 * The outcome: the outcome table that classifies a job's exit, and the
 * completion that runs exactly once per registered job (close the job's scope,
 * free its resources, unregister, remember, `Completed`), each step bounded.
 */
import { Cause, Deferred, Duration, Effect, Exit, Scope } from "effect"
import type { JobOutcome } from "../../ClientExecutor.js"
import { ExecutorEvent } from "../../ClientExecutor.js"
import type { JobExit } from "../../JobLauncher.js"
import { ClientStatus, JobReturnCode, reasonOf } from "../../Status.js"
import { describeValue } from "../backendGuard.js"
import type { Engine } from "./context.js"
import { now } from "./context.js"
import type { Entry } from "./registry.js"
import { advance } from "./registry.js"

/** The exit of a job that never ran (its launch failed). */
export const emptyExit: JobExit = { code: null, signal: null, oomKilled: false, lost: false }

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

/** The job's resources back to its manager, bounded; the failure's text, if any. */
const free = (engine: Engine, entry: Entry): Effect.Effect<string | undefined> => {
  const manager = entry.resourceManager
  if (manager === undefined || Object.keys(entry.allocation).length === 0) return Effect.succeed(undefined)
  const stepTimeout = engine.settings.stepTimeout
  return manager.freeResources(entry.allocation, entry.token).pipe(
    Effect.disconnect,
    Effect.interruptible,
    Effect.timeoutFail({
      duration: stepTimeout,
      onTimeout: () => `freeResources did not return within ${Duration.toMillis(stepTimeout)} ms`
    }),
    Effect.exit,
    Effect.map((freed) =>
      Exit.isSuccess(freed)
        ? undefined
        : Cause.isFailType(freed.cause) && typeof freed.cause.error === "string"
        ? freed.cause.error
        : describeValue(Cause.squash(freed.cause))
    )
  )
}

/** Completes `entry` once its exit (and rc) are known. Uninterruptible; every step has its bound. */
export const complete = (engine: Engine, entry: Entry, exit: JobExit, rc: number | undefined): Effect.Effect<void> =>
  Effect.gen(function* () {
    const returnCode = classifyExit({
      abortRequested: entry.abortRequested,
      startTimedOut: entry.startTimedOut,
      startedSeen: entry.status >= ClientStatus.Started,
      exit,
      rc
    })
    const outcome: JobOutcome = { jobId: entry.jobId, returnCode, reason: reasonOf(returnCode), exit }
    // the job's scope: the channel and whatever the backend acquired. Each step may hang:
    // it runs interruptibly and disconnected, so its timeout returns.
    yield* Scope.close(entry.jobScope, Exit.void).pipe(
      Effect.disconnect,
      Effect.interruptible,
      Effect.timeout(engine.settings.stepTimeout),
      Effect.catchAllCause((cause) => Effect.logWarning(`job ${entry.jobId}: closing its scope failed`, cause))
    )
    const freeError = yield* free(engine, entry)
    const terminal =
      returnCode === JobReturnCode.Success || returnCode === JobReturnCode.Aborted ? ClientStatus.Stopped : ClientStatus.Exception
    const time = yield* now
    engine.registry.finish(entry, terminal, outcome)
    advance(entry, terminal, time)
    engine.events.publish(ExecutorEvent.Completed({ jobId: entry.jobId, time, outcome, freeError }))
    yield* Deferred.succeed(entry.completed, outcome)
  }).pipe(Effect.uninterruptible)
