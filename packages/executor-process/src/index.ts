/**
 * `@flexec/executor-process`: flexec jobs as child processes.
 *
 * @module @flexec/executor-process
 * @since 0.1.0
 */
export {
  allowedProcessSpecKeys,
  jobEnvironment,
  processCapabilities,
  ProcessJobLauncher
} from "./ProcessJobLauncher.js"
export type { ProcessLauncher, ProcessLauncherOptions } from "./ProcessJobLauncher.js"
export { createProcessExecutor, ProcessJobExecutor } from "./ProcessJobExecutor.js"
export type { ProcessExecutorError, ProcessExecutorOptions } from "./ProcessJobExecutor.js"
