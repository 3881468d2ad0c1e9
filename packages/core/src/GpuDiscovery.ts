/**
 * GPU discovery: the host's GPUs from `nvidia-smi`, kept and ordered as the
 * parent's `CUDA_VISIBLE_DEVICES` says (NVFlare's rules). `GpuResourceManager.make`
 * uses `nvidiaSmiDiscovery()` unless given another discovery.
 *
 * @since 0.1.0
 */
import { Duration, Effect } from "effect"
import { spawn } from "node:child_process"

/** A host GPU: its index (as `nvidia-smi` and `CUDA_VISIBLE_DEVICES` number it) and total memory. */
export interface GpuInfo {
  readonly id: number
  /** Total memory in MiB; `undefined` when it could not be determined. */
  readonly memoryMiB?: number | undefined
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

