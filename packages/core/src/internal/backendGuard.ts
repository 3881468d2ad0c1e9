/**
 * What the engine does not trust a backend with: the shape of a handle, the
 * shape of an exit record, the error a launch fails with, and how long a call
 * may take or whether it throws. Third-party backends will be buggy; the engine
 * stays correct around them (docs/WRITING_A_BACKEND.md, "What the engine
 * tolerates").
 */
import { Cause, Data, Duration, Effect, Option, Schema } from "effect"
import { BackendUnavailable, ImageNotFound, LaunchFailed } from "../Errors.js"
import type { JobId } from "../JobId.js"
import type { JobExit, JobHandle } from "../JobLauncher.js"

/** A backend call that did not return in time, or threw (a defect, not a typed failure). Logged where it is made. */
export class BackendFault extends Data.TaggedError("BackendFault")<{
  readonly backend: string
  readonly call: string
  readonly detail: string
}> {
  override get message(): string {
    return `backend "${this.backend}": ${this.call} ${this.detail}`
  }
}

/** A value's description for a log line or an error's reason. */
export const describeValue = (e: unknown): string => {
  if (e instanceof Error) return e.message
  if (typeof e === "string") return e
  try {
    return JSON.stringify(e) ?? String(e)
  } catch {
    return String(e)
  }
}

/**
 * Runs a backend call with a bound: `thunk` is evaluated inside (a call that
 * throws synchronously is a defect too), runs interruptibly and disconnected (a
 * call that ignores interruption cannot hold the caller past the bound), and a
 * timeout or a defect becomes `BackendFault`, logged with the backend's name.
 * The call's own typed failures pass through.
 */
export const boundedCall = <A, E>(
  backend: string,
  call: string,
  thunk: () => Effect.Effect<A, E>,
  timeout: Duration.Duration
): Effect.Effect<A, E | BackendFault> =>
  Effect.suspend(thunk).pipe(
    Effect.interruptible,
    Effect.disconnect,
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new BackendFault({ backend, call, detail: `did not return within ${Duration.toMillis(timeout)} ms` })
    }),
    Effect.catchAllDefect((defect) =>
      Effect.fail(new BackendFault({ backend, call, detail: `threw a defect: ${describeValue(defect)}` }))
    ),
    Effect.tapError((e) => (e instanceof BackendFault ? Effect.logError(e.message) : Effect.void))
  )

const isEffect = (value: unknown): boolean => Effect.isEffect(value)

/**
 * What is wrong with a handle `launch` (or `recover`) returned, or `undefined`
 * when the engine can supervise it: an object with `wait` (an Effect) and
 * `terminate` (a function); `poll`, when present, an Effect.
 */
export const handleProblem = (value: unknown): string | undefined => {
  if (typeof value !== "object" || value === null) return `returned no handle (got ${value === null ? "null" : typeof value})`
  const handle = value as Partial<Record<keyof JobHandle, unknown>>
  const missing: Array<string> = []
  if (!isEffect(handle.wait)) missing.push("wait (an Effect)")
  if (typeof handle.terminate !== "function") missing.push("terminate (a function)")
  if (handle.poll !== undefined && !isEffect(handle.poll)) missing.push("poll (an Effect, when present)")
  return missing.length === 0 ? undefined : `returned a handle without ${missing.join(" and ")}`
}

const lostExit: JobExit = { code: null, signal: null, oomKilled: false, lost: true }

/** An exit record the engine can classify: a malformed one is taken as lost (and logged). */
export const normalizeExit = (backend: string, jobId: JobId, value: unknown): Effect.Effect<JobExit> => {
  if (typeof value === "object" && value !== null) {
    const v = value as Record<string, unknown>
    const code = v.code === null || v.code === undefined ? null : v.code
    const signal = v.signal === null || v.signal === undefined ? null : v.signal
    if ((code === null || Number.isInteger(code)) && (signal === null || typeof signal === "string")) {
      return Effect.succeed({
        code: code as number | null,
        signal: signal as string | null,
        oomKilled: v.oomKilled === true,
        lost: v.lost === true
      })
    }
  }
  return Effect.as(
    Effect.logError(`backend "${backend}": job ${jobId}: wait returned a malformed exit record (${describeValue(value)}); taken as lost`),
    lostExit
  )
}

/** The exit of a job whose backend can no longer tell how it ended. */
export const lost: JobExit = lostExit

/** A launch error made by another copy of `@flexec/core` (or by hand): decoded into ours, fields checked. */
const decodeLaunchError = Schema.decodeUnknownOption(Schema.Union(LaunchFailed, ImageNotFound, BackendUnavailable))

/**
 * The error `startApp` returns for a launch that failed with `cause`: the
 * backend's own `LaunchFailed`, `ImageNotFound` or `BackendUnavailable` as it
 * is (one from another copy of the package, or a plain object with such a
 * `_tag`, only when its fields decode); any other failure, and a defect, as
 * `LaunchFailed` naming the backend.
 */
export const launchErrorOf = (
  backend: string,
  jobId: JobId,
  cause: Cause.Cause<unknown>
): LaunchFailed | ImageNotFound | BackendUnavailable => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const e = failure.value
    if (e instanceof LaunchFailed || e instanceof ImageNotFound || e instanceof BackendUnavailable) return e
    const decoded = decodeLaunchError(e)
    if (Option.isSome(decoded)) return decoded.value
    return new LaunchFailed({ jobId, reason: `backend "${backend}": launch failed with an undeclared error: ${describeValue(e)}`, cause: e })
  }
  const defect = Cause.squash(cause)
  return new LaunchFailed({ jobId, reason: `backend "${backend}": launch threw a defect: ${describeValue(defect)}`, cause: defect })
}
