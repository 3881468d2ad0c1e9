/**
 * Broken launchers: wrappers that take a working `JobLauncher` and break one
 * thing about it, the way third-party backends break. They test that an engine
 * stays correct around a buggy backend (flexec's engine turns each into a typed
 * error or a lost job, and never hangs: see docs/WRITING_A_BACKEND.md, "What
 * the engine tolerates"), and they can serve a conformance suite's own checks.
 *
 * Each wrapper keeps everything else of the launcher it wraps (its name, its
 * capabilities and any extra members, such as `InMemoryLauncher.running`), so
 * leak checks still see the real jobs; it delegates to the launcher, so a
 * class-based launcher keeps its prototype methods and getters, called on the
 * instance itself (its private fields work). Handles are wrapped the same way.
 *
 * @example
 * const launcher = yield* InMemoryJobLauncher.make()
 * const executor = yield* makeJobExecutor({ client: mockClient(), launcher: brokenCall(launcher, "terminate", "hang") })
 * // abortApp returns after killTimeoutMs + backendSlackMs; the job completes as lost (or 9, aborted)
 *
 * @since 0.1.0
 */
import type { JobHandle, JobLauncher, LaunchRequest } from "@flexec/core"
import { BackendUnavailable, LaunchFailed } from "@flexec/core"
import { Duration, Effect } from "effect"
import { delegating } from "./internal/delegate.js"

/** The backend calls a wrapper can break. */
export type BrokenCall = "terminate" | "wait" | "poll" | "recover" | "validate"

/**
 * How a call breaks:
 * - `"hang"`: never returns (until interrupted);
 * - `"hang-uninterruptibly"`: never returns, and ignores interruption;
 * - `"defect"`: dies (`Effect.die`), not a typed failure;
 * - `"throw"`: throws a JavaScript exception: synchronously from the call for
 *   the functions (`terminate`, `recover`, `validate`), inside the Effect for
 *   `wait` and `poll`.
 */
export type Breakage = "hang" | "hang-uninterruptibly" | "defect" | "throw"

/** The message of every defect and exception a broken launcher makes. */
export const brokenMessage = (call: string): string => `broken launcher: ${call} exploded`

const brokenEffect = (call: string, how: Breakage): Effect.Effect<never> => {
  switch (how) {
    case "hang":
      return Effect.never
    case "hang-uninterruptibly":
      return Effect.uninterruptible(Effect.never)
    case "defect":
      return Effect.die(new Error(brokenMessage(call)))
    case "throw":
      return Effect.sync(() => {
        throw new Error(brokenMessage(call))
      })
  }
}

/** A function that breaks as `how` says (`"throw"`: synchronously, before any Effect). */
const brokenFunction = (call: string, how: Breakage) => (): Effect.Effect<never> => {
  if (how === "throw") throw new Error(brokenMessage(call))
  return brokenEffect(call, how)
}

/** Changes every handle `launcher` returns. */
export const mapHandles = <L extends JobLauncher>(
  launcher: L,
  f: (handle: JobHandle, request: LaunchRequest) => unknown
): L =>
  delegating(launcher, {
    launch: (request: LaunchRequest) => Effect.map(launcher.launch(request), (handle) => f(handle, request) as JobHandle)
  })

/**
 * `launcher` with one call broken as `how` says: a handle's `terminate`, `wait`
 * or `poll`, or the launcher's `recover` or `validate`. The real call is not
 * made (a broken terminate leaves the job running until its launch scope closes).
 */
export const brokenCall = <L extends JobLauncher>(launcher: L, call: BrokenCall, how: Breakage): L => {
  switch (call) {
    case "terminate":
      return mapHandles(launcher, (h) => delegating(h, { terminate: brokenFunction("terminate", how) }))
    case "wait":
      return mapHandles(launcher, (h) => delegating(h, { wait: brokenEffect("wait", how) }))
    case "poll":
      return mapHandles(launcher, (h) => delegating(h, { poll: brokenEffect("poll", how) }))
    case "recover":
      return delegating(launcher, { recover: brokenFunction("recover", how) })
    case "validate":
      return delegating(launcher, { validate: brokenFunction("validate", how) })
  }
}

/**
 * Handles whose `wait` is the real one until a terminate was sent, and then
 * `broken` (also for a wait already under way when the terminate came).
 */
const waitBreaksAfterTerminate = <L extends JobLauncher>(launcher: L, broken: Effect.Effect<never, BackendUnavailable>): L =>
  mapHandles(launcher, (h) => {
    let terminated = false
    return delegating(h, {
      terminate: (options?: Parameters<JobHandle["terminate"]>[0]) =>
        Effect.suspend(() => {
          terminated = true
          return h.terminate(options)
        }),
      wait: Effect.suspend(() => (terminated ? broken : Effect.flatMap(h.wait, (exit) => (terminated ? broken : Effect.succeed(exit)))))
    })
  })

/**
 * `launcher` whose `wait` hangs once a terminate was sent (before that it is the
 * real wait): a backend that loses track of a job it was asked to stop.
 */
export const waitHangsAfterTerminate = <L extends JobLauncher>(launcher: L): L => waitBreaksAfterTerminate(launcher, Effect.never)

/**
 * `launcher` whose `wait` fails with `BackendUnavailable` once a terminate was
 * sent, every time it is retried (before that it is the real wait): a backend
 * whose service went away while a job was being stopped.
 */
export const waitUnavailableAfterTerminate = <L extends JobLauncher>(launcher: L): L =>
  waitBreaksAfterTerminate(
    launcher,
    Effect.suspend(() => Effect.fail(new BackendUnavailable({ backend: launcher.name, detail: "broken on purpose: gone after the terminate" })))
  )

/**
 * `launcher` whose launch succeeds without a handle: it returns `value`
 * (default `undefined`) after the real launch (whose job then runs until its
 * launch scope closes).
 */
export const launchWithoutHandle = <L extends JobLauncher>(launcher: L, value: unknown = undefined): L =>
  mapHandles(launcher, () => value)

/** `launcher` whose handles lack `members` (e.g. `["wait"]`, `["terminate"]`). */
export const handleWithout = <L extends JobLauncher>(launcher: L, members: ReadonlyArray<"wait" | "terminate" | "poll">): L =>
  mapHandles(launcher, (h) => {
    const copy = delegating(h) as unknown as Record<string, unknown>
    for (const member of members) delete copy[member]
    return copy
  })

/** How a launch that fails late fails. */
export type LaunchFailure = "LaunchFailed" | "defect" | "undeclared" | "throw"

/**
 * `launcher` whose launch fails `after` (on the Effect `Clock`) the real launch
 * succeeded: the job was started and its resources acquired in the launch
 * scope, then the launch fails with `LaunchFailed`, a defect, an error outside
 * the SPI (`"undeclared"`), or `launch` throws synchronously before anything
 * (`"throw"`).
 */
export const launchFailingAfter = <L extends JobLauncher>(
  launcher: L,
  after: Duration.DurationInput,
  how: LaunchFailure = "LaunchFailed"
): L =>
  delegating(launcher, {
    launch: (request: LaunchRequest) => {
      if (how === "throw") throw new Error(brokenMessage("launch"))
      const failure: Effect.Effect<never, LaunchFailed | Error> =
        how === "LaunchFailed"
          ? Effect.fail(new LaunchFailed({ jobId: request.jobId, reason: brokenMessage("launch") }))
          : how === "defect"
          ? Effect.die(new Error(brokenMessage("launch")))
          : Effect.fail(new Error(brokenMessage("launch")))
      return launcher.launch(request).pipe(
        Effect.zipRight(Duration.toMillis(Duration.decode(after)) > 0 ? Effect.sleep(after) : Effect.void),
        Effect.zipRight(failure)
      ) as ReturnType<JobLauncher["launch"]>
    }
  })
