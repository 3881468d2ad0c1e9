/**
 * The suite's options and their resolved context: what a launcher factory is
 * told, the durations, the run id, and the launcher's capabilities (read once
 * from a launcher the factory built).
 *
 * @since 0.1.0
 */
import type { Capabilities, JobLauncher, ExecutorOptions } from "@flexec/core"
import { Effect, Scope } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** What a launcher factory is told about the test it serves. */
export interface LauncherContext {
  /** The suite run's id (also the value of the `flexec.test-run` label). */
  readonly runId: string
  /** The executor instance id of this test. */
  readonly instanceId: string
  /** The executor's runtime directory of this test (where a backend keeps pid files). */
  readonly runtimeDir: string
}

/** A launcher factory: a fresh, isolated launcher each call (an Effect, a value or a Promise). */
export type LauncherFactory = (
  context: LauncherContext
) => Effect.Effect<JobLauncher, unknown, Scope.Scope> | JobLauncher | PromiseLike<JobLauncher>

/** Durations of the suite, in milliseconds. */
export interface ConformanceTimeouts {
  /** One test, end to end (default 20000). */
  readonly testMs?: number
  /** Waiting for one event or state (default 10000). */
  readonly eventMs?: number
  /** The executor's `graceMs` (default 300). */
  readonly graceMs?: number
  /** The executor's `killTimeoutMs` (default 300). */
  readonly killTimeoutMs?: number
  /** The executor's `startTimeoutMs` (default 15000). */
  readonly startTimeoutMs?: number
  /** The `startTimeoutMs` of the start-timeout test (default 1000). */
  readonly shortStartTimeoutMs?: number
  /** Leaked OS processes must be gone within this after a test (default 5000). */
  readonly processGoneMs?: number
  /** The `killAfter` the escalation test gives `terminate` (default 2000). */
  readonly killAfterMs?: number
  /** How late after `killAfter` a job may still be alive (default 1500). */
  readonly killSlackMs?: number
  /** How soon after the exit the `logs` stream must end (default 3000). */
  readonly logsEndMs?: number
}

/** What `staleRecord` is told: where to write a record of `jobId` that names the live, unrelated `pid`. */
export interface StaleRecordContext {
  readonly runId: string
  readonly instanceId: string
  readonly runtimeDir: string
  readonly jobId: string
  /** A live process of no job (the suite spawned it; it carries no `FLEXEC_JOB_ID`). */
  readonly pid: number
}

/** Options of `conformanceSuite` (capabilities are read from the launcher, never passed). */
export interface ConformanceOptions {
  /** The name of the top `describe`. */
  readonly name: string
  readonly makeLauncher: LauncherFactory
  /** The argv template jobs run with (default: the engine's default command). */
  readonly workerCommand?: ReadonlyArray<string>
  readonly timeouts?: ConformanceTimeouts
  /** More executor options (the suite's own labels, timeouts and handlers take precedence where it needs them). */
  readonly executorOptions?: Partial<ExecutorOptions>
  /**
   * Variables the backend documents adding to a job's environment beyond the
   * request's `env` (besides `CUDA_VISIBLE_DEVICES`, `NODE_PATH`, `NODE_OPTIONS`,
   * which any backend may add), e.g. Docker's `HOSTNAME`. An entry ending in `*`
   * is a prefix (`"SLURM_*"`: every variable whose name starts with `SLURM_`); a
   * lone `"*"` matches nothing.
   */
  readonly jobEnvAdditions?: ReadonlyArray<string>
  /**
   * Capabilities the backend claims but this host cannot exercise, each with the
   * reason (`{ gpus: "this machine has no GPU" }`): their tests are skipped, naming both.
   */
  readonly unavailable?: Partial<Record<keyof Capabilities, string>>
  /**
   * Opt-in (backends with `processes` and `recover`): write, under `runtimeDir`, the
   * record the backend would have kept for a job `jobId` of `instanceId`, naming
   * `pid` (which now belongs to an unrelated process). The suite then checks that
   * `recover` does not claim it and that the process survives recovery.
   */
  readonly staleRecord?: (context: StaleRecordContext) => void | PromiseLike<void> | Effect.Effect<void, unknown>
}

/** What every group gets: the options resolved, the run id, and the launcher's capabilities. */
export interface ConformanceContext {
  readonly name: string
  readonly makeLauncher: LauncherFactory
  readonly workerCommand: ReadonlyArray<string> | undefined
  readonly timeouts: Required<ConformanceTimeouts>
  readonly executorOptions: Partial<ExecutorOptions>
  readonly jobEnvAdditions: ReadonlyArray<string>
  readonly unavailable: Partial<Record<keyof Capabilities, string>>
  readonly staleRecord: ConformanceOptions["staleRecord"]
  /** Unique per suite run: the `flexec.test-run` label and the job id prefix. */
  readonly runId: string
  /** Read once from a launcher the factory built. */
  readonly capabilities: () => Promise<Capabilities>
}

/**
 * The suite executors' `backendSlackMs`: how long past the kill timeout a backend call may take before
 * the engine gives up on it; short enough that a broken backend shows as its broken promise, not as the
 * test's own timeout.
 */
export const SUITE_BACKEND_SLACK_MS = 3_000

/** The label every job of a run carries. */
export const testRunLabel = "flexec.test-run"

const defaultTimeouts: Required<ConformanceTimeouts> = {
  testMs: 20_000,
  eventMs: 10_000,
  graceMs: 300,
  killTimeoutMs: 300,
  startTimeoutMs: 15_000,
  shortStartTimeoutMs: 1_000,
  processGoneMs: 5_000,
  killAfterMs: 2_000,
  killSlackMs: 1_500,
  logsEndMs: 3_000
}

/** Builds a launcher from a factory, in the current scope. */
export const buildLauncher = (factory: LauncherFactory, context: LauncherContext): Effect.Effect<JobLauncher, unknown, Scope.Scope> =>
  Effect.suspend(() => {
    const out = factory(context)
    if (Effect.isEffect(out)) return out
    if (out !== null && typeof (out as PromiseLike<JobLauncher>).then === "function") {
      return Effect.tryPromise({ try: () => Promise.resolve(out as PromiseLike<JobLauncher>), catch: (e) => e })
    }
    return Effect.succeed(out as JobLauncher)
  })

/** A fresh temporary directory, removed with its scope. */
export const tempRoot = () =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "flxc-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** Resolves the options into the context every group takes. Throws if `capabilities` is passed. */
export const makeContext = (options: ConformanceOptions): ConformanceContext => {
  if ("capabilities" in (options as object)) {
    throw new Error("conformanceSuite: capabilities are read from the launcher (launcher.capabilities), never passed as an option")
  }
  const runId = crypto.randomBytes(4).toString("hex")
  let caps: Promise<Capabilities> | undefined
  const context: ConformanceContext = {
    name: options.name,
    makeLauncher: options.makeLauncher,
    workerCommand: options.workerCommand,
    timeouts: { ...defaultTimeouts, ...options.timeouts },
    executorOptions: options.executorOptions ?? {},
    jobEnvAdditions: options.jobEnvAdditions ?? [],
    unavailable: options.unavailable ?? {},
    staleRecord: options.staleRecord,
    runId,
    capabilities: () =>
      (caps ??= Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const root = yield* tempRoot()
            const launcher = yield* buildLauncher(options.makeLauncher, { runId, instanceId: `conf-${runId}-probe`, runtimeDir: path.join(root, "rt") })
            return { ...launcher.capabilities }
          })
        )
      ))
  }
  return context
}
