/** The process launcher's options, resolved once when it is made. */
import { Duration } from "effect"

/** Options of the process backend. */
export interface ProcessLauncherOptions {
  /** Run jobs as this user id (the parent must be root). Give `gid` with it. */
  readonly uid?: number
  /** Run jobs with this group id (the parent must be root). Give `uid` with it. */
  readonly gid?: number
  /** Rotate `log.txt` when it would pass this size (default 10 MiB). */
  readonly logMaxBytes?: number
  /** Log files kept, `log.txt` included (default 3: `log.txt`, `log.txt.1`, `log.txt.2`). */
  readonly logFiles?: number
  /**
   * The instance's runtime directory, where `recover` looks for pid files
   * (launches use the request's `paths.runtimeDir`). Default
   * `<os tmpdir>/flexec-<uid>/process-<instanceId>`, the engine's default.
   */
  readonly runtimeDir?: string
  /** SIGTERM → SIGKILL for recovered jobs, which carry no request (default 5000 ms). */
  readonly killTimeoutMs?: number
  /**
   * What happens to running jobs when the parent process exits without
   * closing its executor. `"abort"` (default): on the process's `'exit'` the
   * launcher SIGKILLs each job's process group (an `'exit'` listener cannot
   * wait, so there is no SIGTERM first) and removes its pid file and channel
   * directory. `"leave"`: they keep running, for a later parent of the same
   * instance to adopt (`recover: "adopt"`) or reap. A parent killed by a signal
   * emits no `'exit'`: the Promise facade (`createProcessExecutor`) turns
   * SIGINT/SIGTERM/SIGHUP into an orderly close first.
   */
  readonly onParentExit?: "abort" | "leave"
}

const defaultLogMaxBytes = 10 * 1024 * 1024
const defaultLogFiles = 3
const defaultKillTimeoutMs = 5000

/** The launcher's options, checked, with their defaults. */
export interface ResolvedOptions {
  readonly runAs: { readonly uid: number; readonly gid: number } | undefined
  readonly logMaxBytes: number
  readonly logFiles: number
  readonly runtimeDir: string | undefined
  readonly killTimeout: Duration.Duration
  readonly onParentExit: "abort" | "leave"
}

/** Checks `options` (a `TypeError` names what is wrong) and fills in the defaults. */
export const resolveOptions = (options: ProcessLauncherOptions): ResolvedOptions => {
  if ((options.uid === undefined) !== (options.gid === undefined)) {
    throw new TypeError("ProcessJobLauncher: give uid and gid together")
  }
  if (options.onParentExit !== undefined && options.onParentExit !== "abort" && options.onParentExit !== "leave") {
    throw new TypeError(`ProcessJobLauncher: onParentExit must be "abort" or "leave", not ${JSON.stringify(options.onParentExit)}`)
  }
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    if (value === undefined) return fallback
    if (!Number.isInteger(value) || value < 1) throw new TypeError(`ProcessJobLauncher: ${name} must be a positive integer`)
    return value
  }
  return {
    runAs: options.uid !== undefined && options.gid !== undefined ? { uid: options.uid, gid: options.gid } : undefined,
    logMaxBytes: positive("logMaxBytes", options.logMaxBytes, defaultLogMaxBytes),
    logFiles: positive("logFiles", options.logFiles, defaultLogFiles),
    runtimeDir: options.runtimeDir,
    killTimeout: Duration.millis(positive("killTimeoutMs", options.killTimeoutMs, defaultKillTimeoutMs)),
    onParentExit: options.onParentExit ?? "abort"
  }
}
