/**
 * The launch-abort group: whenever `abortApp` comes during the launch, nothing
 * of the job is left and the allocation is freed once.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Fiber } from "effect"
import { MockResourceManager } from "../../mocks.js"
import type { Harness } from "../harness.js"
import { pollUntil } from "../pollUntil.js"
import { conformanceEchoFixture } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, test, withCaps } from "./register.js"
import { completion, check, show, treeGone } from "./probes.js"

/** Abort during the launch: whenever `abortApp` comes, nothing of the job is left and the allocation is freed once. */
export const launchAbortTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "launch abort", (caps) => {
    const allocate = (rm: MockResourceManager) =>
      Effect.gen(function* () {
        const { token } = yield* rm.checkResources({})
        const allocation = yield* rm.allocateResources({}, token)
        return { token, allocatedResource: { ...allocation, conformance: true }, resourceManager: rm }
      })
    const running = (h: Harness) => (h.launcher as { readonly running?: () => number }).running?.call(h.launcher) ?? 0

    /** Starts without awaiting, aborts once registered (after `delayMs`), and checks what is left. */
    const abortAt = (h: Harness, delayMs: number, label: string) =>
      Effect.gen(function* () {
        const rm = new MockResourceManager()
        const a = yield* allocate(rm)
        const jobId = h.newJobId(label)
        const start = yield* Effect.fork(h.start(conformanceEchoFixture, [], { ...a, jobId }))
        if (delayMs > 0) yield* Effect.sleep(Duration.millis(delayMs))
        const deadline = Date.now() + common.timeouts.eventMs
        while ((yield* h.executor.checkStatus(jobId)) === "not started" && Date.now() < deadline) yield* Effect.sleep(Duration.millis(1))
        yield* h.executor.abortApp(jobId)
        yield* Fiber.await(start)
        const outcome = yield* completion(h, jobId)
        yield* check([9, 104].includes(outcome.returnCode) || outcome.returnCode === 0, `an abort during the launch ended as ${show(outcome)}`)
        return { jobId, rm, token: a.token }
      })

    const nothingLeft = (h: Harness, jobs: ReadonlyArray<{ jobId: string; rm: MockResourceManager; token: string }>, when: string) =>
      Effect.gen(function* () {
        for (const { jobId } of jobs) {
          if (caps.processes === true) yield* treeGone(h, jobId, `abort during the launch (${when})`)
        }
        yield* pollUntil("the launcher to report no live job", () => running(h) === 0, common.timeouts.processGoneMs).pipe(
          Effect.mapError(() => new Error(`abort during the launch (${when}): the launcher still runs ${running(h)} job(s) after their completion`))
        )
        for (const { rm, token } of jobs) {
          yield* pollUntil("the allocation to be freed", () => (rm.freedTokens().get(token) ?? 0) >= 1, common.timeouts.eventMs).pipe(Effect.ignore)
          const freed = rm.freedTokens().get(token) ?? 0
          yield* check(freed === 1, `abort during the launch (${when}): the allocation was freed ${freed} times, not once`)
        }
      })

    test(common, "abortApp at delays from 0 up to the launch's own duration leaves nothing running and frees once", (h) =>
      Effect.gen(function* () {
        // the launch's own duration: startApp until the launcher returned a handle
        const probe = h.newJobId("measure")
        const t0 = Date.now()
        const measured = yield* Effect.fork(h.start(conformanceEchoFixture, [], { jobId: probe }))
        yield* h.until("the measuring launch to return a handle", () => h.handles.has(probe))
        const launchMs = Math.max(1, Date.now() - t0)
        yield* Fiber.await(measured)
        yield* h.executor.abortApp(probe)
        for (const fraction of [0, 0.25, 0.5, 0.75, 1, 1.5]) {
          const delay = Math.round(launchMs * fraction)
          const job = yield* abortAt(h, delay, `at${Math.round(fraction * 100)}`)
          yield* nothingLeft(h, [job], `abortApp ${delay} ms after startApp, the launch takes ${launchMs} ms`)
        }
      }))

    test(common, "abortApp racing a batch of un-awaited startApp calls leaves nothing running and frees each once", (h) =>
      Effect.gen(function* () {
        const jobs = yield* Effect.forEach([1, 2, 3, 4, 5, 6], (n) => abortAt(h, 0, `batch${n}`), { concurrency: "unbounded" })
        yield* nothingLeft(h, jobs, "a batch of 6 aborted as soon as registered")
      }))
  })
}
