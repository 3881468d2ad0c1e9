/**
 * The lifecycle group: statuses, events, history, `awaitCompletion`, a refused
 * second start.
 *
 * @since 0.1.0
 */
import { ClientStatus } from "@flexec/core"
import { Effect } from "effect"
import { describe, expect } from "../../internal/vitest.js"
import { conformanceEchoFixture } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, test } from "./register.js"
import { completion, eventsOf, completedOf, startedEcho } from "./probes.js"

/** Lifecycle: statuses, events, history, awaitCompletion, a refused second start. */
export const lifecycleTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("lifecycle", () => {
    test(common, "Starting → Started → Stopped → unregistered; the terminal status stays in the history", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("exit-on-abort")
        expect([ClientStatus.Starting, ClientStatus.Started]).toContain(yield* h.executor.getStatus(jobId))
        expect((yield* h.executor.jobs).map((j) => j.jobId)).toContain(jobId)
        yield* h.waitEvent("Started", jobId)
        expect(yield* h.executor.checkStatus(jobId)).toBe("started")
        yield* h.executor.abortApp(jobId)
        expect((yield* h.executor.jobs).map((j) => j.jobId)).not.toContain(jobId)
        expect(yield* h.executor.checkStatus(jobId)).toBe("stopped")
        expect(yield* h.executor.getStatus(jobId)).toBe(ClientStatus.Stopped)
        yield* h.waitEvent("Completed", jobId)
        expect(eventsOf(h, jobId)).toEqual(["Launched", "Started", "Stopped", "Completed"])
      }))

    test(common, "a job that exits 0: outcome 0, events Launched, Started, Stopped, Completed (one), history kept", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("exit-with", [0])
        const outcome = yield* completion(h, jobId)
        expect(outcome).toEqual({ jobId, returnCode: 0, reason: undefined, exit: { code: 0, signal: null, oomKilled: false, lost: false } })
        yield* completedOf(h, jobId)
        expect(eventsOf(h, jobId)).toEqual(["Launched", "Started", "Stopped", "Completed"])
        expect(yield* h.executor.checkStatus(jobId)).toBe("stopped")
        expect(yield* completion(h, jobId)).toEqual(outcome)
        expect(yield* h.executor.checkStatus(`${jobId}-unknown`)).toBe("not started")
        expect((yield* Effect.flip(h.executor.awaitCompletion(`${jobId}-unknown`)))._tag).toBe("JobNotFound")
      }))

    test(common, "a second startApp for a registered id is refused and launches nothing", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        const again = yield* Effect.flip(h.start(conformanceEchoFixture, [], { jobId }))
        expect((again as { _tag?: string })._tag).toBe("JobAlreadyRegistered")
        expect(h.requests.size).toBe(1)
        expect(yield* h.executor.checkStatus(jobId)).toBe("started")
        yield* h.executor.abortApp(jobId)
        expect(h.seen.filter((e) => e._tag === "Completed" && e.jobId === jobId)).toHaveLength(1)
      }))
  })
}
