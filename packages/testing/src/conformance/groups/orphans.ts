/**
 * Orphans for the recovery group: jobs left running by a parent that died, a
 * second launcher of their instance that records what its `recover` found, and a
 * kill behind the backend's back.
 *
 * @internal
 *
 * @since 0.1.0
 */
import type { JobExit, JobHandle, JobLauncher, LaunchRequest, RecoveredJob } from "@flexec/core"
import { ClientStatus, makeJobExecutor } from "@flexec/core"
import { Deferred, Effect, Exit, Option, Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { delegating } from "../../internal/delegate.js"
import { expect } from "../../internal/vitest.js"
import { mockClient } from "../../mocks.js"
import type { Harness } from "../harness.js"
import type { LauncherContext } from "../context.js"
import { buildLauncher, SUITE_BACKEND_SLACK_MS, testRunLabel } from "../context.js"
import { pollUntil } from "../pollUntil.js"
import { processesOfJob } from "../processes.js"
import type { ConformanceFixture } from "../program.js"
import { deployConformanceJob } from "../program.js"
import { exitOf } from "./probes.js"

/** A first parent whose scope the test keeps: its jobs outlive it, as processes outlive a parent that died. */
export interface Orphan {
  readonly jobId: string
  readonly context: LauncherContext
  /** The first parent's handle (still watching the job, as the OS does). */
  readonly real: JobHandle
  readonly base: Parameters<typeof makeJobExecutor>[0] extends infer O ? Omit<O & object, "launcher"> : never
  /** Ends the orphan as the test's cleanup: its first launcher's scope closes (and the dead parent's socket directory goes). */
  readonly dispose: Effect.Effect<void>
}

/**
 * Starts `fixture` under a first executor of instance `<test instance>-<suffix>`,
 * waits for Started, then drops that executor as a parent that died: it stops
 * watching, its executor closes, and the job keeps running (its socket directory
 * is set aside while the executor closes, so it survives as a dead parent's would).
 */
export const orphanOf = (h: Harness, suffix: string, fixture: ConformanceFixture, args: ReadonlyArray<string> = []) =>
  Effect.gen(function* () {
    const common = h.common
    const runtimeDir = path.join(h.runtimeDir, "..", `rt-${suffix}`)
    const instanceId = `${h.instanceId}-${suffix}`
    const context: LauncherContext = { runId: common.runId, instanceId, runtimeDir }
    const jobId = h.newJobId(`orphan-${suffix}`)
    const base = {
      client: mockClient(),
      runtimeDir,
      instanceId,
      graceMs: common.timeouts.graceMs,
      killTimeoutMs: common.timeouts.killTimeoutMs,
      startTimeoutMs: common.timeouts.startTimeoutMs,
      backendSlackMs: SUITE_BACKEND_SLACK_MS,
      ...(common.workerCommand ? { command: common.workerCommand } : {}),
      ...common.executorOptions,
      labels: { ...common.executorOptions.labels, [testRunLabel]: common.runId }
    }
    const detached = yield* Scope.make()
    let channelDir: string | undefined
    const dispose = Effect.suspend(() => {
      if (channelDir !== undefined) fs.rmSync(channelDir, { recursive: true, force: true })
      return Scope.close(detached, Exit.void)
    })
    yield* Effect.addFinalizer(() => dispose)
    const drop = yield* Deferred.make<JobExit>()
    let real: JobHandle | undefined
    const first = yield* buildLauncher(common.makeLauncher, context).pipe(Scope.extend(detached))
    const dropping: JobLauncher = delegating(first, {
      launch: (request: LaunchRequest) =>
        first.launch(request).pipe(
          Scope.extend(detached),
          Effect.map((handle): JobHandle => {
            real = handle
            channelDir = request.channel.dir
            return { jobId: handle.jobId, poll: Effect.succeedNone, wait: Deferred.await(drop), terminate: () => Effect.void }
          })
        )
    })
    const scope1 = yield* Scope.make()
    const e1 = yield* makeJobExecutor({ ...base, launcher: dropping }).pipe(Scope.extend(scope1))
    const job = yield* deployConformanceJob({ workspace: h.workspace, jobId, clientName: mockClient().clientName, fixture, args })
    yield* e1.startApp({ jobId, jobMeta: job.meta, args: { workspace: h.workspace, set: job.set } })
    yield* pollUntil("the orphan to start", () => e1.getStatus(jobId).pipe(Effect.map((s) => s === ClientStatus.Started)), common.timeouts.eventMs)
    const aside = `${channelDir!}.aside`
    fs.renameSync(channelDir!, aside)
    yield* Deferred.succeed(drop, exitOf(null, null, true))
    yield* e1.awaitCompletion(jobId)
    yield* Scope.close(scope1, Exit.void)
    fs.renameSync(aside, channelDir!)
    expect(Option.isNone(yield* real!.poll), "suite: the orphan still runs after its parent dropped it").toBe(true)
    return { jobId, context, real: real!, base, dispose } as Orphan
  })

/** A second launcher of the orphan's instance, and what its `recover` found. */
export const recoverWith = (h: Harness, orphan: Pick<Orphan, "context">) =>
  Effect.gen(function* () {
    const launcher = yield* buildLauncher(h.common.makeLauncher, orphan.context)
    const found: Array<RecoveredJob> = []
    const recording: JobLauncher = delegating(launcher, {
      recover: (id: string) =>
        launcher.recover ? launcher.recover(id).pipe(Effect.tap((jobs) => Effect.sync(() => void found.push(...jobs)))) : Effect.succeed([])
    })
    return { launcher: recording, found }
  })

/** Kills every OS process of `jobId` with SIGKILL, behind the backend's back. */
export const killBehindTheBack = (jobId: string) =>
  Effect.sync(() => {
    for (const pid of processesOfJob(jobId)) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // gone
      }
    }
  })
