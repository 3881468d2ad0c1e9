/**
 * Client status and return codes, with NVFlare's values so ports are mechanical.
 * Dependency-free: the worker runtime bundles this module (it must import nothing).
 *
 * @since 0.1.0
 */

/** The status of a job on this client (NVFlare's `ClientStatus`). */
export const ClientStatus = {
  NotStarted: 0,
  Starting: 1,
  Started: 2,
  Stopped: 3,
  Exception: 4
} as const

/** A `ClientStatus` value. */
export type ClientStatus = (typeof ClientStatus)[keyof typeof ClientStatus]

const statusMessages = ["not started", "starting", "started", "stopped", "exception"] as const

/** The status message of a `ClientStatus`, as NVFlare's `check_status` returns it. */
export type StatusMessage = (typeof statusMessages)[number]

/** `"not started" | "starting" | "started" | "stopped" | "exception"` for a status. */
export const statusMessage = (status: ClientStatus): StatusMessage => statusMessages[status]!

/** True when `value` is a `ClientStatus`. */
export const isClientStatus = (value: unknown): value is ClientStatus =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 4

/** The return code of a finished job (NVFlare's `JobReturnCode` plus `ProcessExitCode`). */
export const JobReturnCode = {
  Success: 0,
  ExecutionError: 1,
  Aborted: 9,
  Exception: 101,
  UnsafeComponent: 102,
  ConfigError: 103,
  InfrastructureError: 104,
  Unknown: 127
} as const

/** A `JobReturnCode` value. */
export type JobReturnCode = (typeof JobReturnCode)[keyof typeof JobReturnCode]

/** The reportable reason of a return code (NVFlare's `REPORTABLE_JOB_FAILURES`), or `undefined`. */
export const reasonOf = (code: number): string | undefined => {
  switch (code) {
    case 9:
      return "aborted"
    case 101:
      return "exception"
    case 102:
      return "unsafe component"
    case 103:
      return "config error"
    case 104:
      return "infrastructure error"
    default:
      return undefined
  }
}

/** Message-level return codes (NVFlare's cell return codes). */
export const ReturnCode = {
  Ok: "ok",
  Timeout: "timeout",
  InvalidTarget: "invalid_target",
  TargetUnreachable: "target_unreachable",
  CommError: "comm_error",
  MsgTooBig: "msg_too_big",
  InvalidRequest: "invalid_request",
  ProcessException: "process_exception",
  ServiceUnavailable: "service_unavailable",
  AbortRun: "abort_run",
  Unauthenticated: "unauthenticated"
} as const

/** A `ReturnCode` value. */
export type ReturnCode = (typeof ReturnCode)[keyof typeof ReturnCode]

/** Every `ReturnCode` value. */
export const returnCodes: ReadonlyArray<ReturnCode> = Object.values(ReturnCode)

/** Channels of the built-in traffic. */
export const Channel = {
  ClientCommand: "client_command",
  Admin: "admin"
} as const

/** Built-in topics. */
export const Topic = {
  Abort: "abort",
  AbortTask: "abort_task",
  ShowStats: "show_stats",
  ShowErrors: "show_errors",
  ResetErrors: "reset_errors",
  ConfigureJobLog: "configure_job_log",
  CheckStatus: "check_status",
  NotifyJobStatus: "notify_job_status"
} as const
