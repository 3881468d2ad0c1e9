/**
 * `@flexec/cli`: the `flexec` command (`run`, `doctor`, `conformance`), built
 * on `@effect/cli` (with a small Node environment of its own, `internal/platform.ts`).
 *
 * @since 0.1.0
 */
import { Command, ValidationError } from "@effect/cli"
import type { FileSystem, Path, Terminal } from "@effect/platform"
import { Cause, Console, Effect, Exit, FiberId, Logger, Ref } from "effect"
import * as util from "node:util"
import { conformanceCommand } from "./ConformanceCommand.js"
import { doctorCommand } from "./DoctorCommand.js"
import { errorLine, exitCodeOf, ExitCode, squashCause } from "./internal/errors.js"
import { ExitStatus } from "./internal/exitStatus.js"
import { precheck } from "./internal/help.js"
import { guardOutput, writeErr } from "./internal/output.js"
import { CliEnvironment } from "./internal/platform.js"
import { runCommand } from "./RunCommand.js"

export { CliError, errorLine, ExitCode, exitCodeOf } from "./internal/errors.js"
export { conformanceBin, conformanceCommand } from "./ConformanceCommand.js"
export { doctorChecks, doctorChecksWith, doctorCommand, formatChecks, maxSocketPath } from "./DoctorCommand.js"
export type { Check } from "./DoctorCommand.js"
export { runCommand, runJobFolder } from "./RunCommand.js"
export type { RunArgs } from "./RunCommand.js"
export { describeOutcome } from "./internal/view.js"

/** The version printed by `flexec --version`. */
export const version = "0.1.0"

/** The root `flexec` command and its subcommands. */
export const flexecCommand = Command.make("flexec", {}, () =>
  Effect.gen(function* () {
    yield* Console.error("usage: flexec <run|doctor|conformance> ...  (flexec --help for more)")
    yield* Ref.set(yield* ExitStatus, ExitCode.Usage)
  })
).pipe(
  Command.withDescription("flexec: run federated-learning jobs as isolated workers (child processes or Docker containers)."),
  Command.withSubcommands([runCommand, doctorCommand, conformanceCommand])
)

const cli = Command.run(flexecCommand, { name: "flexec", version })

/**
 * Runs the command on `argv` (as `process.argv`: node and the script first)
 * and succeeds with the process exit status. Errors are printed as one line,
 * `error: <message>`, with the full cause only under `--verbose`.
 */
export const main = (
  argv: ReadonlyArray<string>
): Effect.Effect<number, never, FileSystem.FileSystem | Path.Path | Terminal.Terminal> =>
  Effect.gen(function* () {
    const checked = precheck(argv.slice(2), version)
    if (checked._tag === "Help") {
      yield* Console.log(checked.text.trimEnd())
      return ExitCode.Success
    }
    if (checked._tag === "Usage") {
      yield* Console.error(`error: ${checked.message}`)
      return ExitCode.Usage
    }
    const status = yield* Ref.make<number>(ExitCode.Success)
    // The engine's own logs: on stderr under --verbose, else none (stdout may be --json).
    const logger = argv.includes("--verbose")
      ? Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))
      : Logger.remove(Logger.defaultLogger)
    const exit = yield* cli(argv).pipe(Effect.provideService(ExitStatus, status), Effect.provide(logger), Effect.exit)
    if (Exit.isSuccess(exit)) return yield* Ref.get(status)
    if (Cause.isInterruptedOnly(exit.cause)) return 130
    const error = squashCause(exit.cause)
    // @effect/cli has already printed what was wrong with the command line.
    if (ValidationError.isValidationError(error)) {
      yield* Console.error("(flexec --help shows the commands and their options)")
      return ExitCode.Usage
    }
    yield* Console.error(errorLine(error))
    if (argv.includes("--verbose")) yield* Console.error(Cause.pretty(exit.cause, { renderErrorCause: true }))
    return exitCodeOf(error)
  })

/**
 * Runs `main` on `process.argv` in Node and exits with its status. A closed
 * stdout or stderr (EPIPE, EIO) never crashes it; an uncaught exception (an
 * internal error) interrupts the command, so that its job is aborted and what
 * it created is removed, and then exits with status 1.
 */
export const runMain = (): void => {
  guardOutput()
  let internalError = false
  const fiber = Effect.runFork(main(process.argv).pipe(Effect.provide(CliEnvironment)))
  process.on("uncaughtException", (error) => {
    if (internalError) return
    internalError = true
    writeErr(`${errorLine(error)} (an internal error of flexec: stopping the job and cleaning up)\n`)
    if (process.argv.includes("--verbose")) writeErr(`${util.inspect(error)}\n`)
    fiber.unsafeInterruptAsFork(FiberId.none)
  })
  fiber.addObserver((exit) => {
    process.exit(internalError ? ExitCode.Failure : Exit.isSuccess(exit) ? exit.value : ExitCode.Failure)
  })
}
