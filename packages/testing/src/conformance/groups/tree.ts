/**
 * The tree group (capability processes): no process of a job outlives it,
 * however its leader ended.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import { expect } from "../../internal/vitest.js"
import type { Harness } from "../harness.js"
import { pollUntil } from "../pollUntil.js"
import { processesOfJob } from "../processes.js"
import { conformanceJobFacts, conformanceJobFixture } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, testWith, withCaps } from "./register.js"
import { completion, exitOf, show, treeGone, ask, jobFile } from "./probes.js"

/** The whole tree (capability processes): no process of a job outlives it, however its leader ended. */
export const treeTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "tree", (caps) => {
    /** Starts conformance-job with a SIGTERM-ignoring child; checks the suite sees both processes. */
    const withChild = (h: Harness, flags: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const jobId = yield* h.start(conformanceJobFixture, ["child", ...flags])
        yield* h.waitEvent("Started", jobId)
        yield* h.until("the job's child to write its pid", () => fs.existsSync(jobFile(h, jobId, conformanceJobFacts.childPidFile)))
        // the leak check has something to find: the leader and its child
        yield* pollUntil("the job's leader and child as OS processes", () => processesOfJob(jobId).length >= 2, common.timeouts.eventMs).pipe(
          Effect.mapError(() => new Error(`suite: expected the job's leader and its child among /proc, found ${show(processesOfJob(jobId))}`))
        )
        return jobId
      })

    testWith(common, caps, "processes", "a cooperative abort where the leader exits first leaves no process of the job", (h) =>
      Effect.gen(function* () {
        const jobId = yield* withChild(h, [])
        yield* h.executor.abortApp(jobId)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        yield* treeGone(h, jobId, "whole tree (the leader exited on abort, its SIGTERM-ignoring child was left)")
      }))

    testWith(common, caps, "processes", "terminate of a SIGTERM-ignoring leader leaves no process of the job", (h) =>
      Effect.gen(function* () {
        const jobId = yield* withChild(h, ["stubborn"])
        yield* h.executor.abortApp(jobId)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        yield* treeGone(h, jobId, "whole tree (leader and child ignore SIGTERM: SIGKILL must reach both)")
      }))

    testWith(common, caps, "processes", "a normal exit of the leader leaves no process of the job", (h) =>
      Effect.gen(function* () {
        const jobId = yield* withChild(h, [])
        yield* ask(h, jobId, conformanceJobFacts.topics.exit)
        const outcome = yield* completion(h, jobId)
        expect(outcome.exit, "the leader's exit").toEqual(exitOf(0, null))
        yield* treeGone(h, jobId, "whole tree (the leader exited 0, its SIGTERM-ignoring child was left)")
      }))
  })
}
