/**
 * The per-test harness of the conformance suite: a fresh launcher, an executor
 * over it with the run's label, a workspace, an event log, and the leak checks
 * run after every test.
 *
 * @since 0.1.0
 */
import type { ExecutorEvent, JobHandle, JobLauncher, LaunchRequest, ClientExecutorService, ExecutorOptions, StartAppParams } from "@flexec/core"
import { makeJobExecutor } from "@flexec/core"
import { Cause, Duration, Effect, Exit, Queue, Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { delegating } from "../internal/delegate.js"
import { mockClient } from "../mocks.js"
import type { ConformanceContext } from "./context.js"
import { buildLauncher, SUITE_BACKEND_SLACK_MS, testRunLabel, tempRoot } from "./context.js"
import { pollUntil } from "./pollUntil.js"
import { jobPrefix } from "./processes.js"
import { leakChecks } from "./leakChecks.js"
import type { ConformanceFixture } from "./program.js"
import { deployConformanceJob } from "./program.js"

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

/**
 * Wraps a launcher so the suite sees the requests and handles; every other member
 * delegates to the original (a class-based launcher's getters and methods run on
 * the instance itself).
 */
const recording = (launcher: JobLauncher, requests: Map<string, LaunchRequest>, handles: Map<string, JobHandle>): JobLauncher =>
  delegating(launcher, {
    launch: (request: LaunchRequest) =>
      Effect.tap(
        Effect.suspend(() => {
          requests.set(request.jobId, request)
          return launcher.launch(request)
        }),
        (handle) => Effect.sync(() => void handles.set(request.jobId, handle))
      )
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

/** The vitest timeout of one suite test: the test's own bound, the cleanup's, and a margin. */
export const vitestTimeout = (common: ConformanceContext) =>
  common.timeouts.testMs + common.timeouts.graceMs + common.timeouts.killTimeoutMs + 15_000
