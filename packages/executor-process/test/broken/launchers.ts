/**
 * Broken process backends: each the real `ProcessJobLauncher` with one promise
 * broken (recovery's negative paths, GPUs, the environment, claimed
 * capabilities), the conformance group and test that must catch it, and a
 * direct probe showing the misbehaviour (which the unbroken launcher passes).
 */
import type { JobExit, JobHandle, JobLauncher, RecoveredJob } from "@flexec/core"
import { Message } from "@flexec/core"
import type { Harness, LauncherContext, StaleRecordContext } from "@flexec/testing"
import { conformanceJobFacts, conformanceJobFixture, MockResourceManager, processesOfJob } from "@flexec/testing"
import { Duration, Effect, Option } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { ProcessJobLauncher } from "../../src/index.js"
import { writePidFile } from "../../src/internal/pidFile.js"
import { bootId, startTimeOf } from "../../src/internal/procfs.js"

/** The process backend of a test (as conformance.test.ts builds it). */
export const real = (context: LauncherContext) => ProcessJobLauncher.make({ runtimeDir: context.runtimeDir, killTimeoutMs: 300 })

/** The pid file a job of `instanceId` would have left, naming `pid` (the suite's staleRecord hook). */
export const staleRecord = ({ runtimeDir, instanceId, jobId, pid }: StaleRecordContext) => {
  writePidFile(runtimeDir, {
    version: 1,
    pid,
    pgid: pid,
    startTime: startTimeOf(pid) ?? "0",
    bootId: bootId(),
    jobId,
    instanceId,
    channelToken: "stale",
    channelDir: path.join(runtimeDir, "ch", "stale"),
    startedAt: Date.now()
  })
}

type Change = (launcher: ReturnType<typeof real>, context: LauncherContext) => Partial<JobLauncher>
const broken = (change: Change) => (context: LauncherContext): JobLauncher => {
  const launcher = real(context)
  return { ...launcher, ...change(launcher, context) }
}
const recovered = (f: (job: RecoveredJob) => RecoveredJob): Change => (l) => ({
  recover: (instanceId) => Effect.map(l.recover(instanceId), (jobs) => jobs.map(f))
})
const mapHandle = (f: (handle: JobHandle) => JobHandle) => recovered((job) => ({ ...job, handle: f(job.handle) }))

/** A probe: what it saw go wrong, or undefined. */
export type Probe = (h: Harness, make: (context: LauncherContext) => JobLauncher) => Effect.Effect<string | undefined, unknown>

const ask = (h: Harness, jobId: string, topic: string) =>
  h.executor.sendToJob({ jobId, channel: "test", topic, message: Message.make({}) }).pipe(Effect.map((m) => m.payload))
const startedJob = (h: Harness, flags: ReadonlyArray<string> = []) =>
  Effect.gen(function* () {
    const jobId = yield* h.start(conformanceJobFixture, flags)
    yield* h.waitEvent("Started", jobId)
    return jobId
  })
/** The probed launcher's recover, on the harness's own instance (whose live jobs left pid files). */
const recoverHere = (h: Harness, make: (context: LauncherContext) => JobLauncher) =>
  make({ runId: h.common.runId, instanceId: h.instanceId, runtimeDir: h.runtimeDir }).recover!(h.instanceId)

const recoverProbe = (what: "reap" | "vanish" | "stale" | "adopt"): Probe => (h, make) =>
  Effect.gen(function* () {
    if (what === "stale") {
      const unrelated = cp.spawn(process.execPath, ["-e", "setInterval(() => {}, 1 << 30)"], { stdio: "ignore", detached: true, env: {} })
      try {
        yield* h.until("the unrelated process", () => unrelated.pid !== undefined && fs.existsSync(`/proc/${unrelated.pid}`))
        staleRecord({ runId: h.common.runId, instanceId: h.instanceId, runtimeDir: h.runtimeDir, jobId: h.newJobId("stale"), pid: unrelated.pid! })
        const found = yield* recoverHere(h, make)
        return found.some((j) => Number(j.handle.info?.pid) === unrelated.pid) ? `recover() claimed the unrelated pid ${unrelated.pid}` : undefined
      } finally {
        unrelated.kill("SIGKILL")
      }
    }
    const jobId = yield* startedJob(h, what === "reap" ? ["stubborn"] : [])
    const job = (yield* recoverHere(h, make)).find((j) => j.jobId === jobId)
    if (job === undefined) return "recover() did not find a live job of the instance"
    if (what === "adopt") return job.channelToken === undefined ? "the recovered job carries no channel token: it cannot be adopted" : undefined
    if (what === "reap") {
      yield* job.handle.terminate({ killAfter: Duration.millis(300) })
      const gone = yield* Effect.either(h.until("the reaped job to die", () => h.handles.get(jobId)!.poll.pipe(Effect.map(Option.isSome)), 3_000))
      return gone._tag === "Left" ? "a SIGTERM-ignoring job the recovered handle terminated still runs 3 s later" : undefined
    }
    for (const pid of processesOfJob(jobId)) process.kill(pid, "SIGKILL")
    const exit: JobExit = yield* job.handle.wait.pipe(Effect.timeout(Duration.seconds(3)))
    return exit.lost ? undefined : `a recovered job killed behind the backend's back came out ${JSON.stringify(exit)}`
  })

const gpusProbe: Probe = (h) =>
  Effect.gen(function* () {
    const jobId = yield* h.start(conformanceJobFixture, [], { allocatedResource: { gpus: ["5"] }, token: "probe", resourceManager: new MockResourceManager() })
    yield* h.waitEvent("Started", jobId)
    const { env } = (yield* ask(h, jobId, conformanceJobFacts.topics.env)) as { env: Record<string, string> }
    return env.CUDA_VISIBLE_DEVICES === "5" ? undefined : `a job allocated GPU 5 saw CUDA_VISIBLE_DEVICES=${JSON.stringify(env.CUDA_VISIBLE_DEVICES)}`
  })

const envProbe: Probe = (h) =>
  Effect.gen(function* () {
    process.env.BROKEN_PROBE_CANARY = "x"
    try {
      const jobId = yield* startedJob(h)
      const { env } = (yield* ask(h, jobId, conformanceJobFacts.topics.env)) as { env: Record<string, string> }
      return "BROKEN_PROBE_CANARY" in env ? "the parent's BROKEN_PROBE_CANARY reached the job" : undefined
    } finally {
      delete process.env.BROKEN_PROBE_CANARY
    }
  })

const memoryProbe: Probe = (h) =>
  Effect.gen(function* () {
    if (h.launcher.capabilities.memoryLimit !== true) return undefined
    const jobId = yield* h.start("allocate-until-oom", [512], { meta: { resource_spec: { "site-1": { memory: "256Mi" } } } })
    const outcome = yield* h.executor.awaitCompletion(jobId)
    return outcome.exit.code === 77 ? "capabilities.memoryLimit is claimed, yet a job limited to 256Mi allocated 512 MiB and exited 77" : undefined
  })

/** One broken process backend. */
export interface BrokenProcess {
  readonly point: number
  readonly group: string
  readonly test: string
  readonly make: (context: LauncherContext) => JobLauncher
  readonly probe: Probe
}

/** Each broken process backend. */
export const brokenProcessLaunchers: Record<string, BrokenProcess> = {
  /** The allocation's GPUs never reach the job. */
  "gpus-ignored": {
    point: 5,
    group: "environment",
    test: "a job with GPUs sees exactly its allocation",
    make: broken((l) => ({ launch: (r) => l.launch({ ...r, gpus: [] }) })),
    probe: gpusProbe
  },
  /** The parent's environment reaches the job. */
  "env-leak-process": {
    point: 5,
    group: "environment",
    test: "the job's environment is exactly",
    make: broken((l) => ({ launch: (r) => l.launch({ ...r, env: { ...(process.env as Record<string, string>), ...r.env } }) })),
    probe: envProbe
  },
  /** A recovered job is only sent SIGTERM: a SIGTERM-ignoring orphan survives its reaping. */
  "recover-sigterm-only": {
    point: 8,
    group: "recovery",
    test: "SIGTERM-ignoring job left by a dead parent is reaped",
    make: broken(mapHandle((h) => ({ ...h, terminate: () => h.terminate({ killAfter: Duration.hours(1) }) }))),
    probe: recoverProbe("reap")
  },
  /** A recovered job that vanished is reported as a clean exit 0. */
  "recover-fabricates-clean-exit": {
    point: 8,
    group: "recovery",
    test: "killed behind the backend's back comes out lost",
    make: broken(
      mapHandle((h) => {
        const clean = (e: JobExit): JobExit => (e.lost ? { code: 0, signal: null, oomKilled: false, lost: false } : e)
        return { ...h, wait: Effect.map(h.wait, clean), poll: Effect.map(h.poll, Option.map(clean)) }
      })
    ),
    probe: recoverProbe("vanish")
  },
  /** recover claims any live pid a pid file names, without checking it is the job's process. */
  "recover-claims-stale-pid": {
    point: 8,
    group: "recovery",
    test: "a stale record whose pid now belongs to an unrelated process",
    make: broken((_l, context) => ({
      recover: (instanceId) =>
        Effect.sync(() => {
          const dir = path.join(context.runtimeDir, "pids")
          const jobs: Array<RecoveredJob> = []
          for (const file of fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(".json")) : []) {
            const record = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as { jobId: string; pid: number; instanceId: string }
            if (record.instanceId !== instanceId || !fs.existsSync(`/proc/${record.pid}`)) continue
            const kill = (sig: NodeJS.Signals) => Effect.sync(() => {
              try {
                process.kill(record.pid, sig)
              } catch {
                // gone
              }
            })
            const exit: JobExit = { code: null, signal: null, oomKilled: false, lost: true }
            const poll = Effect.sync(() => (fs.existsSync(`/proc/${record.pid}`) ? Option.none<JobExit>() : Option.some(exit)))
            const wait: Effect.Effect<JobExit> = Effect.flatMap(poll, (o) =>
              Option.isSome(o) ? Effect.succeed(o.value) : Effect.zipRight(Effect.sleep("100 millis"), Effect.suspend(() => wait))
            )
            jobs.push({
              jobId: record.jobId as never,
              instanceId,
              handle: {
                jobId: record.jobId as never,
                poll,
                wait,
                terminate: () => Effect.zipRight(kill("SIGTERM"), Effect.forkDaemon(Effect.zipRight(Effect.sleep("300 millis"), kill("SIGKILL")))),
                info: { pid: record.pid }
              }
            })
          }
          return jobs
        })
    })),
    probe: recoverProbe("stale")
  },
  /** Claims adopt, but keeps no channel token: every recovered job is reaped instead. */
  "adopt-without-token": {
    point: 7,
    group: "recovery",
    test: "keeps a dead parent's job: Recovered adopted",
    make: broken(recovered(({ channelToken: _t, channelDir: _d, ...job }) => job)),
    probe: recoverProbe("adopt")
  },
  /** Claims a memory limit a plain process does not have. */
  "claims-memory-limit-process": {
    point: 7,
    group: "outcomes",
    test: "a job over its memory limit",
    make: broken((l) => ({ capabilities: { ...l.capabilities, memoryLimit: true } })),
    probe: memoryProbe
  }
}
