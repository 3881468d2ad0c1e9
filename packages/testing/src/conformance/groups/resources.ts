/**
 * The resources group: the allocation is freed exactly once per job, whatever
 * happens.
 *
 * @since 0.1.0
 */
import { Effect, Exit } from "effect"
import { describe, expect } from "../../internal/vitest.js"
import { MockResourceManager, mockClient } from "../../mocks.js"
import { deployConformanceJob } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, test } from "./register.js"
import { completion } from "./probes.js"

/** Resources: the allocation is freed exactly once per job, whatever happens. */
export const resourcesTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("resources", () => {
    const allocate = (rm: MockResourceManager) =>
      Effect.gen(function* () {
        const { token } = yield* rm.checkResources({})
        const allocation = yield* rm.allocateResources({}, token)
        return { token, allocatedResource: allocation, resourceManager: rm }
      })

    test(common, "freed exactly once after a normal exit and after a crash", (h) =>
      Effect.gen(function* () {
        const rm = new MockResourceManager()
        const a = yield* allocate(rm)
        const b = yield* allocate(rm)
        const ok = yield* h.start("exit-with", [0], a)
        const crash = yield* h.start("crash-later", [10], b)
        yield* completion(h, ok)
        yield* completion(h, crash)
        expect(rm.freedTokens()).toEqual(new Map([[a.token, 1], [b.token, 1]]))
      }))

    test(
      common,
      "freed exactly once when the launch fails",
      (h) =>
        Effect.gen(function* () {
          const rm = new MockResourceManager()
          const a = yield* allocate(rm)
          const jobId = h.newJobId("nolaunch")
          yield* deployConformanceJob({ workspace: h.workspace, jobId, clientName: mockClient().clientName, fixture: "no-such-fixture" as never })
          const started = yield* h.executor
            .startApp({ jobId, args: { workspace: h.workspace, set: { fixture: "no-such-fixture", args: [] } }, ...a })
            .pipe(Effect.exit)
          if (Exit.isFailure(started)) {
            const outcome = yield* completion(h, jobId)
            expect(outcome.returnCode).not.toBe(0)
          } else {
            // the backend reports a command that cannot run as an exit: a crash while Starting
            expect((yield* completion(h, jobId)).returnCode).toBe(104)
          }
          yield* h.until("the allocation to be freed", () => rm.freedTokens().get(a.token) === 1)
          expect(rm.freedTokens()).toEqual(new Map([[a.token, 1]]))
        }),
      { executorOptions: { command: ["/nonexistent/flexec-conformance-no-such-command", "{appDir}/main.js"] } }
    )

    test(common, "freed exactly once when abort races completion; nothing freed for an empty allocation", (h) =>
      Effect.gen(function* () {
        const rm = new MockResourceManager()
        const a = yield* allocate(rm)
        const jobId = yield* h.start("exit-with", [0], a)
        yield* Effect.all([h.executor.abortApp(jobId), h.executor.abortApp(jobId), completion(h, jobId)], {
          concurrency: "unbounded"
        })
        expect([0, 9]).toContain((yield* completion(h, jobId)).returnCode)
        expect(rm.freedTokens()).toEqual(new Map([[a.token, 1]]))
        const empty = new MockResourceManager()
        const e = yield* h.start("exit-with", [0], { allocatedResource: {}, token: "empty", resourceManager: empty })
        yield* completion(h, e)
        expect(empty.callsTo("freeResources")).toHaveLength(0)
      }))
  })
}
