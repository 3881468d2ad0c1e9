/**
 * The validate group: the launcher checks its own `launcher_spec` mode.
 *
 * @since 0.1.0
 */
import { Effect, Either } from "effect"
import { describe, expect } from "../../internal/vitest.js"
import { conformanceEchoFixture } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, test } from "./register.js"
import { check } from "./probes.js"

/** validate: the launcher checks its own launcher_spec mode. */
export const validateTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("validate", () => {
    test(common, "an unknown key under launcher_spec.default.<launcher.name> is refused with InvalidJobMeta naming it; nothing launched", (h) =>
      Effect.gen(function* () {
        const key = "conformance_no_such_key"
        const jobId = h.newJobId("badspec")
        const result = yield* Effect.either(h.start(conformanceEchoFixture, [], { jobId, meta: { launcher_spec: { default: { [h.launcher.name]: { [key]: 1 } } } } }))
        yield* check(
          Either.isLeft(result),
          `a job with launcher_spec.default.${h.launcher.name}.${key} was accepted${h.launcher.validate === undefined ? " (the launcher has no validate)" : ""}: validate must refuse unknown keys`
        )
        const error = (result as Either.Left<unknown, unknown>).left as { readonly _tag?: string; readonly message?: string }
        expect(error._tag, "the refusal's type").toBe("InvalidJobMeta")
        yield* check(String(error.message).includes(key), `the refusal does not name the key ${key}: ${error.message}`)
        expect(h.requests.size, "nothing was launched").toBe(0)
        expect((yield* h.executor.jobs).length).toBe(0)
      }))

    test(common, "a valid launcher_spec for the launcher (an empty mode) is accepted", (h) =>
      Effect.gen(function* () {
        const jobId = h.newJobId("goodspec")
        const result = yield* Effect.either(h.start(conformanceEchoFixture, [], { jobId, meta: { launcher_spec: { default: { [h.launcher.name]: {} } } } }))
        yield* check(Either.isRight(result), `a job with an empty launcher_spec.default.${h.launcher.name} was refused: ${Either.isLeft(result) ? String((result.left as Error).message ?? result.left) : ""}`)
        yield* h.waitEvent("Started", jobId)
        yield* h.executor.abortApp(jobId)
      }))
  })
}
