/**
 * The handle group: the handle's contract after the exit (wait again, poll,
 * terminate again) and a double terminate.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Option } from "effect"
import { describe, expect } from "../../internal/vitest.js"
import type { GroupInput } from "./register.js"
import { contextOf, test } from "./register.js"
import { within, completion, check, handleOf, startedEcho } from "./probes.js"

/** The handle's contract after the exit: wait again, poll, terminate again. */
export const handleTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("handle", () => {
    test(common, "after the exit: wait resolves again (same exit), poll is Some of it at once, terminate() twice succeeds", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("exit-with", [0])
        const outcome = yield* completion(h, jobId)
        const handle = handleOf(h, jobId)
        const bound = 2_000
        const first = yield* within(bound, "handle.wait after the exit did not resolve", handle.wait)
        const polled = yield* within(bound, "handle.poll after the exit did not return", handle.poll)
        yield* check(Option.isSome(polled), "handle.poll is None right after handle.wait resolved: poll must see the exit wait saw")
        expect(Option.getOrThrow(polled), "poll's exit").toEqual(first)
        expect(first, "wait's exit equals the outcome's").toEqual(outcome.exit)
        yield* within(bound, "terminate() after the exit did not return", handle.terminate())
        yield* within(bound, "a second terminate() after the exit did not return", handle.terminate({ killAfter: Duration.millis(0) }))
        const again = yield* within(bound, "handle.wait after terminate() did not resolve", handle.wait)
        expect(again, "wait again: the same exit").toEqual(first)
      }))

    test(common, "terminate() twice on a running job: one exit, both calls return", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        const handle = handleOf(h, jobId)
        yield* within(2_000, "terminate() did not return", handle.terminate())
        yield* within(2_000, "a second terminate() did not return", handle.terminate())
        const exit = yield* within(common.timeouts.eventMs, "the terminated job's wait did not resolve", handle.wait)
        expect(yield* within(2_000, "wait again", handle.wait)).toEqual(exit)
      }))
  })
}
