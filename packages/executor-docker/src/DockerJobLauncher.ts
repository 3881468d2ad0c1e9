/**
 * The Docker backend of flexec: each job is a container created through the
 * Engine API, hardened (no network, all capabilities dropped, no new
 * privileges, a pids limit, the job's memory and CPU limits), with only the
 * job's own directory and socket directory mounted. This module makes the
 * launcher from its parts in `internal/`: its options (`options.ts`), the
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
import { resolveSettings } from "./internal/options.js"
import type { DockerLauncherOptions } from "./internal/options.js"
import { allowedSpecKeys, checkJobSpec } from "./internal/spec.js"

export { containerBody, exitOfState, Labels } from "./internal/container.js"
export type { ContainerBodyInput } from "./internal/container.js"
export type { DockerLauncherOptions, PullPolicy } from "./internal/options.js"

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
