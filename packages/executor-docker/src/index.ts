/**
 * `@flexec/executor-docker`: flexec jobs as Docker containers.
 *
 * @module @flexec/executor-docker
 * @since 0.1.0
 */
export {
  DockerApiError,
  DockerClient,
  dockerProblem,
  makeDockerClient,
  resolveEndpoint
} from "./DockerClient.js"
export type {
  ContainerMount,
  ContainerState,
  ContainerSummary,
  DockerClientOptions,
  DockerClientService,
  DockerEndpoint,
  DockerError,
  OutputChunk
} from "./DockerClient.js"
export {
  containerBody,
  dockerCapabilities,
  DockerJobLauncher,
  exitOfState,
  jobSpecKeys,
  Labels,
  make as makeDockerLauncher,
  makeWithClient as makeDockerLauncherWithClient
} from "./DockerJobLauncher.js"
export type { ContainerBodyInput, DockerLauncher, DockerLauncherOptions, PullPolicy } from "./DockerJobLauncher.js"
export { createDockerExecutor, DockerJobExecutor } from "./DockerJobExecutor.js"
export type { DockerExecutorError, DockerExecutorOptions } from "./DockerJobExecutor.js"
