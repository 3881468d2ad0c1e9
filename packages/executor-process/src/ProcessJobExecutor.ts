/**
 * The process backend as a whole executor: the engine of `@flexec/core` with
 * `ProcessJobLauncher`, as an Effect layer or as a Promise API.
 *
 * @since 0.1.0
 */
import { executorLayer, makeJobExecutor } from "@flexec/core"
import type { ClientExecutor, ExecutorOptions, JobExecutorService, UnsafeClientExecutor } from "@flexec/core"
import { toPromiseExecutor } from "@flexec/core/promise"
import type { PromiseExecutor } from "@flexec/core/promise"
import type { Effect, Layer, Scope } from "effect"
import { ProcessJobLauncher } from "./ProcessJobLauncher.js"
import type { ProcessLauncherOptions } from "./ProcessJobLauncher.js"

/** Options of the process executor: the shared executor options and the backend's own. */
export type ProcessExecutorOptions = ExecutorOptions & ProcessLauncherOptions

/** What making the executor can fail with (the engine's errors). */
export type ProcessExecutorError = Effect.Effect.Error<ReturnType<typeof makeJobExecutor>>

/** The launcher options found in the executor options (only those given). */
const launcherOptions = (options: ProcessExecutorOptions): ProcessLauncherOptions => ({
  ...(options.uid !== undefined ? { uid: options.uid } : {}),
  ...(options.gid !== undefined ? { gid: options.gid } : {}),
  ...(options.logMaxBytes !== undefined ? { logMaxBytes: options.logMaxBytes } : {}),
  ...(options.logFiles !== undefined ? { logFiles: options.logFiles } : {}),
  ...(options.runtimeDir !== undefined ? { runtimeDir: options.runtimeDir } : {}),
  ...(options.killTimeoutMs !== undefined ? { killTimeoutMs: options.killTimeoutMs } : {}),
  ...(options.onParentExit !== undefined ? { onParentExit: options.onParentExit } : {})
})

/**
 * Makes a `ClientExecutor` running jobs as child processes, in the caller's
 * scope (closing it aborts what runs and releases everything). Invalid backend
 * options throw a `TypeError` when this is called.
 */
const make = (
  options: ProcessExecutorOptions
): Effect.Effect<JobExecutorService, ProcessExecutorError, Scope.Scope> => {
  const launcher = ProcessJobLauncher.make(launcherOptions(options))
  return makeJobExecutor({ ...options, launcher })
}

/** The process executor as a layer of `ClientExecutor` (and of its fiberless door, for the Promise facade). */
const layer = (options: ProcessExecutorOptions): Layer.Layer<ClientExecutor | UnsafeClientExecutor, ProcessExecutorError> =>
  executorLayer(make(options))

/** The process executor: `ProcessJobExecutor.layer(options)` for Effect programs, `make` for a scope of your own. */
export const ProcessJobExecutor = { make, layer } as const

/**
 * The process executor with a Promise API, fully started (recovery done) when
 * it resolves. `close()` aborts what still runs and releases every resource.
 * A program that ends without `close()` aborts its jobs too (`onParentExit`,
 * default `"abort"`: SIGINT/SIGTERM/SIGHUP and uncaught errors close the
 * executor first; any other exit SIGKILLs the jobs' process groups).
 */
export const createProcessExecutor = async (options: ProcessExecutorOptions): Promise<PromiseExecutor> =>
  toPromiseExecutor(layer(options), options.onParentExit !== undefined ? { onParentExit: options.onParentExit } : {})
