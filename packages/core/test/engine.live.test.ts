/**
 * The engine's timed paths under Effect's live clock, with short durations: the
 * same implementation the TestClock tests in engine.test.ts drive (the engine
 * and the protocol never ask which clock they run on), run on real time.
 * Every wait has a deadline; nothing sleeps to wait for an outcome.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as Message from "../src/Message.js"
import { ClientStatus } from "../src/Status.js"
import type { Program } from "./support/memoryLauncher.js"
import { deploy, nextEvent, programs, setup } from "./support/setup.js"

/** Fails the test, naming `what`, when `effect` has not finished within 10 s. */
const within = <A, E>(what: string, effect: Effect.Effect<A, E>) =>
  effect.pipe(Effect.timeoutFail({ duration: Duration.seconds(10), onTimeout: () => new Error(`${what} did not happen within 10 s`) }))

const hanging: Program = (c) =>
  c.worker({
    run: (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(0))),
    handlers: { test: { echo: (m) => m.payload, hang: () => new Promise(() => undefined) } }
  })

describe("engine under the live clock", () => {
  it.scopedLive("the start timeout kills a job that never reports Started → 104", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher } = yield* setup(() => programs.neverConnects, { startTimeoutMs: 100 })
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      const outcome = yield* within("the start timeout", executor.awaitCompletion("job-1"))
      expect(launcher.terminations).toEqual(["job-1"])
      expect(outcome).toMatchObject({ returnCode: 104, reason: "infrastructure error" })
    }))

  it.scopedLive("a worker that ignores abort is terminated after the grace period, then killed: 9", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher, events } = yield* setup(() => programs.stubborn, { graceMs: 100, killTimeoutMs: 100 })
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* within("Started", nextEvent(events, "Started", "job-1"))
      yield* within("the abort", executor.abortApp("job-1"))
      expect(launcher.terminations).toEqual(["job-1"])
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9, exit: { signal: "SIGKILL" } })
    }))

  it.scopedLive("sendToJob: a reply, then RequestTimeout at the request's deadline, then the connection still answers", () =>
    Effect.gen(function* () {
      const { workspace, executor, events } = yield* setup(() => hanging)
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* within("Started", nextEvent(events, "Started", "job-1"))
      const send = (topic: string, timeout: number) =>
        executor.sendToJob({ jobId: "job-1", channel: "test", topic, message: Message.make({ n: 1 }), timeout })
      expect((yield* within("the echo", send("echo", 5_000))).payload).toEqual({ n: 1 })
      const timedOut = yield* within("the timeout", Effect.flip(send("hang", 50)))
      expect(timedOut).toMatchObject({ _tag: "RequestTimeout", jobId: "job-1", topic: "hang", timeout: 50 })
      expect((yield* within("the echo after the timeout", send("echo", 5_000))).payload).toEqual({ n: 1 })
      expect(yield* executor.getStatus("job-1")).toBe(ClientStatus.Started)
    }))

  it.scopedLive("a starting job that never connects: the request waits for it, then RequestTimeout at its deadline", () =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup(() => programs.neverConnects)
      deploy(workspace, "slow")
      yield* executor.startApp({ jobId: "slow", args: { workspace } })
      const error = yield* within(
        "the timeout",
        Effect.flip(executor.sendToJob({ jobId: "slow", channel: "test", topic: "echo", message: Message.make(), timeout: 80 }))
      )
      expect(error).toMatchObject({ _tag: "RequestTimeout", jobId: "slow", topic: "echo", timeout: 80 })
    }))
})
