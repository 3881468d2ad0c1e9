/**
 * `flexec conformance <module> [--junit <file>]`: the conformance suite of
 * `@flexec/testing` on a launcher module (its `flexec-conformance` runner).
 *
 * @since 0.1.0
 */
import { Args, Command as CliCommand, Options } from "@effect/cli"
import { Effect, Option, Ref } from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { CliError, ExitCode } from "./internal/errors.js"
import { ExitStatus } from "./internal/exitStatus.js"
import { runInherited } from "./internal/platform.js"
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
      new CliError({ message: "@flexec/testing is not installed (flexec conformance runs its suite): npm i -D @flexec/testing vitest@~3.2.7 @effect/vitest@~0.30.0", exitCode: ExitCode.InfrastructureError })
  })

/**
 * Checks, before the suite starts, that the module exports a launcher factory
 * (`makeLauncher`, or a default function or object holding one), so that a
 * wrong module gets one line saying so instead of an empty table. A module
 * that cannot be found or loaded is left to the runner, which says why.
 */
export const checkLauncherModule = (spec: string, cwd: string = process.cwd()): Effect.Effect<void, CliError> =>
  Effect.gen(function* () {
    const asPath = path.resolve(cwd, spec)
    const file = fs.existsSync(asPath)
      ? asPath
      : yield* Effect.try(() => createRequire(path.join(cwd, "package.json")).resolve(spec)).pipe(Effect.orElseSucceed(() => undefined))
    if (file === undefined) return
    const mod = yield* Effect.tryPromise(() => import(pathToFileURL(file).href) as Promise<Record<string, unknown>>).pipe(
      Effect.orElseSucceed(() => undefined)
    )
    if (mod === undefined) return
    const fallback = mod.default as Record<string, unknown> | ((...a: ReadonlyArray<unknown>) => unknown) | undefined
    const factory = mod.makeLauncher ?? (typeof fallback === "object" && fallback !== null ? fallback.makeLauncher : undefined) ?? fallback
    if (typeof factory !== "function") {
      const exported = Object.keys(mod).filter((k) => k !== "default")
      return yield* new CliError({
        message: `${spec} exports no makeLauncher (nor a default launcher factory)${exported.length > 0 ? `; it exports ${exported.join(", ")}` : ""}: export makeLauncher = (ctx) => launcher; the suite did not run`,
        exitCode: ExitCode.Usage
      })
    }
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
      yield* checkLauncherModule(args.module)
      const bin = yield* conformanceBin()
      const argv = [bin, args.module, ...Option.match(args.junit, { onNone: () => [], onSome: (f) => ["--junit", f] })]
      const code = yield* runInherited(process.execPath, argv).pipe(Effect.orDie)
      yield* Ref.set(yield* ExitStatus, code)
    })
).pipe(CliCommand.withDescription("Run the backend conformance suite of @flexec/testing on a launcher module (pass/fail/skip table)."))
