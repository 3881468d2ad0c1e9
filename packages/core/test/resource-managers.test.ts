import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, TestClock } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { ResourceTokenInvalid } from "../src/Errors.js"
import {
  adapt,
  GpuResourceManager,
  gpuIdsOf,
  InvalidResourceConfig,
  InvalidResourceRequirement,
  ListResourceManager,
  nvidiaSmiDiscovery,
  parseNvidiaSmi,
  PassthroughResourceManager,
  queryNvidiaSmi,
  visibleGpuIds
} from "../src/index.js"
import type { Allocation, ResourceManager, ResourceManagerLike } from "../src/index.js"

/** The defect an effect died with (fails the test if it did not die). */
const defectOf = <A, E>(self: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(self), (exit) => {
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isSuccess(exit)) throw new Error("expected a defect")
    return Option.getOrThrow(Cause.dieOption(exit.cause))
  })

/** Checks and allocates; fails the test if the check is refused. */
const take = (rm: ResourceManager, req: Record<string, unknown>) =>
  Effect.gen(function*() {
    const { ok, token } = yield* rm.checkResources(req)
    expect(ok).toBe(true)
    const allocation = yield* rm.allocateResources(req, token)
    return { token, allocation }
  })

const listPool = (rm: ListResourceManager) =>
  Effect.map(rm.reportResources(), (r) => r["resources"] as Record<string, ReadonlyArray<unknown>>)

type GpuRow = { gpu_id: number; memory: number; total: number; jobs: number }
const gpuPool = (rm: GpuResourceManager) =>
  Effect.map(rm.reportResources(), (r) => r["resources"] as ReadonlyArray<GpuRow>)
const freeMem = (rm: GpuResourceManager) => Effect.map(gpuPool(rm), (rows) => rows.map((g) => g.memory))

const gpus = (n: number, memoryMiB = 16 * 1024) => Array.from({ length: n }, (_, id) => ({ id, memoryMiB }))

describe("PassthroughResourceManager", () => {
  it.effect("check succeeds with a fresh UUID per call; allocate is {}, report is {}", () =>
    Effect.gen(function*() {
      const rm = new PassthroughResourceManager()
      const a = yield* rm.checkResources({ num_of_gpus: 4 })
      const b = yield* rm.checkResources({})
      expect(a.ok && b.ok).toBe(true)
      expect(a.token).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      expect(a.token).not.toBe(b.token)
      expect(yield* rm.allocateResources({}, a.token)).toEqual({})
      expect(yield* rm.allocateResources({}, "never-issued")).toEqual({})
      yield* rm.cancelResources({}, b.token)
      yield* rm.freeResources({}, a.token)
      expect(yield* rm.reportResources()).toEqual({})
    }))

  it.effect("a requirement that is not an object dies with InvalidResourceRequirement", () =>
    Effect.gen(function*() {
      const rm = new PassthroughResourceManager()
      for (const bad of ["gpu", ["gpu"], null, undefined, 3]) {
        const defect = yield* defectOf(rm.checkResources(bad as never))
        expect(defect).toBeInstanceOf(InvalidResourceRequirement)
        expect((defect as InvalidResourceRequirement)._tag).toBe("InvalidResourceRequirement")
      }
    }))
})

describe("ListResourceManager", () => {
  it.effect("takes units from the front of each pool", () =>
    Effect.gen(function*() {
      const rm = new ListResourceManager({ resources: { gpu: [1, 2, 3, 4], cpu: [1, 2, 3, 4] } })
      expect((yield* take(rm, { gpu: 1 })).allocation).toEqual({ gpu: [1] })
      expect((yield* take(rm, { gpu: 1, cpu: 3 })).allocation).toEqual({ gpu: [2], cpu: [1, 2, 3] })
      expect(yield* listPool(rm)).toEqual({ gpu: [3, 4], cpu: [4] })
    }))

  it.effect("sequential checks get units in order, whatever order they are allocated in", () =>
    Effect.gen(function*() {
      const rm = new ListResourceManager({ resources: { gpu: ["g0", "g1", "g2"] } })
      const a = yield* rm.checkResources({ gpu: 1 })
      const b = yield* rm.checkResources({ gpu: 1 })
      expect(yield* rm.allocateResources({ gpu: 1 }, b.token)).toEqual({ gpu: ["g1"] })
      expect(yield* rm.allocateResources({ gpu: 1 }, a.token)).toEqual({ gpu: ["g0"] })
    }))

  it.effect("an unknown kind or too few units is refused and reserves nothing", () =>
    Effect.gen(function*() {
      const rm = new ListResourceManager({ resources: { gpu: ["g0", "g1"] } })
      expect(yield* rm.checkResources({ tpu: 1 })).toEqual({ ok: false, token: "" })
      expect(yield* rm.checkResources({ tpu: 0 })).toEqual({ ok: false, token: "" })
      expect(yield* rm.checkResources({ gpu: 3 })).toEqual({ ok: false, token: "" })
      expect(yield* rm.checkResources({ gpu: 1, tpu: 1 })).toEqual({ ok: false, token: "" })
      expect(yield* listPool(rm)).toEqual({ gpu: ["g0", "g1"] })
      const empty = yield* take(rm, {})
      expect(empty.allocation).toEqual({})
      expect((yield* take(rm, { gpu: 0 })).allocation).toEqual({})
      expect(yield* listPool(rm)).toEqual({ gpu: ["g0", "g1"] })
    }))

  it.effect("counts must be non-negative integers: anything else dies with InvalidResourceRequirement", () =>
    Effect.gen(function*() {
      const rm = new ListResourceManager({ resources: { gpu: ["g0", "g1"] } })
      for (const count of [-1, 1.5, "1", Number.NaN, Infinity, null, true]) {
        const defect = yield* defectOf(rm.checkResources({ gpu: count }))
        expect(defect).toBeInstanceOf(InvalidResourceRequirement)
        expect((defect as InvalidResourceRequirement).message).toContain("'gpu'")
      }
      expect(yield* defectOf(rm.checkResources("gpu" as never))).toBeInstanceOf(InvalidResourceRequirement)
      expect(yield* listPool(rm)).toEqual({ gpu: ["g0", "g1"] })
    }))

  it.effect("cancel and free put units back at their original positions", () =>
    Effect.gen(function*() {
      const rm = new ListResourceManager({ resources: { gpu: ["g0", "g1", "g2", "g3", "g4"] } })
      const a = yield* take(rm, { gpu: 2 }) // g0 g1
      const b = yield* rm.checkResources({ gpu: 1 }) // g2
      const c = yield* take(rm, { gpu: 1 }) // g3
      expect(a.allocation).toEqual({ gpu: ["g0", "g1"] })
      expect(yield* listPool(rm)).toEqual({ gpu: ["g4"] })
      yield* rm.freeResources(c.allocation, c.token)
      expect(yield* listPool(rm)).toEqual({ gpu: ["g3", "g4"] })
      yield* rm.freeResources(a.allocation, a.token)
      expect(yield* listPool(rm)).toEqual({ gpu: ["g0", "g1", "g3", "g4"] })
      yield* rm.cancelResources({ gpu: 1 }, b.token)
      expect(yield* listPool(rm)).toEqual({ gpu: ["g0", "g1", "g2", "g3", "g4"] })
    }))

  it.effect("allocate with an unknown, empty, cancelled or already used token fails with ResourceTokenInvalid", () =>
    Effect.gen(function*() {
      const rm = new ListResourceManager({ resources: { gpu: ["g0", "g1"] } })
      for (const token of ["nope", ""]) {
        const error = yield* Effect.flip(rm.allocateResources({ gpu: 1 }, token))
        expect(error).toBeInstanceOf(ResourceTokenInvalid)
        expect(error.token).toBe(token)
      }
      const a = yield* take(rm, { gpu: 1 })
      expect(yield* Effect.flip(rm.allocateResources({ gpu: 1 }, a.token))).toBeInstanceOf(ResourceTokenInvalid)
      const b = yield* rm.checkResources({ gpu: 1 })
      yield* rm.cancelResources({ gpu: 1 }, b.token)
      expect(yield* Effect.flip(rm.allocateResources({ gpu: 1 }, b.token))).toBeInstanceOf(ResourceTokenInvalid)
    }))

  it.effect("a second free, a foreign token, a reserved token or forged resources change nothing", () =>
    Effect.gen(function*() {
      const rm = new ListResourceManager({ resources: { gpu: ["g0", "g1", "g2"] } })
      const other = new ListResourceManager({ resources: { gpu: ["g0", "g1", "g2"] } })
      const a = yield* take(rm, { gpu: 1 })
      const reserved = yield* rm.checkResources({ gpu: 1 })
      const foreign = yield* take(other, { gpu: 1 })
      yield* rm.freeResources(foreign.allocation, foreign.token)
      yield* rm.freeResources({ gpu: ["g1"] }, reserved.token)
      yield* rm.freeResources({ gpu: ["g0"] }, "never-issued")
      expect(yield* listPool(rm)).toEqual({ gpu: ["g2"] })
      yield* rm.freeResources({ gpu: ["x", "y"] }, a.token) // what was recorded returns, not the argument
      expect(yield* listPool(rm)).toEqual({ gpu: ["g0", "g2"] })
      yield* rm.freeResources(a.allocation, a.token)
      expect(yield* listPool(rm)).toEqual({ gpu: ["g0", "g2"] })
      // cancelling an allocated token does not return it either
      const c = yield* take(rm, { gpu: 1 })
      yield* rm.cancelResources({ gpu: 1 }, c.token)
      expect(yield* listPool(rm)).toEqual({ gpu: ["g2"] })
    }))

  it.effect("reservations expire after 30 s on the Clock and return their units", () =>
    Effect.gen(function*() {
      const rm = new ListResourceManager({ resources: { gpu: ["g0", "g1"] } })
      const a = yield* rm.checkResources({ gpu: 1 })
      const b = yield* rm.checkResources({ gpu: 1 })
      const report = yield* rm.reportResources()
      expect((report["reserved"] as Record<string, unknown>)[a.token]).toEqual({
        resources: { gpu: ["g0"] },
        expiresInMs: 30_000
      })
      yield* TestClock.adjust("29999 millis")
      expect(yield* rm.allocateResources({ gpu: 1 }, b.token)).toEqual({ gpu: ["g1"] })
      yield* TestClock.adjust("1 millis")
      expect(yield* listPool(rm)).toEqual({ gpu: ["g0"] })
      const error = yield* Effect.flip(rm.allocateResources({ gpu: 1 }, a.token))
      expect(error).toEqual(new ResourceTokenInvalid({ token: a.token }))
      // an allocation does not expire
      yield* TestClock.adjust("1 hour")
      const after = yield* rm.reportResources()
      expect(after["allocated"]).toEqual({ [b.token]: { gpu: ["g1"] } })
      yield* rm.freeResources({ gpu: ["g1"] }, b.token)
      expect(yield* listPool(rm)).toEqual({ gpu: ["g0", "g1"] })
    }))

  it.effect("expirationMs sets the lifetime", () =>
    Effect.gen(function*() {
      const rm = new ListResourceManager({ resources: { gpu: ["g0"] }, expirationMs: 500 })
      const a = yield* rm.checkResources({ gpu: 1 })
      expect(yield* rm.checkResources({ gpu: 1 })).toEqual({ ok: false, token: "" })
      yield* TestClock.adjust("500 millis")
      expect((yield* rm.checkResources({ gpu: 1 })).ok).toBe(true)
      expect(yield* Effect.flip(rm.allocateResources({}, a.token))).toBeInstanceOf(ResourceTokenInvalid)
    }))

  it("the constructor throws InvalidResourceConfig for options that cannot work", () => {
    expect(() => new ListResourceManager({ resources: { gpu: "g0" as never } })).toThrow(InvalidResourceConfig)
    expect(() => new ListResourceManager({ resources: null as never })).toThrow(InvalidResourceConfig)
    expect(() => new ListResourceManager({ resources: {}, expirationMs: 0 })).toThrow(InvalidResourceConfig)
    expect(() => new ListResourceManager({ resources: {}, expirationMs: -1 })).toThrow(/expirationMs/)
  })
})

describe("GpuResourceManager", () => {
  it.effect("shares GPUs by memory (NVFlare: 4×16, 1×8, 1×8, 1×12, 1×12 → {0:8}, {0:8}, {1:12}, {2:12})", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({ gpus: gpus(4), memPerGpuInGiB: 16 })
      const got: Array<Allocation> = []
      for (const mem of [8, 8, 12, 12]) {
        got.push((yield* take(rm, { num_of_gpus: 1, mem_per_gpu_in_GiB: mem })).allocation)
      }
      expect(got).toEqual([{ gpus: { "0": 8 } }, { gpus: { "0": 8 } }, { gpus: { "1": 12 } }, { gpus: { "2": 12 } }])
      expect(yield* freeMem(rm)).toEqual([0, 4, 4, 16])
      expect((yield* gpuPool(rm)).map((g) => g.jobs)).toEqual([2, 1, 1, 0])
    }))

  it.effect("a cancelled 1×8 returns, and 4×8 then gets every GPU", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({ gpus: gpus(4), memPerGpuInGiB: 16 })
      const a = yield* rm.checkResources({ num_of_gpus: 1, mem_per_gpu_in_GiB: 8 })
      yield* rm.cancelResources({}, a.token)
      const all = yield* take(rm, { num_of_gpus: 4, mem_per_gpu_in_GiB: 8 })
      expect(all.allocation).toEqual({ gpus: { "0": 8, "1": 8, "2": 8, "3": 8 } })
      expect(yield* take(rm, { num_of_gpus: 2, mem_per_gpu_in_GiB: 8 })).toEqual({
        token: expect.any(String),
        allocation: { gpus: { "0": 8, "1": 8 } }
      })
    }))

  it.effect("refuses what no GPU set can meet; a partial fit reserves nothing", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({ gpus: gpus(2), memPerGpuInGiB: 16 })
      expect(yield* rm.checkResources({ num_of_gpus: 3 })).toEqual({ ok: false, token: "" })
      expect(yield* rm.checkResources({ num_of_gpus: 1, mem_per_gpu_in_GiB: 17 })).toEqual({ ok: false, token: "" })
      yield* take(rm, { num_of_gpus: 2, mem_per_gpu_in_GiB: 10 })
      expect(yield* rm.checkResources({ num_of_gpus: 1, mem_per_gpu_in_GiB: 8 })).toEqual({ ok: false, token: "" })
      expect(yield* freeMem(rm)).toEqual([6, 6])
      expect((yield* take(rm, { num_of_gpus: 1, mem_per_gpu_in_GiB: 6 })).allocation).toEqual({ gpus: { "0": 6 } })
      expect(yield* freeMem(rm)).toEqual([0, 6])
    }))

  it.effect("an empty requirement or 0 GPUs is met with {} and leaves the pool alone", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({ gpus: gpus(1), memPerGpuInGiB: 16, exclusive: true })
      expect((yield* take(rm, {})).allocation).toEqual({})
      expect((yield* take(rm, { num_of_gpus: 0, mem_per_gpu_in_GiB: 8 })).allocation).toEqual({})
      expect((yield* take(rm, { memory: "2Gi", num_of_cpus: 2 })).allocation).toEqual({})
      expect(yield* gpuPool(rm)).toEqual([{ gpu_id: 0, memory: 16, total: 16, jobs: 0 }])
      expect((yield* rm.reportResources())["allocated"]).toEqual({})
      const none = new GpuResourceManager({ gpus: [], memPerGpuInGiB: 0 })
      expect((yield* take(none, { num_of_gpus: 0 })).allocation).toEqual({})
      expect(yield* none.checkResources({ num_of_gpus: 1 })).toEqual({ ok: false, token: "" })
    }))

  it.effect("exclusive: a GPU serves at most one job whatever the memory", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({ gpus: gpus(2), memPerGpuInGiB: 16, exclusive: true })
      const a = yield* take(rm, { num_of_gpus: 1, mem_per_gpu_in_GiB: 4 })
      const b = yield* rm.checkResources({ num_of_gpus: 1 })
      expect(a.allocation).toEqual({ gpus: { "0": 4 } })
      expect(yield* rm.allocateResources({}, b.token)).toEqual({ gpus: { "1": 0 } })
      expect(yield* rm.checkResources({ num_of_gpus: 1, mem_per_gpu_in_GiB: 1 })).toEqual({ ok: false, token: "" })
      yield* rm.freeResources(a.allocation, a.token)
      expect((yield* take(rm, { num_of_gpus: 1, mem_per_gpu_in_GiB: 12 })).allocation).toEqual({ gpus: { "0": 12 } })
      expect((yield* rm.reportResources())["exclusive"]).toBe(true)
      // the same load without exclusive shares GPU 0
      const shared = new GpuResourceManager({ gpus: gpus(2), memPerGpuInGiB: 16 })
      yield* take(shared, { num_of_gpus: 1, mem_per_gpu_in_GiB: 4 })
      expect((yield* take(shared, { num_of_gpus: 1, mem_per_gpu_in_GiB: 4 })).allocation).toEqual({ gpus: { "0": 4 } })
    }))

  it.effect("frees once per token and never above a GPU's total", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({ gpus: gpus(2), memPerGpuInGiB: 16 })
      const other = new GpuResourceManager({ gpus: gpus(2), memPerGpuInGiB: 16 })
      const a = yield* take(rm, { num_of_gpus: 2, mem_per_gpu_in_GiB: 10 })
      const foreign = yield* take(other, { num_of_gpus: 1, mem_per_gpu_in_GiB: 10 })
      yield* rm.freeResources(foreign.allocation, foreign.token)
      yield* rm.freeResources({ gpus: { "0": 100, "7": 5 } }, "never-issued")
      expect(yield* freeMem(rm)).toEqual([6, 6])
      yield* rm.freeResources({ gpus: { "0": 100 } }, a.token)
      expect(yield* freeMem(rm)).toEqual([16, 16])
      yield* rm.freeResources(a.allocation, a.token)
      expect(yield* gpuPool(rm)).toEqual([
        { gpu_id: 0, memory: 16, total: 16, jobs: 0 },
        { gpu_id: 1, memory: 16, total: 16, jobs: 0 }
      ])
    }))

  it.effect("fractional memory comes back to exactly the total", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({ gpus: gpus(1), memPerGpuInGiB: 1 })
      const held = []
      for (const mem of [0.1, 0.2, 0.7]) held.push(yield* take(rm, { num_of_gpus: 1, mem_per_gpu_in_GiB: mem }))
      expect(yield* rm.checkResources({ num_of_gpus: 1, mem_per_gpu_in_GiB: 0.01 })).toEqual({ ok: false, token: "" })
      for (const h of held) yield* rm.freeResources(h.allocation, h.token)
      expect(yield* freeMem(rm)).toEqual([1])
    }))

  it.effect("reservations expire on the Clock", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({ gpus: gpus(1), memPerGpuInGiB: 16, exclusive: true })
      const a = yield* rm.checkResources({ num_of_gpus: 1 })
      expect(yield* rm.checkResources({ num_of_gpus: 1 })).toEqual({ ok: false, token: "" })
      yield* TestClock.adjust("30 seconds")
      expect(yield* gpuPool(rm)).toEqual([{ gpu_id: 0, memory: 16, total: 16, jobs: 0 }])
      expect(yield* Effect.flip(rm.allocateResources({}, a.token))).toBeInstanceOf(ResourceTokenInvalid)
    }))

  it.effect("a requirement it cannot read dies with InvalidResourceRequirement", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({ gpus: gpus(2), memPerGpuInGiB: 16 })
      for (
        const bad of [
          { num_of_gpus: -1 },
          { num_of_gpus: 1.5 },
          { num_of_gpus: "1" },
          { num_of_gpus: 1, mem_per_gpu_in_GiB: -2 },
          { num_of_gpus: 1, mem_per_gpu_in_GiB: "8" }
        ]
      ) {
        expect(yield* defectOf(rm.checkResources(bad))).toBeInstanceOf(InvalidResourceRequirement)
      }
      expect(yield* defectOf(rm.checkResources([] as never))).toBeInstanceOf(InvalidResourceRequirement)
      expect(yield* freeMem(rm)).toEqual([16, 16])
    }))

  it.effect("ids are the managed GPUs' own, in the managed order; gpuIdsOf finds them", () =>
    Effect.gen(function*() {
      const rm = new GpuResourceManager({
        gpus: [{ id: 4, memoryMiB: 8192 }, { id: 2, memoryMiB: 8192 }, { id: 7, memoryMiB: 8192 }],
        numOfGpus: 2,
        memPerGpuInGiB: 8
      })
      expect(rm.gpuIds).toEqual([4, 2])
      const a = yield* take(rm, { num_of_gpus: 2, mem_per_gpu_in_GiB: 1 })
      expect(a.allocation).toEqual({ gpus: { "4": 1, "2": 1 } })
      expect([...gpuIdsOf(a.allocation)].sort()).toEqual(["2", "4"])
      expect(yield* rm.checkResources({ num_of_gpus: 3 })).toEqual({ ok: false, token: "" })
    }))

  it("the constructor validates its options (NVFlare's checks, typed)", () => {
    expect(() => new GpuResourceManager({ gpus: gpus(2), numOfGpus: 3, memPerGpuInGiB: 8 })).toThrow(
      "num_of_gpus specified (3) exceeds available GPUs: 2."
    )
    expect(() => new GpuResourceManager({ gpus: gpus(2, 8192), memPerGpuInGiB: 9 })).toThrow(/GPU ID 0/)
    expect(() => new GpuResourceManager({ gpus: [{ id: 0 }], memPerGpuInGiB: 9 })).toThrow(/determine GPU memory/)
    expect(() => new GpuResourceManager({ gpus: [{ id: 0 }, { id: 0 }], memPerGpuInGiB: 0 })).toThrow(/twice/)
    expect(() => new GpuResourceManager({ gpus: gpus(1), memPerGpuInGiB: -1 })).toThrow(InvalidResourceConfig)
    expect(() => new GpuResourceManager({ gpus: gpus(1), numOfGpus: 0.5, memPerGpuInGiB: 1 })).toThrow(
      InvalidResourceConfig
    )
    expect(() => new GpuResourceManager({ gpus: gpus(1), memPerGpuInGiB: 1, expirationMs: 0 })).toThrow(
      InvalidResourceConfig
    )
    // no list: GPUs 0..n-1, no memory check (NVFlare's ignore_host)
    expect(new GpuResourceManager({ numOfGpus: 3, memPerGpuInGiB: 80 }).gpuIds).toEqual([0, 1, 2])
  })

  it.effect("make runs the injected discovery and fails typed", () =>
    Effect.gen(function*() {
      const discovery = Effect.succeed([{ id: 0, memoryMiB: 16384 }, { id: 1, memoryMiB: 8192 }])
      const rm = yield* GpuResourceManager.make({ discovery, memPerGpuInGiB: 8 })
      expect(rm.gpuIds).toEqual([0, 1])
      const one = yield* GpuResourceManager.make({ discovery, numOfGpus: 1, memPerGpuInGiB: 16, exclusive: true })
      expect(one.gpuIds).toEqual([0])
      expect(one.exclusive).toBe(true)
      const tooMany = yield* Effect.flip(GpuResourceManager.make({ discovery, numOfGpus: 3, memPerGpuInGiB: 8 }))
      expect(tooMany).toBeInstanceOf(InvalidResourceConfig)
      expect(tooMany.message).toContain("num_of_gpus specified (3) exceeds available GPUs: 2.")
      const tooBig = yield* Effect.flip(GpuResourceManager.make({ discovery, memPerGpuInGiB: 12 }))
      expect(tooBig._tag).toBe("InvalidResourceConfig")
      expect(tooBig.message).toContain("GPU ID 1 (8192 MiB)")
    }))
})

describe("GPU discovery", () => {
  it("CUDA_VISIBLE_DEVICES follows NVFlare's rules", () => {
    const host = [0, 1, 2, 3, 4]
    const table: ReadonlyArray<readonly [string | undefined, ReadonlyArray<number>]> = [
      [undefined, [0, 1, 2, 3, 4]],
      ["", []],
      ["   ", []],
      ["4", [4]],
      ["2,0", [2, 0]],
      [" 1 , 3 ", [1, 3]],
      ["0,2,-1,1", [0, 2]],
      ["1,1,0,1", [1, 0]],
      ["2,,3", [2]],
      ["3,", [3]],
      [",3", []],
      ["9", []],
      ["1,9,2", [1]],
      ["GPU-8a5e0c9e-4b1f-4c3d-9a7e-1c2d3e4f5a6b", [0, 1, 2, 3, 4]],
      ["0,MIG-GPU-abc/1/0", [0, 1, 2, 3, 4]],
      ["1,x", [0, 1, 2, 3, 4]],
      ["1.5", [0, 1, 2, 3, 4]]
    ]
    for (const [cvd, expected] of table) {
      expect([cvd, visibleGpuIds(cvd, host)]).toEqual([cvd, expected])
    }
    expect(visibleGpuIds(undefined, [])).toEqual([])
  })

  it("parses nvidia-smi's csv", () => {
    expect(parseNvidiaSmi("0, 16384\n1, 8192\r\n2, [N/A]\n\nNo devices were found\n")).toEqual([
      { id: 0, memoryMiB: 16384 },
      { id: 1, memoryMiB: 8192 },
      { id: 2, memoryMiB: undefined }
    ])
  })

  describe("running a real nvidia-smi stand-in", () => {
    let dir = ""
    const script = (name: string, body: string) => {
      const file = path.join(dir, name)
      fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
      return file
    }
    beforeAll(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-nvsmi-"))
    })
    afterAll(() => {
      fs.rmSync(dir, { recursive: true, force: true })
    })

    it.live("queries index and memory, filters by CUDA_VISIBLE_DEVICES, and passes the documented arguments", () =>
      Effect.gen(function*() {
        const argsFile = path.join(dir, "args.txt")
        const command = script("nvidia-smi", `echo "$@" > '${argsFile}'\nprintf '0, 16384\\n1, 24576\\n2, 16384\\n'`)
        expect(yield* queryNvidiaSmi({ command })).toEqual([
          { id: 0, memoryMiB: 16384 },
          { id: 1, memoryMiB: 24576 },
          { id: 2, memoryMiB: 16384 }
        ])
        expect(fs.readFileSync(argsFile, "utf8").trim()).toBe(
          "--query-gpu=index,memory.total --format=csv,noheader,nounits"
        )
        const visible = yield* nvidiaSmiDiscovery({ command, env: { CUDA_VISIBLE_DEVICES: "2,1" } })
        expect(visible.map((g) => g.id)).toEqual([2, 1])
        expect(yield* nvidiaSmiDiscovery({ command, env: {} })).toHaveLength(3)
        expect(yield* nvidiaSmiDiscovery({ command, env: { CUDA_VISIBLE_DEVICES: "" } })).toEqual([])
        const rm = yield* GpuResourceManager.make({
          discovery: nvidiaSmiDiscovery({ command, env: { CUDA_VISIBLE_DEVICES: "1" } }),
          memPerGpuInGiB: 24
        })
        expect(rm.gpuIds).toEqual([1])
      }))

    it.live("a missing nvidia-smi means no GPUs, and make then refuses GPUs", () =>
      Effect.gen(function*() {
        const command = path.join(dir, "does-not-exist", "nvidia-smi")
        expect(yield* queryNvidiaSmi({ command })).toEqual([])
        const error = yield* Effect.flip(
          GpuResourceManager.make({ discovery: nvidiaSmiDiscovery({ command }), numOfGpus: 1, memPerGpuInGiB: 8 })
        )
        expect(error.message).toContain("exceeds available GPUs: 0.")
        const none = yield* GpuResourceManager.make({ discovery: nvidiaSmiDiscovery({ command }), memPerGpuInGiB: 8 })
        expect(none.gpuIds).toEqual([])
      }))

    it.live("a failing nvidia-smi means no GPUs", () =>
      Effect.gen(function*() {
        const command = script("failing-smi", "echo '0, 16384'\nexit 9")
        expect(yield* queryNvidiaSmi({ command })).toEqual([])
      }))

    it.live("a hanging nvidia-smi times out, answers no GPUs, and is killed", () =>
      Effect.gen(function*() {
        const pidFile = path.join(dir, "hang.pid")
        const command = script("hanging-smi", `echo $$ > '${pidFile}'\nexec sleep 30`)
        expect(yield* queryNvidiaSmi({ command, timeout: "300 millis" })).toEqual([])
        const pid = Number(fs.readFileSync(pidFile, "utf8").trim())
        expect(pid).toBeGreaterThan(0)
        const alive = () => {
          try {
            process.kill(pid, 0)
            return true
          } catch {
            return false
          }
        }
        const deadline = Date.now() + 5_000
        while (alive() && Date.now() < deadline) yield* Effect.sleep("20 millis")
        expect(alive()).toBe(false)
      }))
  })
})

describe("adapt", () => {
  it.effect("adapts a Promise-returning manager", () =>
    Effect.gen(function*() {
      const calls: Array<string> = []
      const like: ResourceManagerLike = {
        checkResources: async (req) => ({ ok: Object.keys(req).length > 0, token: "p1" }),
        cancelResources: async (_req, token) => void calls.push(`cancel ${token}`),
        allocateResources: async (_req, token) => {
          if (token !== "p1") throw new Error("no such token")
          return { gpu: [0] }
        },
        freeResources: async (resources, token) => void calls.push(`free ${token} ${JSON.stringify(resources)}`),
        reportResources: async () => ({ free: 1 })
      }
      const rm = adapt(like)
      expect(yield* rm.checkResources({ gpu: 1 })).toEqual({ ok: true, token: "p1" })
      expect(yield* rm.allocateResources({ gpu: 1 }, "p1")).toEqual({ gpu: [0] })
      const error = yield* Effect.flip(rm.allocateResources({ gpu: 1 }, "zz"))
      expect(error).toBeInstanceOf(ResourceTokenInvalid)
      expect(error.token).toContain("no such token")
      yield* rm.cancelResources({}, "p1")
      yield* rm.freeResources({ gpu: [0] }, "p1")
      expect(calls).toEqual(["cancel p1", "free p1 {\"gpu\":[0]}"])
      expect(yield* rm.reportResources()).toEqual({ free: 1 })
    }))

  it.effect("adapts a plain-value manager, accepting a tuple [ok, token] check result", () =>
    Effect.gen(function*() {
      const like: ResourceManagerLike = {
        checkResources: () => [true, "t1"] as const,
        cancelResources: () => undefined,
        allocateResources: () => null,
        freeResources: () => undefined
      }
      const rm = adapt(like)
      expect(yield* rm.checkResources({})).toEqual({ ok: true, token: "t1" })
      expect(yield* rm.allocateResources({}, "t1")).toEqual({})
      expect(yield* rm.reportResources()).toEqual({})
      const refusing = adapt({ ...like, checkResources: () => [false, ""] as const })
      expect(yield* refusing.checkResources({})).toEqual({ ok: false, token: "" })
      const throwing = adapt({
        ...like,
        allocateResources: () => {
          throw new Error("expired")
        }
      })
      expect(yield* Effect.flip(throwing.allocateResources({}, "t1"))).toBeInstanceOf(ResourceTokenInvalid)
    }))

  it.effect("adapts the Effect managers without changing what they do", () =>
    Effect.gen(function*() {
      const rm = adapt(new ListResourceManager({ resources: { gpu: [0, 1] } }))
      const a = yield* take(rm, { gpu: 1 })
      expect(a.allocation).toEqual({ gpu: [0] })
      const error = yield* Effect.flip(rm.allocateResources({ gpu: 1 }, a.token))
      expect(error).toEqual(new ResourceTokenInvalid({ token: a.token }))
      yield* rm.freeResources(a.allocation, a.token)
      yield* rm.freeResources(a.allocation, a.token)
      expect((yield* rm.reportResources())["resources"]).toEqual({ gpu: [0, 1] })
    }))
})

describe("gpuIdsOf", () => {
  it.effect("finds the ids of every allocation shape", () =>
    Effect.gen(function*() {
      expect(gpuIdsOf({})).toEqual([])
      expect(gpuIdsOf({ gpu: [0, 1] })).toEqual(["0", "1"])
      expect(gpuIdsOf({ gpus: [3] })).toEqual(["3"])
      expect(gpuIdsOf({ gpus: { "0": 8, "2": 12 } })).toEqual(["0", "2"])
      expect(gpuIdsOf({ gpu: ["1"], gpus: { "1": 4, "3": 4 } })).toEqual(["1", "3"])
      expect(gpuIdsOf({ cpu: [0, 1] })).toEqual([])
      const list = new ListResourceManager({ resources: { gpu: [2, 3], cpu: [0] } })
      expect(gpuIdsOf((yield* take(list, { gpu: 2, cpu: 1 })).allocation)).toEqual(["2", "3"])
      const gpu = new GpuResourceManager({ gpus: gpus(3), memPerGpuInGiB: 16 })
      expect(gpuIdsOf((yield* take(gpu, { num_of_gpus: 2, mem_per_gpu_in_GiB: 16 })).allocation)).toEqual(["0", "1"])
      expect(gpuIdsOf((yield* take(gpu, { num_of_gpus: 0 })).allocation)).toEqual([])
      expect(gpuIdsOf((yield* take(new PassthroughResourceManager(), {})).allocation)).toEqual([])
    }))
})
