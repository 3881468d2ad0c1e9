/**
 * Recovery on the real cluster: a parent that really dies (SIGKILL of another
 * process) leaves its batch job running; the next parent of the instance reaps
 * it or adopts it (the worker reconnects, answers, and is aborted). Jobs of
 * another instance, and a foreign job whose name looks like ours, are never
 * touched.
 */
import { makeJobExecutor, Message } from "@flexec/core"
import type { ClientExecutorService } from "@flexec/core"
import { conformanceEchoFixture, deployConformanceJob, mockClient, waitUntil } from "@flexec/testing"
import { Effect, Either, Exit, Scope } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { SlurmJobLauncher } from "../src/index.js"
import { baseOptions, liveJobsNamed, processesOfJob, slurmConf, slurmReady, tempDir } from "./helpers.js"

const ready = slurmReady("recover.test.ts")
const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
// made only when the tests run (skipped files leave nothing in the temp dir)
const root = ready ? tempDir("flexec-slurm-recover-") : ""
const run = `${process.pid.toString(36)}${Date.now().toString(36)}`
let counter = 0

afterAll(() => {
  if (!ready) return
  // whatever a failing test left in the queue
  const left = liveJobsNamed(`flexec.rec-${run}-`).map((l) => l.split("|")[0]!)
  if (left.length > 0) cp.execFileSync("scancel", left, { env: { ...process.env, SLURM_CONF: slurmConf } })
  fs.rmSync(root, { recursive: true, force: true })
})

interface World {
  readonly workspace: string
  readonly runtimeDir: string
  readonly instanceId: string
  readonly jobId: string
}

const world = (): World => {
  const n = ++counter
  const dir = fs.mkdtempSync(path.join(root, `w${n}-`))
  fs.mkdirSync(path.join(dir, "ws"))
  return { workspace: path.join(dir, "ws"), runtimeDir: path.join(dir, "rt"), instanceId: `rec-${run}-${n}`, jobId: `job-${n}` }
}

/** A parent in its own process that starts the echo job of `w`, then is SIGKILLed once the job is Started. */
const parentDies = async (w: World, more: Record<string, unknown> = {}): Promise<void> => {
  const job = await Effect.runPromise(
    deployConformanceJob({ workspace: w.workspace, jobId: w.jobId, clientName: mockClient().clientName, fixture: conformanceEchoFixture })
  )
  const viteNode = path.join(path.dirname(require.resolve("vite-node/package.json")), "vite-node.mjs")
  const args = [w.workspace, w.runtimeDir, w.instanceId, w.jobId, JSON.stringify(baseOptions), JSON.stringify(job), JSON.stringify(mockClient()), JSON.stringify({}), JSON.stringify(more)]
  const parent = cp.spawn(process.execPath, [viteNode, path.join(here, "support", "parent.ts"), ...args], { stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  parent.stdout.on("data", (d: Buffer) => (output += d.toString()))
  parent.stderr.on("data", (d: Buffer) => (output += d.toString()))
  const exited = new Promise<void>((resolve) => parent.once("exit", () => resolve()))
  try {
    await waitUntil("the first parent to start its job", () => {
      if (parent.exitCode !== null) throw new Error(`the first parent exited ${parent.exitCode}: ${output}`)
      return output.includes("STARTED") ? true : undefined
    }, 60_000)
  } finally {
    parent.kill("SIGKILL")
    await exited
  }
}

/** The next parent of the instance, in this process. */
const nextParent = (w: World, recover: "reap" | "adopt", scope: Scope.Scope, more: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const launcher = yield* SlurmJobLauncher.makeEffect({ ...baseOptions, runtimeDir: w.runtimeDir, killTimeoutMs: 300 })
    const executor = yield* makeJobExecutor({ ...more, client: mockClient(), runtimeDir: w.runtimeDir, instanceId: w.instanceId, launcher, recover, graceMs: 300, killTimeoutMs: 300 }).pipe(
      Scope.extend(scope)
    )
    return { launcher, executor }
  })

const records = (w: World): ReadonlyArray<string> => {
  const dir = path.join(w.runtimeDir, "slurm", "jobs")
  return fs.existsSync(dir) ? fs.readdirSync(dir) : []
}

/** A loopback port free a moment ago. */
const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const server = net.createServer()
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const echo = (executor: ClientExecutorService, jobId: string, payload: Message.Payload) =>
  executor.sendToJob({ jobId, channel: "test", topic: "echo", message: Message.make(payload), timeout: "2 seconds" })

describe.skipIf(!ready)("slurm recovery [needs a Slurm cluster: skipped without one, fails under FLEXEC_REQUIRE_SLURM=1]", () => {
  it("a parent SIGKILLed mid-job leaves the batch job running; the next parent reaps it: cancelled, its processes gone, its record removed", async () => {
    const w = world()
    await parentDies(w)
    expect(liveJobsNamed(`flexec.${w.instanceId}.${w.jobId}`), "the job outlives its parent").toHaveLength(1)
    expect(records(w), "the dead parent's job record").toHaveLength(1)
    expect(fs.statSync(path.join(w.runtimeDir, "slurm", "jobs", records(w)[0]!)).mode & 0o777).toBe(0o600)
    expect(processesOfJob(w.jobId).length).toBeGreaterThan(0)
    await Effect.runPromise(
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const { executor } = yield* nextParent(w, "reap", scope)
        expect((yield* executor.recovered).map((r) => [r.jobId, r.action])).toEqual([[w.jobId, "reaped"]])
        expect(yield* executor.jobs).toEqual([])
        yield* Scope.close(scope, Exit.void)
      })
    )
    expect(liveJobsNamed(`flexec.${w.instanceId}.${w.jobId}`)).toEqual([])
    await waitUntil("the reaped job's processes to be gone", () => (processesOfJob(w.jobId).length === 0 ? true : undefined), 8_000)
    expect(records(w)).toEqual([])
  }, 120_000)

  it("a parent SIGKILLed mid-job: the next parent adopts the job; its worker reconnects and answers, and abort ends it (9)", async () => {
    const w = world()
    await parentDies(w)
    await Effect.runPromise(
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const { executor, launcher } = yield* nextParent(w, "adopt", scope)
        expect((yield* executor.recovered).map((r) => [r.jobId, r.action])).toEqual([[w.jobId, "adopted"]])
        expect((yield* executor.jobs).map((j) => j.jobId)).toEqual([w.jobId])
        // the worker reconnects to the same socket path within its reconnect window
        let reply = yield* Effect.either(echo(executor, w.jobId, { adopted: w.jobId }))
        const deadline = Date.now() + 10_000
        while (Either.isLeft(reply) && Date.now() < deadline) {
          yield* Effect.sleep(200)
          reply = yield* Effect.either(echo(executor, w.jobId, { adopted: w.jobId }))
        }
        expect(Either.getOrThrow(reply).payload).toEqual({ adopted: w.jobId })
        yield* executor.abortApp(w.jobId)
        expect((yield* executor.awaitCompletion(w.jobId)).returnCode).toBe(9)
        yield* Scope.close(scope, Exit.void)
        expect(launcher.running()).toBe(0)
      })
    )
    expect(liveJobsNamed(`flexec.${w.instanceId}.${w.jobId}`)).toEqual([])
    await waitUntil("the adopted job's processes to be gone", () => (processesOfJob(w.jobId).length === 0 ? true : undefined), 8_000)
    expect(records(w)).toEqual([])
  }, 120_000)

  it("over tls:// on a fixed port: a parent SIGKILLed mid-job, the next adopts it; the worker redials, pins the same certificate, answers; abort 9", async () => {
    const w = world()
    const port = await freePort()
    const more = { channel: { transport: "tcp", port, tls: true }, reconnectWindowMs: 30_000 }
    await parentDies(w, more)
    await Effect.runPromise(
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const { executor } = yield* nextParent(w, "adopt", scope, more)
        expect((yield* executor.recovered).map((r) => [r.jobId, r.action])).toEqual([[w.jobId, "adopted"]])
        let reply = yield* Effect.either(echo(executor, w.jobId, { adopted: w.jobId }))
        const deadline = Date.now() + 20_000
        while (Either.isLeft(reply) && Date.now() < deadline) {
          yield* Effect.sleep(200)
          reply = yield* Effect.either(echo(executor, w.jobId, { adopted: w.jobId }))
        }
        expect(Either.getOrThrow(reply).payload).toEqual({ adopted: w.jobId })
        yield* executor.abortApp(w.jobId)
        expect((yield* executor.awaitCompletion(w.jobId)).returnCode).toBe(9)
        yield* Scope.close(scope, Exit.void)
      })
    )
    expect(liveJobsNamed(`flexec.${w.instanceId}.${w.jobId}`)).toEqual([])
  }, 120_000)

  it("another instance's jobs, and a foreign job named like ours but without our labels, are never touched", async () => {
    const a = world()
    const b = world()
    const job = await Effect.runPromise(
      deployConformanceJob({ workspace: a.workspace, jobId: a.jobId, clientName: mockClient().clientName, fixture: conformanceEchoFixture })
    )
    // a job of b's name pattern that is not b's (no flexec comment): somebody else's
    const foreignName = `flexec.${b.instanceId}.${b.jobId}`
    const foreign = cp
      .execFileSync("sbatch", ["--parsable", "--export=NONE", `--job-name=${foreignName}`, "--mem=16M", "--output=/dev/null", "--wrap", "sleep 120"], {
        encoding: "utf8",
        env: { ...process.env, SLURM_CONF: slurmConf }
      })
      .trim()
    try {
      await Effect.runPromise(
        Effect.gen(function* () {
          const scopeA = yield* Scope.make()
          const { executor: ea } = yield* nextParent(a, "reap", scopeA)
          yield* ea.startApp({ jobId: a.jobId, jobMeta: job.meta, args: { workspace: a.workspace, set: job.set } })
          yield* Effect.promise(() =>
            waitUntil("a's job to start", () => Effect.runPromise(ea.checkStatus(a.jobId)).then((s) => (s === "started" ? true : undefined)), 30_000)
          )
          // b starts (recovering, reaping) and closes: a's job and the foreign job stay
          const scopeB = yield* Scope.make()
          const { executor: eb } = yield* nextParent(b, "reap", scopeB)
          expect(yield* eb.recovered).toEqual([])
          yield* Scope.close(scopeB, Exit.void)
          expect(liveJobsNamed(foreignName).map((l) => l.split("|")[0])).toEqual([foreign])
          expect(liveJobsNamed(`flexec.${a.instanceId}.${a.jobId}`)).toHaveLength(1)
          expect((yield* echo(ea, a.jobId, { still: "here" })).payload).toEqual({ still: "here" })
          yield* ea.abortApp(a.jobId)
          yield* Scope.close(scopeA, Exit.void)
        })
      )
      expect(liveJobsNamed(foreignName).map((l) => l.split("|")[0]), "the foreign job after both executors closed").toEqual([foreign])
    } finally {
      cp.execFileSync("scancel", [foreign], { env: { ...process.env, SLURM_CONF: slurmConf } })
    }
  }, 120_000)
})
