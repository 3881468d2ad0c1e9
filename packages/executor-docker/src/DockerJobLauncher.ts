/**
 * The Docker backend of flexec: each job is a container created through the
 * Engine API, hardened (no network, all capabilities dropped, no new
 * privileges, a pids limit, the job's memory and CPU limits), with only the
 * job's own directory and socket directory mounted. This module holds the
 * launcher's options and assembles it from its parts in `internal/`: the
 * container spec (`container.ts`), the launch, the handle and the recovery.
 *
 * @since 0.1.0
 */
import { InvalidJobMeta } from "@flexec/core"
import type { Capabilities, JobLauncher, JobMeta } from "@flexec/core"
import { Context, Duration, Effect, Layer } from "effect"
import { DockerClient, makeDockerClient } from "./DockerClient.js"
import type { DockerClientService } from "./DockerClient.js"
import { makeLaunch } from "./internal/launch.js"
import { makeRecover } from "./internal/recovery.js"
import { resolveSettings } from "./internal/settings.js"
import { allowedSpecKeys, checkJobSpec } from "./internal/spec.js"

export { containerBody, exitOfState, Labels } from "./internal/container.js"
export type { ContainerBodyInput } from "./internal/container.js"

/** When the launcher pulls an image. */
export type PullPolicy = "never" | "if-missing" | "always"

/** Options of the Docker launcher (and of `DockerJobExecutor`). */
export interface DockerLauncherOptions {
  /** The site's default image, used when the job's `launcher_spec` names none. */
  readonly image?: string
  /** The engine: `socketPath` (default `DOCKER_HOST`, else `/var/run/docker.sock`). */
  readonly docker?: { readonly socketPath?: string }
  /** Default `"never"`: a missing image is `ImageNotFound`, never a silent pull. */
  readonly pullPolicy?: PullPolicy
  /** The container's network mode (default `"none"`). */
  readonly network?: string
  /** `"uid:gid"` or `{ uid, gid }` the job runs as (default the parent's); the job dir and socket dir are chowned to it. */
  readonly containerUser?: string | { readonly uid: number; readonly gid: number }
  /** Image patterns jobs may use (`*` matches anything, `name` ≡ `name:latest`); default: any local image. */
  readonly allowedImages?: ReadonlyArray<string>
  /** Mount the site's startup folder read-only at `<container workspace>/startup` (default false). */
  readonly shareStartup?: boolean
  /** Mount `<workspace>/local` read-only at `<container workspace>/local` (default false). */
  readonly shareLocal?: boolean
  /**
   * Extra Engine API container-create fields (PascalCase, `HostConfig` merged),
   * e.g. `{ HostConfig: { Ulimits: [...] } }`. They cannot set the launcher's own
   * keys: mounts, network, env, cmd, name, user, image, labels.
   */
  readonly defaultContainerOptions?: Readonly<Record<string, unknown>>
  /** The worker runtime inside the image (default `/opt/flexec/node_modules/@flexec/core/dist/worker.cjs`). */
  readonly workerModulePath?: string
  /** `NODE_PATH` inside the container (default `/opt/flexec/node_modules`). */
  readonly workerNodePath?: string
  /**
   * Mount the host's `@flexec/core` (the engine's `workerRuntime`) read-only at
   * `<workerNodePath>/@flexec/core`, for images that do not carry the runtime (default false).
   */
  readonly mountWorkerRuntime?: boolean
  /** Timeout of each Engine API call but the wait (default 30000). */
  readonly apiTimeoutMs?: number
  /** Timeout of an image pull (default 600000). */
  readonly pullTimeoutMs?: number
  /** The job's `log.txt` stops growing past this many bytes (default 30 MiB); the `logs` stream goes on. */
  readonly maxLogBytes?: number
  /**
   * What happens to running containers when the parent exits without closing
   * its executor. `"abort"` (default): on the process's `'exit'` each container
   * is force-removed through the Engine API (by a short helper process, since an
   * `'exit'` listener cannot wait; no grace period). `"leave"`: they keep
   * running, for a later parent of the same instance to adopt or reap.
   * `createDockerExecutor` also closes the executor in order on
   * SIGINT/SIGTERM/SIGHUP and uncaught errors (unless `"leave"`).
   */
  readonly onParentExit?: "abort" | "leave"
}

/** The Docker launcher: a `JobLauncher` plus the user its jobs run as. */
export interface DockerLauncher extends JobLauncher {
  readonly name: "docker"
  /** The container user: the engine chowns each job's socket directory to it. */
  readonly runAs: { readonly uid: number; readonly gid: number }
  /** The Engine API client it uses. */
  readonly client: DockerClientService
}

/** What the Docker backend can do (declared here only). */
export const dockerCapabilities: Capabilities = {
  signals: true,
  oomDetection: true,
  recover: true,
  adopt: true,
  logs: true,
  memoryLimit: true,
  gpus: true,
  processes: false
}

/** Builds the Docker launcher over a given Engine API client. */
export const makeWithClient = (options: DockerLauncherOptions, client: DockerClientService): DockerLauncher => {
  const settings = resolveSettings(options)

  const validate = (meta: JobMeta, site: string): Effect.Effect<void, InvalidJobMeta> =>
    Effect.suspend(() => {
      const jobId = typeof meta.job_id === "string" ? meta.job_id : ""
      const checked = checkJobSpec(meta, site)
      if (checked._tag === "Left") return Effect.fail(new InvalidJobMeta({ jobId, issues: checked.issues }))
      const image = checked.spec.image ?? options.image
      if (image !== undefined && !settings.isAllowed(image)) return Effect.fail(new InvalidJobMeta({ jobId, issues: settings.notAllowed(image) }))
      return Effect.void
    })

  return {
    name: "docker",
    capabilities: dockerCapabilities,
    runAs: settings.runAs,
    client,
    validate,
    launch: makeLaunch(settings, client),
    recover: makeRecover(settings, client)
  }
}

/** Builds the Docker launcher with its own Engine API client. */
export const make = (options: DockerLauncherOptions = {}): DockerLauncher =>
  makeWithClient(
    options,
    makeDockerClient({
      ...(options.docker?.socketPath !== undefined ? { socketPath: options.docker.socketPath } : {}),
      ...(options.apiTimeoutMs !== undefined ? { timeout: Duration.millis(options.apiTimeoutMs) } : {}),
      ...(options.pullTimeoutMs !== undefined ? { pullTimeout: Duration.millis(options.pullTimeoutMs) } : {})
    })
  )

/** The Docker launcher as a service. */
export class DockerJobLauncher extends Context.Tag("@flexec/executor-docker/DockerJobLauncher")<
  DockerJobLauncher,
  DockerLauncher
>() {
  /** Builds the launcher with its own client (no connection until the first call). */
  static readonly make = make
  /** The launcher with its own client. */
  static readonly layer = (options: DockerLauncherOptions = {}): Layer.Layer<DockerJobLauncher> =>
    Layer.sync(DockerJobLauncher, () => make(options))
  /** The launcher over the `DockerClient` in the context. */
  static readonly layerWithClient = (options: DockerLauncherOptions = {}): Layer.Layer<DockerJobLauncher, never, DockerClient> =>
    Layer.effect(DockerJobLauncher, Effect.map(DockerClient, (client) => makeWithClient(options, client)))
}

/** The keys a job may set in `launcher_spec.<site|default>.docker`. */
export const jobSpecKeys: ReadonlyArray<string> = allowedSpecKeys
