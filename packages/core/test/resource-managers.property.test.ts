import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Ref } from "effect"
import fc from "fast-check"
import { GpuResourceManager, ListResourceManager } from "../src/index.js"
import type { ResourceManager } from "../src/index.js"

/**
 * Random batches of operations; the operations of one batch run in concurrent
 * fibers. A token operand is an index into the tokens issued so far (some
 * indexes name a token of another manager, or one never issued).
 */
type Op =
  | { readonly op: "check"; readonly a: number; readonly b: number }
  | { readonly op: "cancel" | "allocate" | "free"; readonly t: number }
  | { readonly op: "expire"; readonly ms: number }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("check" as const), a: fc.nat(3), b: fc.nat(8) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("cancel" as const), t: fc.nat(20) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("allocate" as const), t: fc.nat(20) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("free" as const), t: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("expire" as const), ms: fc.integer({ min: 1, max: 1500 }) }) }
)
const batchesArb = fc.array(fc.array(opArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 8 })

const EXPIRATION_MS = 1000

/**
 * A hand-driven Clock: the managers read `Clock.currentTimeMillis`, so this
 * drives expiry exactly as `TestClock.adjust` does (the unit tests use
 * TestClock), without TestClock's per-adjust yield to the event loop, which
 * would make a few hundred runs take many seconds.
 */
const manualClock = () => {
  let now = 0
  const clock: Clock.Clock = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
    currentTimeMillis: Effect.sync(() => now),
    currentTimeNanos: Effect.sync(() => BigInt(now) * 1_000_000n),
    sleep: () => Effect.never
  }
  return { clock, adjust: (ms: number) => Effect.sync(() => void (now += ms)) }
}

interface Harness {
  readonly rm: ResourceManager
  /** The requirement of a `check` op. */
  readonly requirement: (a: number, b: number) => Record<string, number>
  /** Asserts pool + reserved + allocated = capacity (and what else must hold) on a report. */
  readonly invariant: (report: Readonly<Record<string, unknown>>) => void
  /** Asserts everything is back, in order. */
  readonly drained: (report: Readonly<Record<string, unknown>>) => void
}

const unitsOf = (report: Readonly<Record<string, unknown>>) => {
  const byToken = [
    ...Object.values(report["reserved"] as Record<string, { resources: Record<string, ReadonlyArray<string>> }>).map(
      (r) => r.resources
    ),
    ...Object.values(report["allocated"] as Record<string, Record<string, ReadonlyArray<string>>>)
  ]
  return { pool: report["resources"] as Record<string, ReadonlyArray<string>>, byToken }
}

const listHarness = (): Harness => {
  const capacity = { gpu: ["g0", "g1", "g2", "g3"], cpu: ["c0", "c1", "c2", "c3", "c4", "c5"] }
  return {
    rm: new ListResourceManager({ resources: capacity, expirationMs: EXPIRATION_MS }),
    requirement: (a, b) => (b === 8 ? { tpu: 1 } : { gpu: a, cpu: b % 5 }),
    invariant: (report) => {
      const { byToken, pool } = unitsOf(report)
      for (const [kind, units] of Object.entries(capacity)) {
        // the pool keeps the configured order
        expect(pool[kind]).toEqual(units.filter((u) => pool[kind]!.includes(u)))
        const all = [...pool[kind]!, ...byToken.flatMap((r) => r[kind] ?? [])]
        expect([...all].sort()).toEqual([...units].sort())
      }
    },
    drained: (report) => {
      expect(report["resources"]).toEqual(capacity)
      expect(report["reserved"]).toEqual({})
      expect(report["allocated"]).toEqual({})
    }
  }
}

type Row = { gpu_id: number; memory: number; total: number; jobs: number }
const gpuHarness = (exclusive: boolean): Harness => ({
  rm: new GpuResourceManager({
    gpus: [0, 1, 2].map((id) => ({ id, memoryMiB: 16 * 1024 })),
    memPerGpuInGiB: 16,
    exclusive,
    expirationMs: EXPIRATION_MS
  }),
  requirement: (a, b) => ({ num_of_gpus: a, mem_per_gpu_in_GiB: b * 2 }),
  invariant: (report) => {
    const rows = report["resources"] as ReadonlyArray<Row>
    const holders = [
      ...Object.values(report["reserved"] as Record<string, { resources: { gpus?: Record<string, number> } }>).map(
        (r) => r.resources
      ),
      ...Object.values(report["allocated"] as Record<string, { gpus?: Record<string, number> }>)
    ]
    for (const row of rows) {
      const held = holders.flatMap((h) => (h.gpus?.[String(row.gpu_id)] === undefined ? [] : [h.gpus[String(row.gpu_id)]!]))
      expect(row.memory + held.reduce((x, y) => x + y, 0)).toBe(row.total)
      expect(row.jobs).toBe(held.length)
      expect(row.memory).toBeGreaterThanOrEqual(0)
      if (exclusive) expect(row.jobs).toBeLessThanOrEqual(1)
    }
  },
  drained: (report) => {
    expect(report["resources"]).toEqual([0, 1, 2].map((gpu_id) => ({ gpu_id, memory: 16, total: 16, jobs: 0 })))
    expect(report["reserved"]).toEqual({})
    expect(report["allocated"]).toEqual({})
  }
})

const run = (harness: Harness, batches: ReadonlyArray<ReadonlyArray<Op>>, adjust: (ms: number) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const { rm } = harness
    const stranger = new ListResourceManager({ resources: { gpu: ["x"] } })
    const foreign = yield* stranger.checkResources({ gpu: 1 })
    yield* stranger.allocateResources({}, foreign.token)
    // tokens issued so far; a few slots name a foreign or a never-issued token
    const tokens = yield* Ref.make<ReadonlyArray<string>>([foreign.token, "never-issued", ""])
    const allocations = new Map<string, Readonly<Record<string, unknown>>>()
    const freed = new Set<string>()
    let allocatedBefore = new Set<string>()
    const tokenAt = (t: number) => Effect.map(Ref.get(tokens), (ts) => ts[t % ts.length]!)

    const step = (op: Op): Effect.Effect<void> => {
      switch (op.op) {
        case "check": {
          const req = harness.requirement(op.a, op.b)
          return Effect.flatMap(rm.checkResources(req), ({ ok, token }) => {
            expect(ok ? token.length : token).toBe(ok ? 36 : "")
            return ok ? Ref.update(tokens, (ts) => [...ts, token]) : Effect.void
          })
        }
        case "cancel":
          return Effect.flatMap(tokenAt(op.t), (token) => rm.cancelResources({}, token))
        case "allocate":
          return Effect.flatMap(tokenAt(op.t), (token) =>
            rm.allocateResources({}, token).pipe(
              Effect.tap((allocation) => Effect.sync(() => allocations.set(token, allocation))),
              Effect.catchTag("ResourceTokenInvalid", (e) => Effect.sync(() => expect(e.token).toBe(token)))
            ))
        case "free":
          // frees with what the caller believes it holds, or with the foreign allocation: never trusted
          return Effect.flatMap(tokenAt(op.t), (token) =>
            Effect.tap(
              rm.freeResources(allocations.get(token) ?? { gpu: ["x"], gpus: { "0": 16 } }, token),
              () => Effect.sync(() => allocatedBefore.has(token) && freed.add(token))
            ))
        case "expire":
          return adjust(op.ms)
      }
    }

    for (const batch of batches) {
      allocatedBefore = new Set(allocations.keys())
      yield* Effect.all(batch.map((op) => Effect.zipRight(Effect.yieldNow(), step(op))), {
        concurrency: "unbounded",
        discard: true
      })
      const report = yield* rm.reportResources()
      harness.invariant(report)
      // a token freed after its allocation holds nothing any more, so it cannot free again
      for (const token of freed) {
        expect(token in (report["allocated"] as object) || token in (report["reserved"] as object)).toBe(false)
      }
    }

    // everything comes back: free every token twice, cancel every token, let the rest expire
    const all = yield* Ref.get(tokens)
    yield* Effect.forEach(all, (token) => rm.freeResources({}, token), { concurrency: "unbounded", discard: true })
    yield* Effect.forEach(all, (token) => rm.freeResources({}, token), { concurrency: "unbounded", discard: true })
    harness.invariant(yield* rm.reportResources())
    yield* Effect.forEach(all, (token) => rm.cancelResources({}, token), { discard: true })
    yield* adjust(EXPIRATION_MS)
    harness.drained(yield* rm.reportResources())
  })

const property = (make: () => Harness) =>
  fc.asyncProperty(batchesArb, (batches) => {
    const { adjust, clock } = manualClock()
    return Effect.runPromise(run(make(), batches, adjust).pipe(Effect.withClock(clock)))
  })

describe("resource managers under random concurrent interleavings", () => {
  it("ListResourceManager keeps pool + reserved + allocated = capacity, in order", async () => {
    await fc.assert(property(listHarness), { numRuns: 120 })
  })

  it("GpuResourceManager (shared) keeps free + held = total per GPU", async () => {
    await fc.assert(property(() => gpuHarness(false)), { numRuns: 120 })
  })

  it("GpuResourceManager (exclusive) also keeps one job per GPU", async () => {
    await fc.assert(property(() => gpuHarness(true)), { numRuns: 120 })
  })
})
