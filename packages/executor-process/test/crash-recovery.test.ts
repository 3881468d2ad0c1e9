/**
 * Recovery after a real parent crash: a flexec parent runs in a process of its
 * own (test/support/parent.mjs), starts jobs, and is SIGKILLed. Its jobs lead
 * their own process groups and keep running; a new executor of the same
 * instance reaps them (grandchildren included) or adopts them, and never
 * touches another instance's job.
 */
import { describe, expect, it } from "@effect/vitest"
import type { JobLauncher, RecoveredJob } from "@flexec/core"
import { ClientStatus, makeJobExecutor, Message } from "@flexec/core"
import { deployJob, fixtureFacts } from "@flexec/testing"
import { Effect, Exit, Schedule, Scope } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { ProcessJobExecutor, ProcessJobLauncher } from "../src/index.js"
import { eventually, isDead } from "./helpers.js"
import { crash, ensureBuilt, killAll, startParent } from "./support/crashParent.js"
import type { ParentConfig } from "./support/crashParent.js"

const clientName = "site-1"
const killTimeoutMs = 500
/** The jobs' reconnect window: longer than the gap between the crash and the new parent. */
const jobEnv = { FLEXEC_RECONNECT_MS: "20000" }

beforeAll(() => ensureBuilt(), 180_000)
afterAll(() => killAll())

/** A temporary root (workspace and runtime directories), removed with the scope; every tracked group is killed first. */
const makeRoot = Effect.acquireRelease(
  Effect.sync(() => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "fxcr-"))
    fs.mkdirSync(path.join(root, "ws"))
    return root
  }),
  (root) =>
    Effect.sync(() => {
      killAll()
      fs.rmSync(root, { recursive: true, force: true })
    })
)

/** Deploys `spawn-grandchild` jobs and the config of a parent that starts them. */
const parentConfig = (root: string, instanceId: string, jobIds: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const workspace = path.join(root, "ws")
    const jobs = yield* Effect.forEach(jobIds, (jobId) =>
      deployJob({ workspace, jobId, clientName, fixture: "spawn-grandchild" }).pipe(
        Effect.map((job) => ({ jobId, meta: job.meta, set: job.set }))
      )
    )
    const config: ParentConfig = { runtimeDir: path.join(root, `rt-${instanceId}`), instanceId, clientName, workspace, env: jobEnv, jobs }
    return config
  })

/** A loopback port free a moment ago (bound to 0, then closed). */
const freePort = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen({ host: "127.0.0.1", port: 0 }, () => {
    const port = (server.address() as net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

const grandchildOf = (root: string, jobId: string) =>
  eventually(`the grandchild of ${jobId}`, () => {
    const file = path.join(root, "ws", jobId, "grandchild.pid")
    return fs.existsSync(file) ? Number(fs.readFileSync(file, "utf8")) : undefined
  })

const pidFile = (config: ParentConfig, jobId: string) => path.join(config.runtimeDir, "pids", `${jobId}.json`)
const socketDirs = (config: ParentConfig) => {
  const dir = path.join(config.runtimeDir, "ch")
  return fs.existsSync(dir) ? fs.readdirSync(dir) : []
}
const leadsItsGroup = (pid: number) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]) === pid
}

/** A process launcher that records what `recover` found. */
const recordingLauncher = (runtimeDir: string, found: Array<RecoveredJob>): JobLauncher => {
  const real = ProcessJobLauncher.make({ runtimeDir, killTimeoutMs })
  return {
    ...real,
    recover: (instanceId) => real.recover(instanceId).pipe(Effect.tap((jobs) => Effect.sync(() => void found.push(...jobs))))
  }
}

describe("a parent killed with SIGKILL", () => {
  it.scopedLive(
    "reap: the new parent of the instance kills every orphan and its grandchildren, removes their files, and leaves another instance's job alone",
    () =>
      Effect.gen(function* () {
        const root = yield* makeRoot
        const a = yield* parentConfig(root, "inst-a", ["job-a1", "job-a2"])
        const b = yield* parentConfig(root, "inst-b", ["job-b1"])
        const [parentA, parentB] = yield* Effect.all([startParent(a), startParent(b)], { concurrency: 2 })
        const orphans = [...parentA.jobs, ...parentB.jobs].map((j) => j.pid)
        const grandchildren = yield* Effect.forEach([...a.jobs, ...b.jobs], (j) => grandchildOf(root, j.jobId))

        yield* Effect.all([crash(parentA), crash(parentB)], { concurrency: 2 })
        for (const pid of [...orphans, ...grandchildren]) expect(isDead(pid), `${pid} outlives its parent`).toBe(false)
        for (const pid of orphans) expect(leadsItsGroup(pid)).toBe(true)
        expect(socketDirs(a)).toHaveLength(2)
        // a pid file of the other instance found in this instance's runtime directory: never signalled
        fs.copyFileSync(pidFile(b, "job-b1"), pidFile(a, "job-b1"))

        const found: Array<RecoveredJob> = []
        yield* makeJobExecutor({
          client: { clientName },
          runtimeDir: a.runtimeDir,
          instanceId: a.instanceId,
          recover: "reap",
          killTimeoutMs,
          launcher: recordingLauncher(a.runtimeDir, found)
        })
        expect(found.map((j) => j.jobId).sort()).toEqual(["job-a1", "job-a2"])
        const [a1, a2] = parentA.jobs.map((j) => j.pid)
        const [gcA1, gcA2, gcB1] = grandchildren
        yield* eventually("the orphans and their grandchildren to be dead", () => [a1!, a2!, gcA1!, gcA2!].every(isDead), 5_000)
        expect(fs.existsSync(pidFile(a, "job-a1")) || fs.existsSync(pidFile(a, "job-a2"))).toBe(false)
        expect(socketDirs(a)).toEqual([])
        expect(fs.existsSync(pidFile(a, "job-b1")), "the copied pid file of another instance is dropped").toBe(false)

        // the other instance's job and its files are untouched
        const b1 = parentB.jobs[0]!.pid
        expect(isDead(b1)).toBe(false)
        expect(isDead(gcB1!)).toBe(false)
        expect(fs.existsSync(pidFile(b, "job-b1"))).toBe(true)
        expect(socketDirs(b)).toHaveLength(1)

        // ... until a new parent of that instance reaps it
        yield* ProcessJobExecutor.make({ client: { clientName }, runtimeDir: b.runtimeDir, instanceId: b.instanceId, recover: "reap", killTimeoutMs })
        yield* eventually("the other instance's orphan to be dead", () => isDead(b1) && isDead(gcB1!), 5_000)
        expect(fs.existsSync(pidFile(b, "job-b1"))).toBe(false)
        expect(socketDirs(b)).toEqual([])
      }),
    60_000
  )

  it.scopedLive(
    "adopt: the orphan keeps running, is listed Started, answers getRunInfo and sendToJob, and abortApp ends it with 9",
    () =>
      Effect.gen(function* () {
        const root = yield* makeRoot
        const a = yield* parentConfig(root, "inst-adopt", ["job-x"])
        const parent = yield* startParent(a)
        const pid = parent.jobs[0]!.pid
        const grandchild = yield* grandchildOf(root, "job-x")
        yield* crash(parent)
        expect(isDead(pid)).toBe(false)

        const executor = yield* ProcessJobExecutor.make({
          client: { clientName },
          runtimeDir: a.runtimeDir,
          instanceId: a.instanceId,
          recover: "adopt",
          graceMs: 200,
          killTimeoutMs
        })
        expect(isDead(pid), "an adopted job is not killed").toBe(false)
        expect((yield* executor.jobs).map((j) => ({ jobId: j.jobId, status: j.status }))).toEqual([{ jobId: "job-x", status: ClientStatus.Started }])
        expect(yield* executor.checkStatus("job-x")).toBe("started")
        // the worker reconnects to the same socket path with its token (retrying up to 1 s apart)
        const info = yield* executor.getRunInfo("job-x").pipe(
          Effect.retry(Schedule.spaced("50 millis")),
          Effect.timeout("15 seconds")
        )
        expect(info).toBeTypeOf("object")
        const reply = yield* executor.sendToJob({
          jobId: "job-x",
          channel: fixtureFacts.channel,
          topic: fixtureFacts.echoTopic,
          message: Message.make({ hello: "adopted" })
        })
        expect(reply.payload).toEqual({ hello: "adopted" })

        yield* executor.abortApp("job-x")
        const outcome = yield* executor.awaitCompletion("job-x")
        expect(outcome.returnCode).toBe(9)
        expect(isDead(pid)).toBe(true)
        yield* eventually("the adopted job's grandchild to be dead", () => isDead(grandchild), 5_000)
        expect(fs.existsSync(pidFile(a, "job-x"))).toBe(false)
        expect(yield* executor.jobs).toEqual([])
      }),
    60_000
  )
  it.scopedLive(
    "adopt over tls:// on one fixed port: a new parent presents the pinned certificate, both jobs reconnect to it and answer",
    () =>
      Effect.gen(function* () {
        const root = yield* makeRoot
        const port = yield* freePort
        const channel = { transport: "tcp" as const, port, tls: true }
        const a = { ...(yield* parentConfig(root, "inst-tls", ["job-t1", "job-t2"])), channel }
        const parent = yield* startParent(a)
        yield* crash(parent)
        for (const job of parent.jobs) expect(isDead(job.pid)).toBe(false)

        const executor = yield* ProcessJobExecutor.make({
          client: { clientName },
          runtimeDir: a.runtimeDir,
          instanceId: a.instanceId,
          recover: "adopt",
          graceMs: 200,
          killTimeoutMs,
          channel
        })
        expect((yield* executor.jobs).map((j) => j.jobId).sort()).toEqual(["job-t1", "job-t2"])
        for (const jobId of ["job-t1", "job-t2"]) {
          // the worker redials tls://127.0.0.1:<port>, checks the pin, says hello with its token
          const reply = yield* executor
            .sendToJob({ jobId, channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: Message.make({ hello: jobId }), timeout: 2_000 })
            .pipe(Effect.retry(Schedule.spaced("100 millis")), Effect.timeout("20 seconds"))
          expect(reply.payload).toEqual({ hello: jobId })
        }
        for (const jobId of ["job-t1", "job-t2"]) {
          yield* executor.abortApp(jobId)
          expect((yield* executor.awaitCompletion(jobId)).returnCode).toBe(9)
        }
        for (const job of parent.jobs) expect(isDead(job.pid)).toBe(true)
      }),
    90_000
  )

  // Regression: close() used to hang here (the abort fiber inherited the finalizer's
  // uninterruptibility, so the grace-period timeout could never fire).
  it.scopedLive(
    "closing the new parent before the adopted worker reconnected ends the job",
    () =>
      Effect.gen(function* () {
        const root = yield* makeRoot
        const a = yield* parentConfig(root, "inst-close", ["job-c"])
        const parent = yield* startParent(a)
        const pid = parent.jobs[0]!.pid
        yield* crash(parent)
        const scope = yield* Scope.make()
        yield* ProcessJobExecutor.make({
          client: { clientName },
          runtimeDir: a.runtimeDir,
          instanceId: a.instanceId,
          recover: "adopt",
          graceMs: 200,
          killTimeoutMs
        }).pipe(Scope.extend(scope))
        // disconnected: a hanging close is left behind (the root's release kills the job) instead of hanging the test
        const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.disconnect, Effect.timeout("5 seconds"), Effect.either)
        expect(closed._tag, "close() returns").toBe("Right")
        yield* eventually("the adopted job to be dead", () => isDead(pid), 5_000)
      }),
    60_000
  )
})
