/**
 * Everything this package takes from `@flexec/core`, in one place.
 *
 * @internal
 */
export {
  BackendUnavailable,
  checkLauncherSpec,
  decodeJobId,
  defaultRuntimeDir,
  InvalidJobMeta,
  JobId,
  LaunchFailed,
  resourceSpecFor
} from "@flexec/core"
export type {
  Capabilities,
  ExecutorOptions,
  JobExit,
  JobHandle,
  JobLauncher,
  JobMeta,
  LaunchRequest,
  LogLine,
  RecoveredJob,
  TerminateOptions
} from "@flexec/core"
