/**
 * `@flexec/executor-slurm`: flexec jobs as Slurm batch jobs.
 *
 * @module @flexec/executor-slurm
 * @since 0.1.0
 */
export { allowedSlurmSpecKeys, jobEnvironment, slurmCapabilities, SlurmJobLauncher } from "./SlurmJobLauncher.js"
export type { ClusterConfig, SlurmLauncher, SlurmLauncherOptions } from "./SlurmJobLauncher.js"
export { createSlurmExecutor, SlurmJobExecutor } from "./SlurmJobExecutor.js"
export type { SlurmExecutorError, SlurmExecutorOptions } from "./SlurmJobExecutor.js"
