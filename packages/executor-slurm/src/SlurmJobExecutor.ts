/**
 * The Slurm backend as a whole executor: the engine of `@flexec/core` with
 * `SlurmJobLauncher`, as an Effect layer or as a Promise API.
 *
 * @since 0.1.0
 */
import { executorLayer, makeJobExecutor } from "@flexec/core"
import type { BackendUnavailable, ClientExecutor, ExecutorOptions, JobExecutorService, UnsafeClientExecutor } from "@flexec/core"
import { toPromiseExecutor } from "@flexec/core/promise"
import type { PromiseExecutor } from "@flexec/core/promise"
import { Effect } from "effect"
import type { Layer, Scope } from "effect"
import { makeEffect } from "./SlurmJobLauncher.js"
import type { SlurmLauncherOptions } from "./SlurmJobLauncher.js"

/** Options of the Slurm executor: the shared executor options and the backend's own. */
export type SlurmExecutorOptions = ExecutorOptions & SlurmLauncherOptions

/** What making the executor can fail with: the engine's errors, and `BackendUnavailable` when Slurm cannot be asked. */
export type SlurmExecutorError = Effect.Effect.Error<ReturnType<typeof makeJobExecutor>> | BackendUnavailable

/** The launcher options found in the executor options (only those given). */
const launcherOptions = (options: SlurmExecutorOptions): SlurmLauncherOptions => {
  const keys = [
    "slurmConf",
    "slurmBin",
    "partition",
    "account",
    "qos",
    "pollIntervalMs",
    "sbatchArgs",
    "runtimeDir",
    "killTimeoutMs",
    "commandTimeoutMs",
    "defaultMemory"
  ] as const
  const out: Record<string, unknown> = {}
  for (const key of keys) if (options[key] !== undefined) out[key] = options[key]
  return out as SlurmLauncherOptions
}

/**
 * Makes a `ClientExecutor` running jobs on Slurm, in the caller's scope
 * (closing it aborts what runs and releases everything). Asks the cluster
 * first: fails with `BackendUnavailable` naming the command and Slurm's
 * message when a client is missing or the controller does not answer. Invalid
 * backend options are a defect (`TypeError`).
 */
const make = (options: SlurmExecutorOptions): Effect.Effect<JobExecutorService, SlurmExecutorError, Scope.Scope> =>
  Effect.flatMap(makeEffect(launcherOptions(options)), (launcher) => makeJobExecutor({ ...options, launcher }))

/** The Slurm executor as a layer of `ClientExecutor` (and of its fiberless door, for the Promise facade). */
const layer = (options: SlurmExecutorOptions): Layer.Layer<ClientExecutor | UnsafeClientExecutor, SlurmExecutorError> =>
  executorLayer(make(options))

/** The Slurm executor: `SlurmJobExecutor.layer(options)` for Effect programs, `make` for a scope of your own. */
export const SlurmJobExecutor = { make, layer } as const

/**
 * The Slurm executor with a Promise API, fully started (the cluster asked,
 * recovery done) when it resolves. `close()` aborts what still runs and
 * releases every resource.
 */
export const createSlurmExecutor = async (options: SlurmExecutorOptions): Promise<PromiseExecutor> => toPromiseExecutor(layer(options))
