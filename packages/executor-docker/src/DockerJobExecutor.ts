/**
 * The Docker executor: the engine of `@flexec/core` over the Docker launcher,
 * as a Layer (Effect API) or a Promise facade.
 *
 * @since 0.1.0
 */
import { executorLayer, makeJobExecutor } from "@flexec/core"
import type {
  BackendUnavailable,
  ClientExecutor,
  ExecutorOptions,
  InstanceInUse,
  InvalidClient,
  JobExecutorService,
  UnsafeClientExecutor
} from "@flexec/core"
import { toPromiseExecutor } from "@flexec/core/promise"
import type { OnParentExit, PromiseExecutor } from "@flexec/core/promise"
import { Effect } from "effect"
import type { Layer, Scope } from "effect"
import { make } from "./DockerJobLauncher.js"
import type { DockerLauncherOptions } from "./DockerJobLauncher.js"

/** Options of the Docker executor: the shared executor options and the launcher's. */
export interface DockerExecutorOptions extends ExecutorOptions, DockerLauncherOptions {
  /**
   * What a program that ends without `close()` does to its containers.
   * `"abort"` (default): `createDockerExecutor` closes the executor in order
   * (the containers are stopped and removed) on SIGINT/SIGTERM/SIGHUP with no
   * handler of the program's own, and on uncaught errors, before the program
   * ends; on any other exit the launcher force-removes them. `"leave"`: nothing
   * is done, for a later parent to adopt or reap them.
   */
  readonly onParentExit?: OnParentExit
}

/** What making the Docker executor can fail with (the engine's errors). */
export type DockerExecutorError = InstanceInUse | BackendUnavailable | InvalidClient

/**
 * Makes a `ClientExecutor` running jobs as containers, in the caller's scope
 * (closing it aborts what runs and releases everything).
 */
const makeExecutor = (options: DockerExecutorOptions): Effect.Effect<JobExecutorService, DockerExecutorError, Scope.Scope> =>
  // containers run without a network: the channel reaches them only as the bind-mounted unix socket
  options.channel !== undefined && options.channel.transport !== "unix"
    ? Effect.die(new TypeError(`channel: the Docker backend's containers have no network; its channel is { transport: "unix" }, not ${JSON.stringify(options.channel.transport)}`))
    : makeJobExecutor({ ...options, launcher: make(options) })

/** The Docker executor, as the process backend's: `make` (scoped Effect) and `layer`. */
export const DockerJobExecutor = {
  /** A `ClientExecutor` running jobs as containers, in the caller's scope. */
  make: makeExecutor,
  /** A `ClientExecutor` (and its fiberless door) running jobs as containers; closing the layer aborts what still runs. */
  layer: (options: DockerExecutorOptions): Layer.Layer<ClientExecutor | UnsafeClientExecutor, DockerExecutorError> =>
    executorLayer(makeExecutor(options))
} as const

/** The Docker executor as Promises, fully started (recovery done) when it resolves. */
export const createDockerExecutor = (options: DockerExecutorOptions): Promise<PromiseExecutor> =>
  toPromiseExecutor(DockerJobExecutor.layer(options), options.onParentExit !== undefined ? { onParentExit: options.onParentExit } : {})
