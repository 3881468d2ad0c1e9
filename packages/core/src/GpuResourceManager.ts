/**
 * `GpuResourceManager`: per-GPU memory accounting as NVFlare's
 * `GPUResourceManager` does it, and an `exclusive` mode.
 *
 * Each managed GPU starts with `memPerGpuInGiB` GiB (the configured value, not
 * what the card reports). A requirement `{ num_of_gpus: n, mem_per_gpu_in_GiB: m }`
 * is met when `n` GPUs each have `m` GiB left; the GPUs are walked in the
 * managed order and `m` is taken from each of the first `n` that fit, so GPUs
 * are shared by memory (with 4×16 GiB, 1×8, 1×8, 1×12, 1×12 get
 * `{0:8}`, `{0:8}`, `{1:12}`, `{2:12}`). With `exclusive: true` a GPU serves at
 * most one reservation or allocation at a time, whatever the memory. Freeing
 * returns exactly what the token holds, once, and never raises a GPU above its
 * total. Allocations have the shape `{ gpus: { "<id>": memGiB } }`.
 *
 * GPUs come from an explicit list (`new GpuResourceManager({ gpus })`) or from
 * discovery (`GpuResourceManager.make`), by default `nvidia-smi` filtered by
 * the parent's `CUDA_VISIBLE_DEVICES` with NVFlare's rules.
 *
 * Reservations expire after `expirationMs` (default 30 s) on the Effect
 * `Clock`, checked lazily on every call (no background fiber).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { InvalidResourceConfig, InvalidResourceRequirement } from "./Errors.js"
import type { GpuInfo } from "./GpuDiscovery.js"
import { nvidiaSmiDiscovery } from "./GpuDiscovery.js"
import { BookedResourceManager, bookedManager, expirationOf, makeBook, requireRecord } from "./internal/reservations.js"
import type { Allocation, ResourceRequirement } from "./ResourceManager.js"

const NAME = "GpuResourceManager"

/** The requirement key of the GPU count (NVFlare's). */
export const NUM_OF_GPUS_KEY = "num_of_gpus"
/** The requirement key of the memory per GPU, in GiB (NVFlare's). */
export const MEM_PER_GPU_KEY = "mem_per_gpu_in_GiB"

/** Options shared by the constructor and `make`. */
export interface GpuResourceManagerBaseOptions {
  /** How many GPUs to manage: the first `numOfGpus` of the available ones. Default: all of them. */
  readonly numOfGpus?: number
  /** The memory each managed GPU offers, in GiB (it must fit the GPU's total). */
  readonly memPerGpuInGiB: number
  /** When `true`, a GPU serves at most one job at a time whatever the memory. Default `false`. */
  readonly exclusive?: boolean
  /** How long an unallocated reservation lives, in milliseconds of the Effect `Clock`; default 30 000. */
  readonly expirationMs?: number
}

/** Options of `new GpuResourceManager(...)`. */
export interface GpuResourceManagerOptions extends GpuResourceManagerBaseOptions {
  /**
   * The available GPUs, in the order to hand them out. Absent: GPUs `0..numOfGpus-1`
   * with no memory check (NVFlare's `ignore_host`).
   */
  readonly gpus?: ReadonlyArray<GpuInfo>
}

/** Options of `GpuResourceManager.make(...)`. */
export interface GpuResourceManagerMakeOptions extends GpuResourceManagerBaseOptions {
  /** Finds the available GPUs. Default: `nvidiaSmiDiscovery()`. */
  readonly discovery?: Effect.Effect<ReadonlyArray<GpuInfo>>
}

/** A managed GPU: total and free GiB, and how many reservations/allocations use it. */
interface Slot {
  readonly id: number
  readonly total: number
  readonly free: number
  readonly jobs: number
}
/** A validated requirement. */
interface Request {
  readonly num: number
  readonly mem: number
}
/** Held memory: (slot index, GiB) pairs. */
type Units = ReadonlyArray<readonly [slot: number, mem: number]>

// Memory may be fractional; compare with a tolerance so float sums do not refuse an exact fit.
const EPSILON = 1e-9

function fail(reason: string): never {
  throw new InvalidResourceConfig({ manager: NAME, reason })
}

const isCount = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0
const isAmount = (u: unknown): u is number => typeof u === "number" && Number.isFinite(u) && u >= 0

/** Reads a requirement: `num_of_gpus` (a count) and `mem_per_gpu_in_GiB` (an amount), both 0 when absent. */
const parse = (requirement: ResourceRequirement): Effect.Effect<Request> =>
  Effect.flatMap(requireRecord(NAME, requirement), (record) => {
    const num = record[NUM_OF_GPUS_KEY] ?? 0
    const mem = record[MEM_PER_GPU_KEY] ?? 0
    if (!isCount(num)) {
      return Effect.die(
        new InvalidResourceRequirement({
          manager: NAME,
          reason: `${NUM_OF_GPUS_KEY} must be a non-negative integer, got ${JSON.stringify(num) ?? String(num)}`
        })
      )
    }
    if (!isAmount(mem)) {
      return Effect.die(
        new InvalidResourceRequirement({
          manager: NAME,
          reason: `${MEM_PER_GPU_KEY} must be a non-negative number, got ${JSON.stringify(mem) ?? String(mem)}`
        })
      )
    }
    return Effect.succeed({ num, mem })
  })

/** Validates the options and answers the managed GPUs, or throws `InvalidResourceConfig`. */
const managedGpus = (options: GpuResourceManagerOptions): ReadonlyArray<number> => {
  if (!isAmount(options?.memPerGpuInGiB)) {
    fail(`memPerGpuInGiB must be a non-negative number, got ${String(options?.memPerGpuInGiB)}`)
  }
  if (options.numOfGpus !== undefined && !isCount(options.numOfGpus)) {
    fail(`numOfGpus must be a non-negative integer, got ${String(options.numOfGpus)}`)
  }
  if (options.exclusive !== undefined && typeof options.exclusive !== "boolean") {
    fail(`exclusive must be a boolean, got ${String(options.exclusive)}`)
  }
  if (options.gpus === undefined) return Array.from({ length: options.numOfGpus ?? 0 }, (_, i) => i)
  if (!Array.isArray(options.gpus)) fail("gpus must be an array of { id, memoryMiB }")
  const seen = new Set<number>()
  for (const gpu of options.gpus) {
    if (!isCount(gpu?.id)) fail(`a GPU id must be a non-negative integer, got ${String(gpu?.id)}`)
    if (seen.has(gpu.id)) fail(`GPU ID ${gpu.id} is listed twice`)
    seen.add(gpu.id)
    if (gpu.memoryMiB !== undefined && !isAmount(gpu.memoryMiB)) {
      fail(`the memory of GPU ID ${gpu.id} must be a non-negative number of MiB, got ${String(gpu.memoryMiB)}`)
    }
  }
  const num = options.numOfGpus ?? options.gpus.length
  if (num > options.gpus.length) {
    fail(`num_of_gpus specified (${num}) exceeds available GPUs: ${options.gpus.length}.`)
  }
  const chosen = options.gpus.slice(0, num)
  const needMiB = options.memPerGpuInGiB * 1024
  for (const gpu of chosen) {
    if (gpu.memoryMiB === undefined) {
      if (needMiB > 0) fail(`failed to determine GPU memory for GPU ID ${gpu.id}`)
    } else if (needMiB > gpu.memoryMiB) {
      fail(
        `mem_per_gpu_in_GiB (${options.memPerGpuInGiB} GiB = ${needMiB} MiB) exceeds the memory of GPU ID ${gpu.id} (${gpu.memoryMiB} MiB)`
      )
    }
  }
  return chosen.map((g) => g.id)
}

/**
 * A `ResourceManager` that accounts GPU memory per GPU. Requirements:
 * `num_of_gpus` (a non-negative integer; absent means 0) and
 * `mem_per_gpu_in_GiB` (a non-negative number; absent means 0); other keys
 * are for other parties (the backend) and are ignored. An empty requirement or
 * 0 GPUs is met with an empty allocation `{}`. A value of the wrong type dies
 * with `InvalidResourceRequirement`. The constructor throws
 * `InvalidResourceConfig` for options that cannot work; `make` runs discovery
 * and fails with it instead.
 *
 * `checkResources` reserves `mem_per_gpu_in_GiB` on each of the first
 * `num_of_gpus` GPUs that have that much left (and, when exclusive, no job);
 * 0 GPUs or an empty requirement is ok, reserving nothing. Allocations have the
 * shape `{ gpus: { "<id>": GiB } }` (`{}` for 0 GPUs); `freeResources` never
 * raises a GPU above its total. `reportResources` answers `{ exclusive,
 * resources: [{ gpu_id, memory, total, jobs }], reserved, allocated }` (memory
 * in GiB).
 */
export class GpuResourceManager extends BookedResourceManager {
  /** Whether a GPU serves at most one job at a time. */
  readonly exclusive: boolean
  /** The managed GPU ids, in the order they are handed out. */
  readonly gpuIds: ReadonlyArray<number>

  /**
   * Discovers the GPUs (default: `nvidiaSmiDiscovery()`), then builds the
   * manager over the first `numOfGpus` of them (default: all). Fails with
   * `InvalidResourceConfig` when `numOfGpus` exceeds the GPUs found, when
   * `memPerGpuInGiB` exceeds a chosen GPU's memory, or for invalid options.
   */
  static make(options: GpuResourceManagerMakeOptions): Effect.Effect<GpuResourceManager, InvalidResourceConfig> {
    const { discovery, ...rest } = options
    return Effect.flatMap(discovery ?? nvidiaSmiDiscovery(), (gpus) =>
      Effect.try({
        try: () => new GpuResourceManager({ ...rest, gpus }),
        catch: (e) =>
          e instanceof InvalidResourceConfig ? e : new InvalidResourceConfig({ manager: NAME, reason: String(e) })
      }))
  }

  /** Builds the manager over an explicit GPU list (or `0..numOfGpus-1`); throws `InvalidResourceConfig`. */
  constructor(options: GpuResourceManagerOptions) {
    const expirationMs = expirationOf(NAME, options?.expirationMs)
    const gpuIds = Object.freeze(managedGpus(options))
    const exclusive = options.exclusive ?? false
    const total = options.memPerGpuInGiB
    const book = makeBook<Request, ReadonlyArray<Slot>, Units>(
      {
        take: (pool, { mem, num }) => {
          if (num === 0) return [[], pool]
          const held: Array<readonly [number, number]> = []
          for (let i = 0; i < pool.length && held.length < num; i++) {
            const slot = pool[i]!
            if ((!exclusive || slot.jobs === 0) && slot.free + EPSILON >= mem) held.push([i, mem])
          }
          if (held.length < num) return undefined
          const next = [...pool]
          for (const [i, m] of held) {
            const slot = next[i]!
            next[i] = { ...slot, free: Math.max(0, slot.free - m), jobs: slot.jobs + 1 }
          }
          return [held, next]
        },
        give: (pool, units) => {
          const next = [...pool]
          for (const [i, m] of units) {
            const slot = next[i]!
            const jobs = Math.max(0, slot.jobs - 1)
            // Never above the total; back to exactly the total once nobody uses the GPU.
            next[i] = { ...slot, jobs, free: jobs === 0 ? slot.total : Math.min(slot.total, slot.free + m) }
          }
          return next
        },
        isEmpty: (units) => units.length === 0
      },
      gpuIds.map((id): Slot => ({ id, total, free: total, jobs: 0 })),
      expirationMs
    )
    super(bookedManager(book, {
      parse,
      render: (units): Allocation =>
        units.length === 0 ? {} : { gpus: Object.fromEntries(units.map(([i, mem]) => [String(gpuIds[i]), mem])) },
      renderPool: (pool) => pool.map((s) => ({ gpu_id: s.id, memory: s.free, total: s.total, jobs: s.jobs })),
      reportHead: { exclusive }
    }))
    this.gpuIds = gpuIds
    this.exclusive = exclusive
  }
}
