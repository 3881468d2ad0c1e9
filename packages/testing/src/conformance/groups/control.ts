/**
 * The control group: abort in every state, terminate after the grace period and
 * its escalation, `abortTask` and the built-in queries.
 *
 * @since 0.1.0
 */
import { ClientStatus } from "@flexec/core"
import { Duration, Effect, Option } from "effect"
import * as fs from "node:fs"
import { expect } from "../../internal/vitest.js"
import { fixtureFacts } from "../../fixtures.js"
import { processesOfJob } from "../processes.js"
import { conformanceJobFacts, conformanceJobFixture } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, test, withCaps } from "./register.js"
import { within, completion, check, exitOf, handleOf, jobFile, startedEcho } from "./probes.js"

/** Control: abort in every state, terminate after the grace period, abortTask and the built-in queries. */
export const controlTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "control", (caps) => {
    test(common, "abortApp while Starting: outcome 9, abortTask refused while Starting", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("slow-start", [60_000])
        expect(yield* h.executor.getStatus(jobId)).toBe(ClientStatus.Starting)
        expect((yield* Effect.flip(h.executor.abortTask(jobId)))._tag).toBe("TargetUnreachable")
        // a scheduler's job may still be queued (it never ran): only a job that ran can die of a signal
        const ran = caps.processes !== true || processesOfJob(jobId).length > 0
        yield* h.executor.abortApp(jobId)
        expect((yield* h.executor.jobs).length).toBe(0)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        // slow-start has no SIGTERM handler: terminate while Starting ends it with SIGTERM (SIGKILL if its
        // backend's kill came first); a job cancelled before it ran has no signal, and no clean exit either
        if (caps.signals) {
          const truthful = ran ? [exitOf(null, "SIGTERM"), exitOf(null, "SIGKILL")] : [exitOf(null, "SIGTERM"), exitOf(null, "SIGKILL"), exitOf(null, null)]
          expect(truthful, `the exit record of a job terminated while Starting (${ran ? "its process ran" : "no process of it ran yet"})`).toContainEqual(outcome.exit)
        }
      }))

    test(common, "abortApp while Started returns after the job ended; again after the exit it is a no-op", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        yield* h.executor.abortApp(jobId)
        expect((yield* h.executor.jobs).length).toBe(0)
        const handle = h.handles.get(jobId)!
        expect(Option.isSome(yield* handle.poll), "the backend saw the exit when abortApp returned").toBe(true)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        // the echo job exits 0 on the abort message (or dies of the SIGTERM if the grace period ran out first)
        expect([exitOf(0, null), exitOf(null, "SIGTERM")], "the exit record of a job aborted while Started").toContainEqual(outcome.exit)
        yield* h.executor.abortApp(jobId)
        const done = yield* h.start("exit-with", [0])
        yield* completion(h, done)
        yield* h.executor.abortApp(done)
        expect((yield* completion(h, done)).exit, "the exit record of a job that exited 0").toEqual(exitOf(0, null))
      }))

    test(common, "a worker that ignores abort is terminated after the grace period", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("ignore-abort")
        yield* h.waitEvent("Started", jobId)
        yield* h.executor.abortApp(jobId)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        if (caps.signals) expect(outcome.exit, "killed by SIGKILL, code and signal apart").toEqual(exitOf(null, "SIGKILL"))
      }))

    test(common, "terminate({ killAfter }) escalates on time: SIGTERM first, alive until just before killAfter, dead by killAfter + slack", (h) =>
      Effect.gen(function* () {
        const t = common.timeouts
        const jobId = yield* h.start(conformanceJobFixture, ["stubborn"])
        yield* h.waitEvent("Started", jobId)
        const handle = handleOf(h, jobId)
        const marker = jobFile(h, jobId, conformanceJobFacts.sigtermMarker)
        // alive until (killAfter - guard) is required; dead by (killAfter + slack)
        const guard = Math.min(500, Math.floor(t.killAfterMs / 4))
        const t0 = Date.now()
        yield* within(t.eventMs, "terminate() did not return (it must return once the kill is sent)", handle.terminate({ killAfter: Duration.millis(t.killAfterMs) }))
        let deadAt: number | undefined
        while (deadAt === undefined && Date.now() - t0 < t.killAfterMs - guard) {
          if (Option.isSome(yield* handle.poll)) deadAt = Date.now() - t0
          else yield* Effect.sleep(Duration.millis(20))
        }
        yield* check(
          deadAt === undefined,
          `the job, which ignores SIGTERM, was dead ${deadAt} ms after terminate({ killAfter: ${t.killAfterMs} ms }): killed before killAfter`
        )
        if (caps.signals) {
          yield* check(fs.existsSync(marker), `the job saw no SIGTERM within ${t.killAfterMs - guard} ms of terminate (no ${conformanceJobFacts.sigtermMarker}): SIGTERM must come first`)
        }
        const exit = yield* within(
          Math.max(1, t.killAfterMs + t.killSlackMs - (Date.now() - t0)),
          `the job that ignores SIGTERM was still alive ${t.killAfterMs + t.killSlackMs} ms after terminate({ killAfter: ${t.killAfterMs} ms }): no escalation to SIGKILL by killAfter`,
          handle.wait
        )
        if (caps.signals) expect(exit, "the escalated job's exit record").toEqual(exitOf(null, "SIGKILL"))
      }))

    test(common, "abortTask aborts the current task", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("long-task")
        yield* h.waitEvent("Started", jobId)
        const aborted = h.executor.getRunInfo(jobId).pipe(Effect.map((info) => (info.tasks as { aborted?: number } | undefined)?.aborted))
        yield* h.until("long-task to report its stats", () => aborted.pipe(Effect.map((n) => n === 0)))
        yield* h.executor.abortTask(jobId)
        yield* h.until("the task to be aborted", () => aborted.pipe(Effect.map((n) => n === 1)))
      }))

    test(common, "getRunInfo, getErrors, resetErrors and configureJobLog do what they say", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("report-errors")
        yield* h.waitEvent("Started", jobId)
        yield* h.until("errors to be reported", () => h.executor.getErrors(jobId).pipe(Effect.map((e) => Object.keys(e).length >= 2)))
        const errors = yield* h.executor.getErrors(jobId)
        expect(errors.io?.warning).toMatch(/: disk almost full$/)
        expect(errors.general?.error).toMatch(/: second failure$/)
        expect(yield* h.executor.getRunInfo(jobId)).toMatchObject(fixtureFacts.reportErrors.stats)
        yield* h.executor.resetErrors(jobId)
        expect(yield* h.executor.getErrors(jobId)).toEqual({})
        yield* h.executor.configureJobLog(jobId, { level: "debug" })
        expect((yield* Effect.flip(h.executor.configureJobLog(jobId, { level: "no-such-level" })))._tag).toBe("RemoteError")
      }))
  })
}
