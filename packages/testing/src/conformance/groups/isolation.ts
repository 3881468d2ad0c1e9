/**
 * The isolation group: concurrent jobs do not mix, and nothing is left behind.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { describe, expect } from "../../internal/vitest.js"
import { testRunLabel } from "../context.js"
import { conformanceJobFacts, conformanceJobFixture } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, test } from "./register.js"
import { ask, startedEcho, echo } from "./probes.js"

/** Isolation and cleanup: concurrent jobs do not mix, and nothing is left behind. */
export const isolationTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("isolation", () => {
    test(common, "5 concurrent jobs each get only their own replies and their own job id", (h) =>
      Effect.gen(function* () {
        const jobIds = yield* Effect.forEach(
          [1, 2, 3, 4, 5],
          () => h.start(conformanceJobFixture).pipe(Effect.tap((jobId) => h.waitEvent("Started", jobId))),
          { concurrency: "unbounded" }
        )
        const replies = yield* Effect.forEach(
          jobIds.flatMap((jobId) => [0, 1, 2, 3].map((n) => ({ jobId, n }))),
          ({ jobId, n }) => echo(h, jobId, { jobId, n }).pipe(Effect.map((m) => ({ jobId, n, payload: m.payload }))),
          { concurrency: "unbounded" }
        )
        for (const r of replies) expect(r.payload).toEqual({ jobId: r.jobId, n: r.n })
        // what each job got: its own id (its channel's URL may be the same path in each container)
        const envs = yield* Effect.forEach(jobIds, (jobId) => ask(h, jobId, conformanceJobFacts.topics.env).pipe(Effect.map((p) => (p as { env: Record<string, string> }).env)))
        expect(envs.map((e) => e.FLEXEC_JOB_ID), "each job's own FLEXEC_JOB_ID").toEqual(jobIds)
        const requests = [...h.requests.values()]
        expect(new Set(requests.map((r) => r.env.FLEXEC_JOB_ID)).size).toBe(5)
        expect(new Set(requests.map((r) => r.channel.socketPath)).size).toBe(5)
        expect(requests.every((r) => r.labels[testRunLabel] === common.runId)).toBe(true)
      }))

    test(common, "jobs left running when the test ends are aborted and leave nothing behind", (h) =>
      Effect.gen(function* () {
        yield* Effect.forEach([1, 2], () => startedEcho(h), { concurrency: "unbounded" })
        yield* h.start("ignore-abort")
      }))
  })
}
