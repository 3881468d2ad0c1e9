/**
 * The per-test harness of the conformance suite: a fresh launcher, an executor
 * over it with the run's label, a workspace, an event log, and the leak checks
 * run after every test.
 *
 * @since 0.1.0
 */
import type {
  Capabilities,
  ClientExecutorService,
  ExecutorEvent,
  ExecutorOptions,
  JobHandle,
  JobLauncher,
  LaunchRequest,
  StartAppParams
} from "@flexec/core"
import { makeJobExecutor } from "@flexec/core"
import { Cause, Duration, Effect, Exit, Queue, Scope } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { mockClient } from "../mocks.js"
import type { ConformanceFixture } from "./program.js"
import { deployConformanceJob } from "./program.js"

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

const tempRoot = () =>
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

let testCounter = 0

/** The world of one test. */
export interface Harness {
  readonly common: ConformanceContext
  readonly launcher: JobLauncher
  readonly executor: ClientExecutorService
  readonly workspace: string
  readonly runtimeDir: string
  readonly instanceId: string
  /** Every event since the executor was built, in order. */
  readonly seen: ReadonlyArray<ExecutorEvent>
  /** Handles the launcher returned, by job id. */
  readonly handles: ReadonlyMap<string, JobHandle>
  /** Launch requests the launcher got, by job id. */
  readonly requests: ReadonlyMap<string, LaunchRequest>
  /** A fresh job id of this run. */
  readonly newJobId: (hint: string) => string
  /** Deploys a fixture and starts it (with the defaults of the suite). */
  readonly start: (
    fixture: ConformanceFixture,
    args?: ReadonlyArray<string | number>,
    params?: Partial<StartAppParams> & { readonly jobId?: string; readonly meta?: Readonly<Record<string, unknown>> }
  ) => Effect.Effect<string, unknown>
  /** Waits (bounded) for an event of `tag` for `jobId`. */
  readonly waitEvent: (tag: ExecutorEvent["_tag"], jobId: string) => Effect.Effect<ExecutorEvent, Error>
  /** Polls `check` until it returns true, failing with `what` after `ms` (default `eventMs`). */
  readonly until: (what: string, check: () => boolean | Effect.Effect<boolean, unknown>, ms?: number) => Effect.Effect<void, Error>
}

/** Options of one test. */
export interface HarnessOptions {
  readonly executorOptions?: Partial<ExecutorOptions>
  /** Skip the after-test leak checks (tests that check leaks themselves). */
  readonly skipLeakChecks?: boolean
}

/** Polls `check` until true, with a deadline. */
export const pollUntil = (
  what: string,
  check: () => boolean | Effect.Effect<boolean, unknown>,
  ms: number
): Effect.Effect<void, Error> =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    for (;;) {
      const out = check()
      const ok = Effect.isEffect(out) ? yield* Effect.orElseSucceed(out, () => false) : out
      if (ok) return
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out after ${ms} ms waiting for ${what}`))
      yield* Effect.sleep(Duration.millis(10))
    }
  })

/** Pids of OS processes whose initial environment carries `FLEXEC_JOB_ID=<prefix>...` (Linux `/proc`). */
export const processesOfRun = (jobIdPrefix: string): ReadonlyArray<number> => {
  let entries: Array<string>
  try {
    entries = fs.readdirSync("/proc")
  } catch {
    return []
  }
  const needle = `FLEXEC_JOB_ID=${jobIdPrefix}`
  const found: Array<number> = []
  for (const name of entries) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      const env = fs.readFileSync(`/proc/${name}/environ`, "latin1")
      if (env.split("\0").some((v) => v.startsWith(needle))) {
        // a zombie is gone for our purposes
        const stat = fs.readFileSync(`/proc/${name}/stat`, "latin1")
        if (!/\) Z /.test(stat)) found.push(Number(name))
      }
    } catch {
      // gone, or not ours
    }
  }
  return found
}

/** Pids of live OS processes whose initial environment carries exactly `FLEXEC_JOB_ID=<jobId>` (Linux `/proc`). */
export const processesOfJob = (jobId: string): ReadonlyArray<number> =>
  processesOfRun(jobId).filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(`FLEXEC_JOB_ID=${jobId}`)
    } catch {
      return false
    }
  })

/** The job id prefix of a run. */
export const jobPrefix = (runId: string) => `c${runId}-`

/** Wraps a launcher so the suite sees the requests and handles (other members delegate to the original). */
const recording = (launcher: JobLauncher, requests: Map<string, LaunchRequest>, handles: Map<string, JobHandle>): JobLauncher => {
  const wrapper = Object.create(launcher) as { -readonly [K in keyof JobLauncher]: JobLauncher[K] }
  wrapper.launch = (request) =>
    Effect.tap(
      Effect.suspend(() => {
        requests.set(request.jobId, request)
        return launcher.launch(request)
      }),
      (handle) => Effect.sync(() => void handles.set(request.jobId, handle))
    )
  return wrapper
}

/** The leak checks: nothing of this test is left registered, live, in `ch/`, or as an OS process. */
export const leakChecks = (h: {
  readonly common: ConformanceContext
  readonly launcher: JobLauncher
  readonly runtimeDir: string
  readonly capabilities: Capabilities
  readonly jobIds: ReadonlyArray<string>
}) =>
  Effect.gen(function* () {
    const running = (h.launcher as { readonly running?: () => number }).running
    if (typeof running === "function") {
      yield* pollUntil("the launcher to report no live job (running() === 0)", () => running.call(h.launcher) === 0, 2_000).pipe(
        Effect.mapError(() => new Error(`leak: the launcher still reports ${running.call(h.launcher)} live job(s) after the test`))
      )
    }
    const chDir = path.join(h.runtimeDir, "ch")
    const socketDirs = fs.existsSync(chDir) ? fs.readdirSync(chDir) : []
    if (socketDirs.length > 0) return yield* Effect.fail(new Error(`leak: socket directories left in ${chDir}: ${socketDirs.join(", ")}`))
    if (h.capabilities.processes === true && h.jobIds.length > 0) {
      const ids = new Set(h.jobIds)
      const ours = () =>
        processesOfRun(jobPrefix(h.common.runId)).filter((pid) => {
          try {
            const env = fs.readFileSync(`/proc/${pid}/environ`, "latin1").split("\0")
            return env.some((v) => v.startsWith("FLEXEC_JOB_ID=") && ids.has(v.slice("FLEXEC_JOB_ID=".length)))
          } catch {
            return false
          }
        })
      yield* pollUntil("this test's job processes to be gone", () => ours().length === 0, h.common.timeouts.processGoneMs).pipe(
        Effect.mapError(() => new Error(`leak: OS processes of this test's jobs still run: ${ours().join(", ")}`))
      )
    }
  })

/**
 * Runs one test body in a fresh harness, then the leak checks. Returns a
 * Promise for vitest; a failure carries the body's error.
 */
export const runTest = (
  common: ConformanceContext,
  body: (h: Harness) => Effect.Effect<void, unknown, Scope.Scope>,
  options: HarnessOptions = {}
): Promise<void> =>
  Effect.runPromiseExit(
    Effect.scoped(
      Effect.gen(function* () {
        const capabilities = yield* Effect.promise(() => common.capabilities())
        const root = yield* tempRoot()
        const workspace = path.join(root, "ws")
        const runtimeDir = path.join(root, "rt")
        fs.mkdirSync(workspace)
        const instanceId = `conf-${common.runId}-${++testCounter}`
        const launcher = yield* buildLauncher(common.makeLauncher, { runId: common.runId, instanceId, runtimeDir })
        const requests = new Map<string, LaunchRequest>()
        const handles = new Map<string, JobHandle>()
        const jobIds: Array<string> = []
        const execScope = yield* Scope.make()
        const t = common.timeouts
        const executor = yield* makeJobExecutor({
          client: mockClient(),
          graceMs: t.graceMs,
          killTimeoutMs: t.killTimeoutMs,
          startTimeoutMs: t.startTimeoutMs,
          queryTimeoutMs: 5_000,
          completionStepTimeoutMs: 5_000,
          backendSlackMs: SUITE_BACKEND_SLACK_MS,
          ...(common.workerCommand ? { command: common.workerCommand } : {}),
          ...common.executorOptions,
          ...options.executorOptions,
          labels: { ...common.executorOptions.labels, [testRunLabel]: common.runId },
          launcher: recording(launcher, requests, handles),
          runtimeDir,
          instanceId
        }).pipe(Scope.extend(execScope))
        const seen: Array<ExecutorEvent> = []
        const queue = yield* executor.subscribe.pipe(Scope.extend(execScope))
        yield* Queue.take(queue).pipe(
          Effect.tap((e) => Effect.sync(() => void seen.push(e))),
          Effect.forever,
          Effect.forkIn(execScope)
        )
        const until = (what: string, check: () => boolean | Effect.Effect<boolean, unknown>, ms = t.eventMs) => pollUntil(what, check, ms)
        let jobCounter = 0
        const newJobId = (hint: string) => {
          const id = `${jobPrefix(common.runId)}${testCounter}-${++jobCounter}-${hint}`.slice(0, 120)
          jobIds.push(id)
          return id
        }
        const harness: Harness = {
          common,
          launcher,
          executor,
          workspace,
          runtimeDir,
          instanceId,
          seen,
          handles,
          requests,
          newJobId,
          until,
          start: (fixture, args = [], params = {}) =>
            Effect.gen(function* () {
              const jobId = params.jobId ?? newJobId(fixture)
              const job = yield* deployConformanceJob({
                workspace,
                jobId,
                clientName: mockClient().clientName,
                fixture,
                args,
                ...(params.meta ? { meta: params.meta } : {})
              })
              const { meta: _meta, jobId: _id, ...rest } = params
              yield* executor.startApp({ jobId, jobMeta: job.meta, args: { workspace, set: job.set }, ...rest })
              return jobId
            }),
          waitEvent: (tag, jobId) =>
            until(`event ${tag} of ${jobId}`, () => seen.some((e) => e._tag === tag && e.jobId === jobId)).pipe(
              Effect.map(() => seen.find((e) => e._tag === tag && e.jobId === jobId)!)
            )
        }
        const result = yield* body(harness).pipe(
          Effect.disconnect,
          Effect.timeoutFail({ duration: Duration.millis(t.testMs), onTimeout: () => new Error(`the test body did not finish within ${t.testMs} ms`) }),
          Effect.exit
        )
        // cleanup: abort what still runs, then check nothing is left
        const cleanup = Effect.gen(function* () {
          const left = yield* executor.jobs
          yield* Effect.forEach(left, (j) => executor.abortApp(j.jobId), { concurrency: "unbounded", discard: true })
          const still = yield* executor.jobs
          if (still.length > 0) return yield* Effect.fail(new Error(`leak: executor.jobs still lists ${still.map((j) => j.jobId).join(", ")}`))
          yield* Scope.close(execScope, Exit.void)
          if (!options.skipLeakChecks) yield* leakChecks({ common, launcher, runtimeDir, capabilities, jobIds })
        }).pipe(
          Effect.disconnect,
          Effect.timeoutFail({
            duration: Duration.millis(t.eventMs + t.graceMs + t.killTimeoutMs + 1_000),
            onTimeout: () => new Error("cleanup: aborting the test's jobs and closing the executor did not finish in time")
          })
        )
        if (Exit.isFailure(result)) {
          yield* cleanup.pipe(Effect.ignore)
          return yield* Effect.failCause(result.cause)
        }
        yield* cleanup
      })
    )
  ).then((exit) => {
    if (Exit.isSuccess(exit)) return
    const err = Cause.squash(exit.cause)
    throw err instanceof Error ? err : new Error(typeof err === "object" ? JSON.stringify(err) : String(err))
  })

/** Registers a vitest test that runs in a fresh harness; skipped (by name) when `requires` is missing. */
export const vitestTimeout = (common: ConformanceContext) =>
  common.timeouts.testMs + common.timeouts.graceMs + common.timeouts.killTimeoutMs + 15_000
