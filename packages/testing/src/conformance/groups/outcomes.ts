/**
 * The outcomes group: the outcome table, row by row, and the exit records of
 * signal and memory deaths.
 *
 * @since 0.1.0
 */
import { Duration, Effect } from "effect"
import { expect } from "../../internal/vitest.js"
import { fixtureFacts } from "../../fixtures.js"
import { mockClient } from "../../mocks.js"
import type { Harness } from "../harness.js"
import type { GroupInput } from "./register.js"
import { contextOf, test, testWith, withCaps } from "./register.js"
import { completion, check, exitOf, show, handleOf, eventsOf, startedEcho } from "./probes.js"

/** Outcomes: the outcome table, row by row. */
export const outcomesTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "outcomes", (caps) => {
    const outcomeOf = (h: Harness, fixture: Parameters<Harness["start"]>[0], ...args: Array<string | number>) =>
      h.start(fixture, args).pipe(Effect.flatMap((jobId) => completion(h, jobId)))

    test(common, "abort while Starting and while Started: 9", (h) =>
      Effect.gen(function* () {
        const starting = yield* h.start("slow-start", [60_000])
        const started = yield* startedEcho(h)
        yield* Effect.all([h.executor.abortApp(starting), h.executor.abortApp(started)], { concurrency: 2 })
        expect((yield* completion(h, starting)).returnCode).toBe(9)
        expect((yield* completion(h, started)).returnCode).toBe(9)
      }))

    test(
      common,
      "no Started within the start timeout: killed, 104",
      (h) =>
        Effect.gen(function* () {
          const outcome = yield* outcomeOf(h, "never-connect")
          expect(outcome).toMatchObject({ returnCode: 104, reason: "infrastructure error" })
          expect(yield* h.executor.checkStatus(outcome.jobId)).toBe("exception")
          // never-connect does not handle SIGTERM: the start timeout's terminate kills it with it
          if (caps.signals) expect(outcome.exit, "the start timeout's exit record").toEqual(exitOf(null, "SIGTERM"))
        }),
      { executorOptions: { startTimeoutMs: common.timeouts.shortStartTimeoutMs } }
    )

    test(common, "exit 0 → 0; exit 101–104 → that code; other codes → 1 with the raw code kept", (h) =>
      Effect.gen(function* () {
        const codes = [0, 101, 102, 103, 104, 7]
        const outcomes = yield* Effect.forEach(codes, (code) => outcomeOf(h, "exit-with", code), { concurrency: "unbounded" })
        expect(outcomes.map((o) => o.returnCode)).toEqual([0, 101, 102, 103, 104, 1])
        expect(outcomes.map((o) => o.exit), "the exit records, exactly").toEqual(codes.map((code) => exitOf(code, null)))
        const statuses = yield* Effect.forEach(outcomes, (o) => h.executor.checkStatus(o.jobId))
        expect(statuses).toEqual(["stopped", "exception", "exception", "exception", "exception", "exception"])
      }))

    test(common, "a crash after Started → 1; a crash while Starting → 104", (h) =>
      Effect.gen(function* () {
        const later = yield* outcomeOf(h, "crash-later", 10)
        expect(later, "a crash after Started").toEqual({ jobId: later.jobId, returnCode: 1, reason: later.reason, exit: exitOf(1, null) })
        const early = yield* outcomeOf(h, "crash-at-start")
        expect(early, "a crash while Starting").toEqual({ jobId: early.jobId, returnCode: 104, reason: early.reason, exit: exitOf(1, null) })
      }))

    test(common, "the rc file stands for the exit code", (h) =>
      Effect.gen(function* () {
        const rc0 = yield* outcomeOf(h, "write-rc", 0)
        expect(rc0.returnCode).toBe(0)
        // the rc file stands for the code in the outcome; the exit record keeps what happened
        expect(rc0.exit, "the exit record of write-rc (it exits 1)").toEqual(exitOf(1, null))
        expect((yield* outcomeOf(h, "write-rc", 102)).returnCode).toBe(102)
      }))

    testWith(common, caps, "signals", "a job killed by SIGKILL: exactly { code: null, signal: SIGKILL, oomKilled: false, lost: false }", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("ignore-abort")
        yield* h.waitEvent("Started", jobId)
        yield* h.executor.abortApp(jobId)
        const outcome = yield* completion(h, jobId)
        expect(outcome.exit, "the exit record of a SIGKILL death").toEqual(exitOf(null, "SIGKILL"))
      }))

    testWith(common, caps, "signals", "a job dead of SIGTERM: exactly { code: null, signal: SIGTERM, oomKilled: false, lost: false }", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        // conformance-echo has no SIGTERM handler: SIGTERM's default action ends it, long before the kill
        yield* handleOf(h, jobId).terminate({ killAfter: Duration.millis(common.timeouts.eventMs * 3) })
        const outcome = yield* completion(h, jobId)
        expect(outcome.exit, "the exit record of a SIGTERM death").toEqual(exitOf(null, "SIGTERM"))
      }))

    testWith(common, caps, "memoryLimit", "a job over its memory limit is killed or cannot allocate", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("allocate-until-oom", [1024], { meta: { resource_spec: { [mockClient().clientName]: { memory: "256Mi" } } } })
        const outcome = yield* completion(h, jobId, common.timeouts.testMs)
        yield* check(eventsOf(h, jobId).includes("Started"), `the job limited to 256Mi never started (${show(outcome)}): a claimed memoryLimit must run it`)
        yield* check(
          outcome.exit.code !== fixtureFacts.exitCodes.oomCap && outcome.returnCode !== 0,
          `a job limited to 256Mi allocated 1 GiB and ended ${show(outcome.exit)}: capabilities.memoryLimit is claimed, no limit holds`
        )
      }))

    testWith(common, caps, "oomDetection", "an OOM-killed job: exit.oomKilled, outcome 1", (h) =>
      Effect.gen(function* () {
        const outcome = yield* h
          .start("allocate-until-oom", [4096], { meta: { resource_spec: { [mockClient().clientName]: { memory: "256Mi" } } } })
          .pipe(Effect.flatMap((jobId) => completion(h, jobId)))
        expect(outcome.exit.oomKilled, `exit ${show(outcome.exit)}`).toBe(true)
        expect(outcome.returnCode).toBe(1)
      }))
  })
}
