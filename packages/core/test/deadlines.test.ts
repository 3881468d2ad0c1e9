import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, TestClock } from "effect"
import { makeDeadlines } from "../src/internal/deadlines.js"

/** `clock`, counting the wake-ups armed on it. */
const counting = (clock: Clock.Clock) => {
  const counter = { sleeps: 0 }
  const wrapped: Clock.Clock = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => clock.unsafeCurrentTimeMillis(),
    currentTimeMillis: clock.currentTimeMillis,
    unsafeCurrentTimeNanos: () => clock.unsafeCurrentTimeNanos(),
    currentTimeNanos: clock.currentTimeNanos,
    sleep: (duration) => {
      counter.sleeps++
      return clock.sleep(duration)
    }
  }
  return { clock: wrapped, counter }
}

describe("deadlines (one wake-up over the Effect clock)", () => {
  it.effect("TestClock: each deadline fires at its time, in order; a cancelled one never; nothing before its time", () =>
    Effect.gen(function* () {
      const deadlines = makeDeadlines(yield* Effect.clock)
      const fired: Array<string> = []
      deadlines.add(100, () => fired.push("a100"))
      deadlines.add(50, () => fired.push("b50"))
      const c = deadlines.add(100, () => fired.push("c100"))
      deadlines.add(100, () => fired.push("d100"))
      c.cancel()
      expect(deadlines.size()).toBe(3)
      yield* TestClock.adjust("49 millis")
      expect(fired).toEqual([])
      yield* TestClock.adjust("1 millis")
      expect(fired).toEqual(["b50"])
      yield* TestClock.adjust("49 millis")
      expect(fired).toEqual(["b50"])
      yield* TestClock.adjust("1 millis")
      expect(fired).toEqual(["b50", "a100", "d100"])
      expect(deadlines.size()).toBe(0)
      yield* TestClock.adjust("1 hour")
      expect(fired).toEqual(["b50", "a100", "d100"])
    })
  )

  it.effect("TestClock: many deadlines of one duration that come and go arm the clock about once per duration, not once each", () =>
    Effect.gen(function* () {
      const { clock, counter } = counting(yield* Effect.clock)
      const deadlines = makeDeadlines(clock)
      let fired = 0
      // 200 requests over 5 s, each answered 25 ms after it was sent, each with a 5 s timeout
      for (let i = 0; i < 200; i++) {
        const d = deadlines.add(5_000, () => fired++)
        yield* TestClock.adjust("25 millis")
        d.cancel()
      }
      expect(fired).toBe(0)
      expect(counter.sleeps).toBeLessThanOrEqual(2)
      // a shorter deadline than the armed one re-arms at once
      deadlines.add(10, () => fired++)
      yield* TestClock.adjust("10 millis")
      expect(fired).toBe(1)
    })
  )

  it.effect("TestClock: close cancels everything; a deadline added after it never fires; a non-finite one never fires", () =>
    Effect.gen(function* () {
      const deadlines = makeDeadlines(yield* Effect.clock)
      const fired: Array<number> = []
      deadlines.add(10, () => fired.push(1))
      deadlines.add(Infinity, () => fired.push(2))
      deadlines.close()
      deadlines.add(10, () => fired.push(3))
      yield* TestClock.adjust("1 hour")
      expect(fired).toEqual([])
      expect(deadlines.size()).toBe(0)
    })
  )

  it.live("live clock: the same structure fires on real time, never before its deadline", () =>
    Effect.gen(function* () {
      const clock = yield* Effect.clock
      const deadlines = makeDeadlines(clock)
      const done = yield* Deferred.make<number>()
      const start = clock.unsafeCurrentTimeMillis()
      deadlines.add(30, () => Deferred.unsafeDone(done, Effect.succeed(clock.unsafeCurrentTimeMillis())))
      const cancelled = deadlines.add(10, () => Deferred.unsafeDone(done, Effect.succeed(-1)))
      cancelled.cancel()
      const at = yield* Deferred.await(done).pipe(
        Effect.timeoutFail({ duration: Duration.seconds(10), onTimeout: () => new Error("the deadline did not fire") })
      )
      expect(at).not.toBe(-1)
      expect(at - start).toBeGreaterThanOrEqual(30)
    })
  )
})
