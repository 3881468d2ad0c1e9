/**
 * `flexec conformance <module> [--junit <file>]`: the conformance suite of
 * `@flexec/testing` on a launcher module (its `flexec-conformance` runner).
 *
 * @since 0.1.0
 */
import { Args, Command as CliCommand, Options } from "@effect/cli"
import { Command } from "@effect/platform"
import { Effect, Option, Ref } from "effect"
import { createRequire } from "node:module"
import * as path from "node:path"
import { CliError, ExitCode } from "./internal/errors.js"
import { ExitStatus } from "./internal/exitStatus.js"
import { verboseOption } from "./RunCommand.js"

/**
 * The path of `@flexec/testing`'s `flexec-conformance` runner. It runs in its
 * own process: the suite needs vitest's runner, which cannot be loaded into
 * this one.
 */
export const conformanceBin = (): Effect.Effect<string, CliError> =>
  Effect.try({
    try: () => path.join(path.dirname(createRequire(import.meta.url).resolve("@flexec/testing/package.json")), "dist", "bin.cjs"),
    catch: () =>
      new CliError({ message: "@flexec/testing is not installed: npm i -D @flexec/testing vitest @effect/vitest", exitCode: ExitCode.InfrastructureError })
  })

/** The `conformance` subcommand: exit 0 when every test passed. */
export const conformanceCommand = CliCommand.make(
  "conformance",
  {
    module: Args.text({ name: "module" }).pipe(
      Args.withDescription("A path or package name exporting makeLauncher (or a default launcher factory).")
    ),
    junit: Options.text("junit").pipe(Options.optional, Options.withDescription("Also write a JUnit XML report to this file.")),
    verbose: verboseOption
  },
  (args) =>
    Effect.gen(function* () {
      const bin = yield* conformanceBin()
      const argv = [bin, args.module, ...Option.match(args.junit, { onNone: () => [], onSome: (f) => ["--junit", f] })]
      const code = yield* Command.make(process.execPath, ...argv).pipe(
        Command.stdin("inherit"),
        Command.stdout("inherit"),
        Command.stderr("inherit"),
        Command.exitCode
      )
      yield* Ref.set(yield* ExitStatus, code)
    })
).pipe(CliCommand.withDescription("Run the backend conformance suite of @flexec/testing on a launcher module (pass/fail/skip table)."))
