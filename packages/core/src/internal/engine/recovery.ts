/**
 * Recovery on start: the jobs a previous parent of this instance left, from
 * the backend's `recover` (bounded, checked), each reaped (terminated, waited
 * for, its socket directory removed) or adopted (a channel on its old socket
 * directory, supervised from Started); then the sweep of socket directories
 * nobody adopted.
 */
import { Deferred, Effect, Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { RecoveryRecord } from "../../ClientExecutor.js"
import { ExecutorEvent } from "../../ClientExecutor.js"
import { BackendUnavailable } from "../../Errors.js"
import type { RecoveredJob } from "../../JobLauncher.js"
import { openJobChannel } from "../../protocol/ChannelServer.js"
import { ChannelTransport } from "../../protocol/ChannelTransport.js"
import { ClientStatus } from "../../Status.js"
import { BackendFault, boundedCall, describeValue, handleProblem } from "../backendGuard.js"
import type { Engine } from "./context.js"
import { now } from "./context.js"
import { makeEntry } from "./registry.js"
import { jobRequestHandler } from "./requests.js"
import { supervise } from "./supervise.js"

const record = (engine: Engine, recovered: Array<RecoveryRecord>, jobId: string, action: RecoveryRecord["action"]) =>
  Effect.map(now, (time) => {
    recovered.push({ jobId, action, time })
    engine.events.publish(ExecutorEvent.Recovered({ jobId, time, action }))
  })

const reapJob = (engine: Engine, recovered: Array<RecoveryRecord>, job: RecoveredJob) =>
  Effect.gen(function* () {
    const { killBound, killTimeout } = engine.settings
    const backend = engine.launcher.name
    yield* boundedCall(backend, `recovery: job ${job.jobId}: terminate`, () => job.handle.terminate({ killAfter: killTimeout }), killBound).pipe(
      Effect.ignore
    )
    yield* boundedCall(backend, `recovery: job ${job.jobId}: wait`, () => job.handle.wait, killBound).pipe(
      Effect.catchAll((e) => Effect.logWarning(`recovery: job ${job.jobId} did not confirm its exit: ${describeValue(e)}`))
    )
    if (job.channelDir) fs.rmSync(job.channelDir, { recursive: true, force: true })
    yield* record(engine, recovered, job.jobId, "reaped")
  })

const adoptJob = (engine: Engine, recovered: Array<RecoveryRecord>, job: RecoveredJob) =>
  Effect.gen(function* () {
    const entry = yield* makeEntry(
      { jobId: job.jobId, allocation: {}, token: "", resourceManager: undefined, rcFile: undefined, status: ClientStatus.Started, phase: "launched" },
      yield* now
    )
    const runAs = engine.launcher.runAs
    // Keep the directory: a container has it bind-mounted, and the worker reconnects to the same path.
    entry.channel = yield* openJobChannel({
      jobId: job.jobId,
      token: job.channelToken!,
      dir: job.channelDir!,
      reuseDir: true,
      maxFrameBytes: engine.settings.maxFrameBytes,
      helloTimeout: engine.settings.helloTimeout,
      onRequest: jobRequestHandler(engine, entry),
      ...(runAs ? { owner: runAs } : {})
    }).pipe(
      Effect.provideService(ChannelTransport, engine.transport),
      Scope.extend(entry.jobScope),
      Effect.mapError((e) => new BackendUnavailable({ backend: engine.launcher.name, detail: e.message }))
    )
    entry.handle = job.handle
    yield* Deferred.succeed(entry.launched, undefined)
    engine.registry.register(entry)
    yield* Effect.forkIn(supervise(engine, entry, job.handle, false), engine.jobsScope)
    yield* record(engine, recovered, job.jobId, "adopted")
  })

/** The backend's leftovers, bounded: a recover that hangs or throws fails the executor's start, it does not hang it. */
const leftovers = (engine: Engine): Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable> => {
  const { launcher, settings } = engine
  // called on the launcher: a class's method keeps its `this`
  return boundedCall(launcher.name, "recover", () => launcher.recover!(settings.instanceId), settings.stepTimeout).pipe(
    Effect.flatMap((value) =>
      Array.isArray(value)
        ? Effect.succeed(value as ReadonlyArray<RecoveredJob>)
        : Effect.fail(new BackendFault({ backend: launcher.name, call: "recover", detail: `returned ${describeValue(value)}, not an array of jobs` }))
    ),
    Effect.mapError((e) => (e instanceof BackendFault ? new BackendUnavailable({ backend: launcher.name, detail: e.message }) : e))
  )
}

/** Reaps or adopts what a previous parent left, then removes the socket directories nobody adopted. */
export const recoverJobs = (engine: Engine, recovered: Array<RecoveryRecord>): Effect.Effect<void, BackendUnavailable> =>
  Effect.gen(function* () {
    const { launcher, settings } = engine
    if (settings.recover !== "off" && launcher.recover && launcher.capabilities.recover) {
      const adopt = settings.recover === "adopt" && launcher.capabilities.adopt
      for (const job of yield* leftovers(engine)) {
        const problem = typeof job === "object" && job !== null ? handleProblem(job.handle) : "is not a recovered job"
        if (problem !== undefined) {
          yield* Effect.logError(
            `backend "${launcher.name}": recover ${problem} for job ${describeValue((job as { jobId?: unknown } | null)?.jobId)}; skipped`
          )
          continue
        }
        if (adopt && job.channelToken !== undefined && job.channelDir !== undefined && !engine.registry.has(job.jobId)) {
          yield* adoptJob(engine, recovered, job)
        } else {
          yield* reapJob(engine, recovered, job)
        }
      }
    }
    // Leftover socket directories of the previous parent that nobody adopted.
    const channels = path.join(engine.runtimeDir, "ch")
    const adoptedDirs = new Set(engine.registry.all().map((e) => e.channel?.info.dir))
    for (const name of fs.readdirSync(channels)) {
      const dir = path.join(channels, name)
      if (!adoptedDirs.has(dir)) fs.rmSync(dir, { recursive: true, force: true })
    }
  })
