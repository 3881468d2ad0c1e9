/**
 * The shape of `fixtures/worker.cjs` when required as a module.
 */
import type { JobSpec } from "@flexec/core/worker"
import type { Duplex } from "node:stream"

/** What a fixture uses of its surroundings: an OS process, or an in-process backend's simulation of one. */
export interface FixtureHost {
  /** True in an OS process. */
  readonly real: boolean
  /** The job's environment. */
  readonly env: Record<string, string | undefined>
  /** The worker runtime's `runJob` (in-process: `runJobWith` with the backend's io). */
  readonly runJob: (spec: JobSpec) => Promise<number>
  /** Ends the program now with `code`. */
  readonly exit: (code: number) => void
  /** A line on stdout. */
  readonly log: (line: string) => void
  /** A line on stderr. */
  readonly logError: (line: string) => void
  /** Resolves after `ms`, unless the program ended. */
  readonly sleep: (ms: number) => Promise<void>
  /** Never resolves; keeps the program alive. */
  readonly forever: () => Promise<never>
  /** Handles SIGTERM (the default action, ending the program, no longer happens). */
  readonly onSigterm: (handler: () => void) => void
  /** Writes `text` as is (no newline added) to stdout or stderr; absent: `process.stdout` / `process.stderr`. */
  readonly write?: (stream: "stdout" | "stderr", text: string) => void
  /** The program's working directory; absent: `process.cwd()`. */
  readonly cwd?: () => string
  /** A raw byte stream to the parent (`FLEXEC_PARENT_URL`). */
  readonly connect: () => Duplex
}

/** One fixture program. */
export interface FixtureProgram {
  /** Needs a real OS process (spawns processes, or allocates real memory). */
  readonly process?: boolean
  readonly main: (host: FixtureHost, args: ReadonlyArray<string>) => unknown
}

/** `require("@flexec/testing/fixtures/worker.cjs")`. */
export interface FixtureModule {
  readonly fixtures: Readonly<Record<string, FixtureProgram>>
  readonly facts: unknown
  /** Which fixture a run names: argv[0] if given, else `FLEXEC_SET`'s `{ fixture, args }`. */
  readonly select: (
    argv: ReadonlyArray<string>,
    env: Readonly<Record<string, string | undefined>>
  ) => { readonly name: string | undefined; readonly args: ReadonlyArray<string> }
}
