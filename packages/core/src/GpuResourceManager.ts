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
import { Duration, Effect } from "effect"
import { spawn } from "node:child_process"
import type { ResourceTokenInvalid } from "./Errors.js"
import {
  expirationOf,
  InvalidResourceConfig,
  InvalidResourceRequirement,
  makeBook,
  reportOf,
  requireRecord
} from "./internal/reservations.js"
import type { Book } from "./internal/reservations.js"
import type { Allocation, CheckResult, ResourceManager, ResourceRequirement } from "./ResourceManager.js"

const NAME = "GpuResourceManager"

/** The requirement key of the GPU count (NVFlare's). */
export const NUM_OF_GPUS_KEY = "num_of_gpus"
/** The requirement key of the memory per GPU, in GiB (NVFlare's). */
export const MEM_PER_GPU_KEY = "mem_per_gpu_in_GiB"

/** A host GPU: its index (as `nvidia-smi` and `CUDA_VISIBLE_DEVICES` number it) and total memory. */
export interface GpuInfo {
  readonly id: number
  /** Total memory in MiB; `undefined` when it could not be determined. */
  readonly memoryMiB?: number | undefined
}

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

/** Options of the default discovery. */
export interface NvidiaSmiOptions {
  /** The executable to run. Default `"nvidia-smi"` (looked up on `PATH`). */
  readonly command?: string
  /** Where `CUDA_VISIBLE_DEVICES` is read from. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** How long `nvidia-smi` may run. Default 10 s. */
  readonly timeout?: Duration.DurationInput
}

/** The `nvidia-smi` arguments of the default discovery. */
export const NVIDIA_SMI_ARGS: ReadonlyArray<string> = [
  "--query-gpu=index,memory.total",
  "--format=csv,noheader,nounits"
]

const MAX_OUTPUT = 1 << 20

/**
 * Parses `nvidia-smi --query-gpu=index,memory.total --format=csv,noheader,nounits`
 * output: one `index, MiB` line per GPU. Lines without an integer index are
 * skipped; an unreadable memory (e.g. `[N/A]`) gives `memoryMiB: undefined`.
 */
export const parseNvidiaSmi = (output: string): ReadonlyArray<GpuInfo> => {
  const gpus: Array<GpuInfo> = []
  for (const line of output.split(/\r?\n/)) {
    const [index, memory] = line.split(",").map((s) => s.trim())
    if (index === undefined || !/^\d+$/.test(index)) continue
    const mib = memory !== undefined && /^\d+(\.\d+)?$/.test(memory) ? Number(memory) : undefined
    gpus.push({ id: Number(index), memoryMiB: mib })
  }
  return gpus
}

/**
 * The host GPU ids a process may use under `CUDA_VISIBLE_DEVICES`, with
 * NVFlare's rules: unset → all host ids; empty or blank → none; otherwise the
 * comma list is read left to right, stopping at the first empty item or id the
 * host does not have (`"0,2,-1,1"` → `[0, 2]`), dropping duplicates; any item
 * that is not an integer (a GPU UUID or MIG id) → all host ids.
 */
export const visibleGpuIds = (
  cudaVisibleDevices: string | undefined,
  hostIds: ReadonlyArray<number>
): ReadonlyArray<number> => {
  if (cudaVisibleDevices === undefined) return [...hostIds]
  if (cudaVisibleDevices.trim() === "") return []
  const items = cudaVisibleDevices.split(",").map((s) => s.trim())
  if (items.some((item) => item !== "" && !/^[+-]?\d+$/.test(item))) return [...hostIds]
  const ids: Array<number> = []
  for (const item of items) {
    if (item === "") break
    const id = Number(item)
    if (!hostIds.includes(id)) break
    if (!ids.includes(id)) ids.push(id)
  }
  return ids
}

/**
 * Runs `nvidia-smi` and answers the host's GPUs. A missing `nvidia-smi`
 * answers `[]`; a failure, an exit code other than 0 or a timeout answers `[]`
 * with a warning in the Effect log. The process lives in a scope: it is
 * killed if the wait is interrupted or times out.
 */
export const queryNvidiaSmi = (options?: NvidiaSmiOptions): Effect.Effect<ReadonlyArray<GpuInfo>> => {
  const command = options?.command ?? "nvidia-smi"
  const timeout = options?.timeout ?? Duration.seconds(10)
  type Done = { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stdout: string }
  return Effect.acquireRelease(
    Effect.try({
      try: () => spawn(command, NVIDIA_SMI_ARGS, { stdio: ["ignore", "pipe", "ignore"], windowsHide: true }),
      catch: (e) => (e instanceof Error ? e : new Error(String(e))) as NodeJS.ErrnoException
    }),
    (child) =>
      Effect.sync(() => {
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      })
  ).pipe(
    Effect.flatMap((child) =>
      Effect.async<Done, NodeJS.ErrnoException>((resume) => {
        let stdout = ""
        let settled = false
        child.stdout!.setEncoding("utf8")
        child.stdout!.on("data", (chunk: string) => {
          if (stdout.length < MAX_OUTPUT) stdout += chunk
        })
        child.once("error", (error) => {
          if (settled) return
          settled = true
          resume(Effect.fail(error))
        })
        child.once("close", (code, signal) => {
          if (settled) return
          settled = true
          resume(Effect.succeed({ code, signal, stdout }))
        })
      })
    ),
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => Object.assign(new Error(`${command} timed out after ${Duration.format(timeout)}`), { code: "ETIMEDOUT" })
    }),
    Effect.scoped,
    Effect.flatMap((done) =>
      done.code === 0
        ? Effect.succeed(parseNvidiaSmi(done.stdout))
        : Effect.as(
          Effect.logWarning(`${command} exited with ${done.code ?? done.signal}: assuming no GPUs`),
          [] as ReadonlyArray<GpuInfo>
        )
    ),
    Effect.catchAll((error) =>
      error.code === "ENOENT"
        ? Effect.as(Effect.logDebug(`${command} not found: no GPUs`), [] as ReadonlyArray<GpuInfo>)
        : Effect.as(Effect.logWarning(`${command} failed: ${error.message}: assuming no GPUs`), [] as ReadonlyArray<GpuInfo>)
    )
  )
}

/**
 * The default GPU discovery: the host's GPUs from `nvidia-smi`, kept and
 * ordered as `CUDA_VISIBLE_DEVICES` says (see `visibleGpuIds`).
 */
export const nvidiaSmiDiscovery = (options?: NvidiaSmiOptions): Effect.Effect<ReadonlyArray<GpuInfo>> =>
  Effect.map(queryNvidiaSmi(options), (host) => {
    const byId = new Map(host.map((g) => [g.id, g]))
    const env = options?.env ?? process.env
    return visibleGpuIds(env["CUDA_VISIBLE_DEVICES"], [...byId.keys()]).map((id) => byId.get(id)!)
  })

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
 */
export class GpuResourceManager implements ResourceManager {
  /** Whether a GPU serves at most one job at a time. */
  readonly exclusive: boolean
  /** The managed GPU ids, in the order they are handed out. */
  readonly gpuIds: ReadonlyArray<number>
  readonly #book: Book<Request, ReadonlyArray<Slot>, Units>

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
    this.gpuIds = Object.freeze(managedGpus(options))
    this.exclusive = options.exclusive ?? false
    const exclusive = this.exclusive
    const total = options.memPerGpuInGiB
    this.#book = makeBook<Request, ReadonlyArray<Slot>, Units>(
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
      this.gpuIds.map((id): Slot => ({ id, total, free: total, jobs: 0 })),
      expirationMs
    )
  }

  #render(units: Units): Allocation {
    if (units.length === 0) return {}
    return { gpus: Object.fromEntries(units.map(([i, mem]) => [String(this.gpuIds[i]), mem])) }
  }

  #parse(requirement: ResourceRequirement): Effect.Effect<Request> {
    return Effect.flatMap(requireRecord(NAME, requirement), (record) => {
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
  }

  /**
   * Reserves `mem_per_gpu_in_GiB` on each of the first `num_of_gpus` GPUs that
   * have that much left (and, when exclusive, no job) and answers
   * `{ ok: true, token }`; answers `{ ok: false, token: "" }` when too few
   * GPUs fit. 0 GPUs or an empty requirement: ok, reserving nothing. Dies with
   * `InvalidResourceRequirement` for a requirement it cannot read.
   */
  readonly checkResources = (requirement: ResourceRequirement): Effect.Effect<CheckResult> =>
    Effect.flatMap(this.#parse(requirement), this.#book.check)

  /** Returns the token's reservation to its GPUs; an unknown, expired or allocated token changes nothing. */
  readonly cancelResources = (_requirement: ResourceRequirement, token: string): Effect.Effect<void> =>
    this.#book.cancel(token)

  /**
   * Turns the token's reservation into an allocation `{ gpus: { "<id>": GiB } }`
   * (`{}` for 0 GPUs); the requirement is not consulted. An unknown or expired
   * token fails with `ResourceTokenInvalid`.
   */
  readonly allocateResources = (
    _requirement: ResourceRequirement,
    token: string
  ): Effect.Effect<Allocation, ResourceTokenInvalid> => Effect.map(this.#book.allocate(token), (u) => this.#render(u))

  /**
   * Returns the memory the token was allocated to its GPUs, never above a
   * GPU's total. Once per token: a second free, or a token this manager never
   * allocated, changes nothing. `resources` is not trusted: what was recorded
   * for the token is what returns.
   */
  readonly freeResources = (_resources: Allocation, token: string): Effect.Effect<void> => this.#book.free(token)

  /**
   * `{ exclusive, resources: [{ gpu_id, memory, total, jobs }], reserved: { [token]:
   * { resources, expiresInMs } }, allocated: { [token]: resources } }` (memory
   * in GiB), after expiring what is due.
   */
  readonly reportResources = (): Effect.Effect<Readonly<Record<string, unknown>>> =>
    Effect.map(this.#book.snapshot, (snapshot) => ({
      exclusive: this.exclusive,
      ...reportOf(
        snapshot,
        (pool) => pool.map((s) => ({ gpu_id: s.id, memory: s.free, total: s.total, jobs: s.jobs })),
        (units) => this.#render(units)
      )
    }))
}
