/**
 * The handlers group: a job's `ctx.request` reaches the executor's handlers.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { describe, expect } from "../../internal/vitest.js"
import { fixtureFacts } from "../../fixtures.js"
import type { GroupInput } from "./register.js"
import { contextOf, test } from "./register.js"
import { completion } from "./probes.js"

/** Handlers: a job's `ctx.request` reaches the executor's handlers. */
export const handlersTests = (input: GroupInput): void => {
  const common = contextOf(input)
  const calls: Array<string> = []
  describe("handlers", () => {
    test(
      common,
      "a job's ctx.request reaches the executor's handler and gets its reply",
      (h) =>
        Effect.gen(function* () {
          const jobId = yield* h.start("call-parent")
          const outcome = yield* completion(h, jobId)
          expect(outcome.returnCode).toBe(0)
          expect(calls).toContain(jobId)
        }),
      {
        executorOptions: {
          handlers: {
            [fixtureFacts.parentChannel]: {
              [fixtureFacts.parentTopic]: (jobId: string) => Effect.sync(() => (calls.push(jobId), { hi: jobId }))
            }
          }
        }
      }
    )
  })
}
