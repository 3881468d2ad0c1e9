/**
 * Recovering a restarted parent's jobs from their pid files: a file is trusted
 * only when its process is still that job's (boot, start time, group, environ).
 */
import { Duration, Effect, Option, Ref, Schema } from "effect"
import * as path from "node:path"
import { defaultRuntimeDir, JobId } from "./core.js"
import type { BackendUnavailable, JobExit, JobHandle, RecoveredJob } from "./core.js"
import { signalGroup } from "./group.js"
import type { ProcessGroup } from "./group.js"
import { readPidFiles, removePidFile } from "./pidFile.js"
import type { PidFile } from "./pidFile.js"
import { bootId, environValue, isAlive, readStat } from "./procfs.js"
import { makeTerminate } from "./terminate.js"

/** Liveness polling of recovered jobs (not our children: no exit event). */
const recoveredPollInterval = Duration.millis(200)


const lostExit: JobExit = { code: null, signal: null, oomKilled: false, lost: true }

/** Why a pid file does not describe a live job of `instanceId`, or `undefined` when it does. */
const pidFileProblem = (file: string, content: PidFile, instanceId: string): string | undefined => {
  if (content.instanceId !== instanceId) return "another instance"
  if (path.basename(file) !== `${content.jobId}.json` || !Schema.is(JobId)(content.jobId)) return "job id mismatch"
  if (content.pgid !== content.pid) return "the job does not lead its group"
  if (content.bootId !== bootId()) return "another boot"
  const stat = readStat(content.pid)
  if (stat === undefined || stat.state === "Z" || stat.state === "X") return "not running"
  if (stat.startTime !== content.startTime) return "pid reused"
  if (stat.pgrp !== content.pgid) return "left its group"
  if (environValue(content.pid, "FLEXEC_JOB_ID") !== content.jobId) return "not this job's process"
  const instance = environValue(content.pid, "FLEXEC_INSTANCE_ID")
  if (instance !== undefined && instance !== instanceId) return "another instance's process"
  return undefined
}

const recoveredHandle = (content: PidFile, file: string, killTimeout: Duration.Duration, terminating: Ref.Ref<boolean>): JobHandle => {
  const group: ProcessGroup = { pgid: content.pgid, leaderStartTime: content.startTime }
  const poll: Effect.Effect<Option.Option<JobExit>> = Effect.sync(() => {
    if (isAlive(content.pid, content.startTime)) return Option.none()
    // as a launched job's release does: what the job left in its group goes with it
    // (signalGroup refuses if the leader's pid was taken by another process)
    signalGroup(group, "SIGKILL")
    removePidFile(file)
    return Option.some(lostExit)
  })
  const wait: Effect.Effect<JobExit> = Effect.flatMap(poll, (exit) =>
    Option.isSome(exit) ? Effect.succeed(exit.value) : Effect.zipRight(Effect.sleep(recoveredPollInterval), wait)
  )
  return {
    jobId: content.jobId as JobId,
    poll,
    wait: Effect.suspend(() => wait),
    terminate: makeTerminate(group, killTimeout, terminating, Effect.forkDaemon),
    info: { pid: content.pid, pgid: content.pgid }
  }
}

/**
 * The backend's `recover`: the live jobs of `instanceId` its pid files under the
 * runtime dir describe (a pid file that does not is removed), with handles that
 * poll the process (it is not our child: no exit event).
 */
export const recover = (options: { readonly runtimeDir: string | undefined; readonly killTimeout: Duration.Duration }) => (instanceId: string): Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable> =>
  Effect.gen(function* () {
    const runtimeDir = path.resolve(options.runtimeDir ?? defaultRuntimeDir("process", instanceId))
    const found: Array<RecoveredJob> = []
    for (const entry of readPidFiles(runtimeDir)) {
      const content = entry.content
      if (content._tag === "Left" || pidFileProblem(entry.file, content.right, instanceId) !== undefined) {
        removePidFile(entry.file)
        continue
      }
      const job = content.right
      const terminating = yield* Ref.make(false)
      found.push({
        jobId: job.jobId as JobId,
        instanceId: job.instanceId,
        handle: recoveredHandle(job, entry.file, options.killTimeout, terminating),
        channelToken: job.channelToken,
        channelDir: job.channelDir
      })
    }
    return found
  })
