import { describe, expect, it } from "@effect/vitest"
import { ListResourceManager, adapt } from "@flexec/core"
import { Duration, Effect, Exit, Fiber, Option, TestClock } from "effect"
import { MockResourceManager, mockClient } from "../src/index.js"

describe("mockClient", () => {
  it("is site-1 with credentials; overrides replace fields", () => {
    expect(mockClient()).toMatchObject({ clientName: "site-1" })
    expect(typeof mockClient().token).toBe("string")
    expect(mockClient({ clientName: "site-9", token: "t" })).toMatchObject({ clientName: "site-9", token: "t" })
  })
})

describe("MockResourceManager", () => {
  it.effect("records every call with its arguments and the Clock time", () =>
    Effect.gen(function* () {
      const rm = new MockResourceManager()
      yield* TestClock.adjust(Duration.millis(1234))
      const { ok, token } = yield* rm.checkResources({ num_of_gpus: 0 })
      expect(ok).toBe(true)
      const allocation = yield* rm.allocateResources({ num_of_gpus: 0 }, token)
      expect(allocation).toEqual({ mock: [token] })
      yield* rm.freeResources(allocation, token)
      yield* rm.cancelResources({}, "other")
      yield* rm.reportResources()
      expect(rm.calls.map((c) => c.method)).toEqual([
        "checkResources",
        "allocateResources",
        "freeResources",
        "cancelResources",
        "reportResources"
      ])
      expect(rm.calls[1]).toEqual({ method: "allocateResources", args: [{ num_of_gpus: 0 }, token], time: 1234 })
      expect(rm.callsTo("freeResources")).toHaveLength(1)
    })
  )

  it.effect("counts frees per token", () =>
    Effect.gen(function* () {
      const rm = new MockResourceManager()
      yield* rm.freeResources({ a: 1 }, "t1")
      yield* rm.freeResources({ a: 1 }, "t1")
      yield* rm.freeResources({ b: 1 }, "t2")
      expect(rm.freedTokens()).toEqual(new Map([["t1", 2], ["t2", 1]]))
      rm.clearCalls()
      expect(rm.freedTokens().size).toBe(0)
      expect(rm.calls).toEqual([])
    })
  )

  it.effect("refuses checks as scripted, a limited number of times", () =>
    Effect.gen(function* () {
      const rm = new MockResourceManager().refuseChecks(1)
      expect(yield* rm.checkResources({})).toEqual({ ok: false, token: "" })
      expect((yield* rm.checkResources({})).ok).toBe(true)
      rm.refuseChecks()
      expect((yield* rm.checkResources({})).ok).toBe(false)
      expect((yield* rm.checkResources({})).ok).toBe(false)
      rm.reset()
      expect((yield* rm.checkResources({})).ok).toBe(true)
    })
  )

  it.effect("fails allocate with ResourceTokenInvalid and free with a defect", () =>
    Effect.gen(function* () {
      const rm = new MockResourceManager().failAllocate(1).failFree(1)
      const allocated = yield* Effect.exit(rm.allocateResources({}, "tok"))
      expect(allocated).toEqual(Exit.fail(expect.objectContaining({ _tag: "ResourceTokenInvalid", token: "tok" })))
      const freed = yield* Effect.exit(rm.freeResources({ a: 1 }, "tok"))
      expect(Exit.isFailure(freed) && Exit.isFailure(freed) && freed.cause._tag === "Die").toBe(true)
      expect(rm.freedTokens().get("tok")).toBe(1)
      // the scripts were for one call each
      expect(yield* rm.allocateResources({}, "tok")).toEqual({ mock: ["tok"] })
      yield* rm.freeResources({ a: 1 }, "tok")
      expect(rm.freedTokens().get("tok")).toBe(2)
    })
  )

  it.effect("hangs allocate and free until interrupted (a timeout ends them)", () =>
    Effect.gen(function* () {
      const rm = new MockResourceManager().hangFree().hangAllocate()
      const free = yield* Effect.fork(rm.freeResources({ a: 1 }, "t").pipe(Effect.timeout(Duration.seconds(30))))
      const allocate = yield* Effect.fork(rm.allocateResources({}, "t").pipe(Effect.timeoutOption(Duration.seconds(30))))
      yield* rm.awaitCall("allocateResources")
      yield* TestClock.adjust(Duration.seconds(29))
      expect(Option.isNone(yield* Fiber.poll(free))).toBe(true)
      yield* TestClock.adjust(Duration.seconds(1))
      const freed = yield* Fiber.await(free)
      expect(freed).toEqual(Exit.fail(expect.objectContaining({ _tag: "TimeoutException" })))
      expect(yield* Fiber.join(allocate)).toEqual(Option.none())
    })
  )

  it.effect("delays as scripted on the Clock", () =>
    Effect.gen(function* () {
      const rm = new MockResourceManager().script("checkResources", { delay: "5 seconds" }, 1)
      const fiber = yield* Effect.fork(rm.checkResources({}))
      yield* rm.awaitCall("checkResources")
      yield* TestClock.adjust(Duration.seconds(4))
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust(Duration.seconds(1))
      expect((yield* Fiber.join(fiber)).ok).toBe(true)
    })
  )

  it.effect("awaitCall waits for a matching call, or returns one already made", () =>
    Effect.gen(function* () {
      const rm = new MockResourceManager()
      const waiting = yield* Effect.fork(rm.awaitCall("freeResources", (c) => c.args[1] === "t2"))
      yield* rm.freeResources({}, "t1")
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      yield* rm.freeResources({}, "t2")
      expect((yield* Fiber.join(waiting)).args[1]).toBe("t2")
      expect((yield* rm.awaitCall("freeResources")).args[1]).toBe("t1")
    })
  )

  it.effect("wraps a real manager: its answers, recorded, and scripts still apply", () =>
    Effect.gen(function* () {
      const rm = new MockResourceManager({ wrap: new ListResourceManager({ resources: { slot: ["a"] } }) })
      const first = yield* rm.checkResources({ slot: 1 })
      expect(first.ok).toBe(true)
      expect((yield* rm.checkResources({ slot: 1 })).ok).toBe(false) // the pool has one slot
      const allocation = yield* rm.allocateResources({ slot: 1 }, first.token)
      expect(allocation).toEqual({ slot: ["a"] })
      const bad = yield* Effect.exit(rm.allocateResources({ slot: 1 }, "unknown"))
      expect(Exit.isFailure(bad)).toBe(true)
      yield* rm.freeResources(allocation, first.token)
      expect((yield* rm.checkResources({ slot: 1 })).ok).toBe(true)
      rm.refuseChecks(1)
      expect((yield* rm.checkResources({ slot: 1 })).ok).toBe(false)
      expect(rm.calls).toHaveLength(7)
    })
  )

  it.effect("is a ResourceManager the engine's adapter accepts as it is", () =>
    Effect.gen(function* () {
      const rm = new MockResourceManager()
      const adapted = adapt(rm)
      const { token } = yield* adapted.checkResources({})
      yield* adapted.freeResources({ x: 1 }, token)
      expect(rm.freedTokens().get(token)).toBe(1)
    })
  )
})
