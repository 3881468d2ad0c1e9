/**
 * The CLI's own error, and how every error becomes one line and an exit code.
 *
 * @internal
 */
import { Cause, Schema } from "effect"

/** A failure of the CLI itself (bad input, a missing file): one line, and the exit code to use. */
export class CliError extends Schema.TaggedError<CliError>()("CliError", {
  message: Schema.String,
  exitCode: Schema.Number
}) {}

/** Exit codes of the command (see the README). */
export const ExitCode = {
  Success: 0,
  Failure: 1,
  Usage: 2,
  Aborted: 9,
  ConfigError: 103,
  InfrastructureError: 104
} as const

const byTag: Readonly<Record<string, number>> = {
  CliError: ExitCode.Failure,
  ValidationError: ExitCode.Usage,
  InvalidClient: ExitCode.Usage,
  InvalidJobId: ExitCode.ConfigError,
  JobMetaMissing: ExitCode.ConfigError,
  JobMetaMismatch: ExitCode.ConfigError,
  InvalidJobMeta: ExitCode.ConfigError,
  JobAborted: ExitCode.Aborted,
  LaunchFailed: ExitCode.InfrastructureError,
  ImageNotFound: ExitCode.InfrastructureError,
  BackendUnavailable: ExitCode.InfrastructureError,
  InstanceInUse: ExitCode.InfrastructureError,
  ResourceTokenInvalid: ExitCode.InfrastructureError
}

/** The exit code for an error: its own for `CliError`, by tag for flexec's errors, else 1. */
export const exitCodeOf = (error: unknown): number => {
  if (error instanceof CliError) return error.exitCode
  const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : ""
  return byTag[tag] ?? ExitCode.Failure
}

/** What to do about an error, when the error's own message does not say it. */
const hintOf = (error: unknown): string | undefined => {
  const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : ""
  switch (tag) {
    case "BackendUnavailable":
      return "run `flexec doctor` to see what this machine offers"
    case "ImageNotFound":
      return "build or pull the image first, or name another with --image"
    case "LaunchFailed":
      return /no image/.test(String((error as { message?: unknown }).message)) ? "pass --image <image>" : undefined
    case "InstanceInUse":
      return "wait for that process to end, or stop it"
    default:
      return undefined
  }
}

/** The single line printed for an error: `error: <message>` (and what to do, when known). */
export const errorLine = (error: unknown): string => {
  const message = error instanceof Error || (typeof error === "object" && error !== null && "message" in error)
    ? String((error as { message: unknown }).message)
    : String(error)
  const hint = hintOf(error)
  const first = message.split("\n")[0] ?? message
  return `error: ${first}${hint === undefined ? "" : ` (${hint})`}`
}

/** The error of a failed run: its first failure, else its first defect, else the cause itself. */
export const squashCause = (cause: Cause.Cause<unknown>): unknown => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return failure.value
  const defects = Cause.defects(cause)
  for (const d of defects) return d
  return new Error(Cause.pretty(cause))
}
