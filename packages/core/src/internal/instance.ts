/**
 * An executor instance's place on the host: its runtime directory (made
 * traversable but not listable by others), the owner lock that keeps a second
 * live parent of the same instance out, the copy of the worker runtime jobs
 * load, and that copy's code cache, made in the background.
 */
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { BackendUnavailable } from "../Errors.js"
import type { InstanceInUse } from "../Errors.js"
import type { ExecutorOptions } from "../ExecutorOptions.js"
import type { JobLauncher } from "../JobLauncher.js"
import { ChannelTransport } from "../protocol/ChannelTransport.js"
import type { ChannelTransportService } from "../protocol/Transport.js"
import { describeValue } from "./backendGuard.js"
import { buildJobEnv } from "./jobEnv.js"
import { acquireOwnerLock } from "./ownerLock.js"
import { makeWorkerCodeCache, prepareWorkerRuntime } from "./workerRuntime.js"
import type { WorkerRuntimeFiles } from "./workerRuntime.js"

/** The default runtime directory: `<os tmpdir>/flexec-<uid>/<backend>-<instanceId>`. */
export const defaultRuntimeDir = (backend: string, instanceId: string): string =>
  path.join(os.tmpdir(), `flexec-${process.getuid?.() ?? "user"}`, `${backend}-${instanceId}`)

/** What `acquireInstance` holds. */
export interface Instance {
  readonly runtimeDir: string
  readonly workerRuntime: WorkerRuntimeFiles
  /** The transport the jobs' channels listen through (the `channel` option's, or the context's). */
  readonly transport: ChannelTransportService
}

/**
 * Takes the instance for the scope: resolves its channel transport (the `channel` option is
 * checked before anything is made), makes its runtime directory and `ch/` (0711: a job
 * running as another user reaches its own socket directory), takes the owner lock, copies
 * the worker runtime, and (for a backend whose jobs run on this host's node) makes its code
 * cache in the background; the helper process goes with the scope.
 */
export const acquireInstance = (
  launcher: JobLauncher,
  options: ExecutorOptions,
  instanceId: string,
  adopt: boolean
): Effect.Effect<Instance, InstanceInUse | BackendUnavailable, Scope.Scope> =>
  Effect.gen(function* () {
    const runtimeDir = path.resolve(options.runtimeDir ?? defaultRuntimeDir(launcher.name, instanceId))
    // first: a bad channel option leaves nothing made
    const transport = yield* ChannelTransport.fromOption(options.channel, { runtimeDir, adopt })
    const unavailable = (what: string) => (e: unknown) => new BackendUnavailable({ backend: launcher.name, detail: `${what}: ${describeValue(e)}` })
    yield* Effect.try({
      try: () => {
        fs.mkdirSync(path.join(runtimeDir, "ch"), { recursive: true, mode: 0o711 })
        fs.chmodSync(runtimeDir, 0o711)
        fs.chmodSync(path.join(runtimeDir, "ch"), 0o711)
      },
      catch: unavailable(`cannot create runtime directory ${runtimeDir}`)
    })
    yield* acquireOwnerLock(runtimeDir, instanceId)
    const workerRuntime = yield* Effect.try({
      try: () => prepareWorkerRuntime(runtimeDir),
      catch: unavailable("cannot locate @flexec/core/worker")
    })
    // jobs started before the cache is there compile the runtime as usual
    if (launcher.workerRuntimeOnHost === true && options.workerCodeCache !== false) {
      yield* Effect.forkScoped(
        makeWorkerCodeCache(workerRuntime, {
          execPath: process.execPath,
          env: buildJobEnv({ parent: process.env, inherit: options.inheritEnv ?? [], site: options.env ?? {}, flexec: {} }),
          timeout: Duration.seconds(30)
        })
      )
    }
    return { runtimeDir, workerRuntime, transport }
  })
