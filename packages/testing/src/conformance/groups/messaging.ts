/**
 * The messaging group: echo of JSON and bytes, request timeouts and the error
 * replies.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { describe, expect } from "../../internal/vitest.js"
import { conformanceTopics } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, test } from "./register.js"
import { completion, bytesOf, sameBytes, startedEcho, echo } from "./probes.js"

/** Messaging: echo of JSON and bytes, timeouts and the error replies. */
export const messagingTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("messaging", () => {
    test(common, "echo of JSON and of 1 B, 64 KiB and 16 MiB byte-exact", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        const json = { n: [1, 2, 3], s: "ü ✓", nested: { ok: true, nothing: null } }
        expect((yield* echo(h, jobId, json)).payload).toEqual(json)
        for (const size of [1, 64 * 1024, 16 * 1024 * 1024]) {
          const sent = bytesOf(size)
          const reply = yield* echo(h, jobId, sent, conformanceTopics.echo, 15_000)
          expect(sameBytes(reply.payload, sent), `${size} bytes echoed byte-exact`).toBe(true)
        }
      }))

    test(common, "a handler that never replies: RequestTimeout", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        const error = yield* Effect.flip(echo(h, jobId, { x: 1 }, conformanceTopics.stall, 200))
        expect(error._tag).toBe("RequestTimeout")
      }))

    test(common, "unknown topic: InvalidRequest; a handler that throws: RemoteError", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        expect((yield* Effect.flip(echo(h, jobId, {}, "no-such-topic")))._tag).toBe("InvalidRequest")
        expect((yield* Effect.flip(echo(h, jobId, {}, conformanceTopics.fail)))._tag).toBe("RemoteError")
        expect((yield* echo(h, jobId, "still alive")).payload).toBe("still alive")
      }))

    test(common, "a request to an unknown or a finished job: TargetUnreachable", (h) =>
      Effect.gen(function* () {
        expect((yield* Effect.flip(echo(h, h.newJobId("nobody"), {})))._tag).toBe("TargetUnreachable")
        const jobId = yield* h.start("exit-with", [0])
        yield* completion(h, jobId)
        expect((yield* Effect.flip(echo(h, jobId, {})))._tag).toBe("TargetUnreachable")
      }))
  })
}
