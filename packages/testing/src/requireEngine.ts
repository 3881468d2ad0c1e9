/**
 * The skip-or-fail rule for tests that need a service (a Docker engine, a GPU):
 * without it they skip loudly, saying how to get it, except where the
 * environment variable (default `FLEXEC_REQUIRE_DOCKER`) is `1`, as in CI,
 * where they fail.
 *
 * @since 0.1.0
 */

/** Options of `engineReady`. */
export interface EngineReadyOptions {
  /** The test file (for the message). */
  readonly file: string
  /** Why the service is not usable, or `undefined` when it is. */
  readonly problem: string | undefined
  /** What is missing, e.g. "a usable Docker engine at /var/run/docker.sock". */
  readonly what: string
  /** How to get it, e.g. "bash scripts/docker-up.sh". */
  readonly how: string
  /** The variable that turns a skip into a failure (default `FLEXEC_REQUIRE_DOCKER`). */
  readonly requireVar?: string
}

/**
 * `true` when the service is usable. Otherwise prints a loud SKIPPING line and
 * returns `false`, or throws when `requireVar` is `1`.
 *
 * @example
 * const ready = engineReady({ file: "my.test.ts", problem: await Effect.runPromise(dockerProblem()), what: "a Docker engine", how: "start dockerd" })
 * describe.skipIf(!ready)("my docker tests", () => { ... })
 */
export const engineReady = (options: EngineReadyOptions): boolean => {
  if (options.problem === undefined) return true
  const requireVar = options.requireVar ?? "FLEXEC_REQUIRE_DOCKER"
  if (process.env[requireVar] === "1") {
    throw new Error(`${requireVar}=1 but there is no ${options.what} (${options.problem}); ${options.how}`)
  }
  console.warn(`\n*** SKIPPING ${options.file}: no ${options.what} (${options.problem}); ${options.how} ***\n`)
  return false
}
