/**
 * Parents that really die (SIGKILL of other processes) while their jobs run in
 * containers: the next parent of an instance reaps its orphans and leaves
 * another instance's alone (issue 8), or adopts them with their output
 * re-attached (the handle's `logs` and `<jobDir>/log.txt`).
 */
import type { ClientExecutorService } from "@flexec/core"
import { makeJobExecutor } from "@flexec/core"
import { conformanceEchoFixture, deployConformanceJob, mockClient } from "@flexec/testing"
import { Cause, Chunk, Duration, Effect, Either, Exit, Fiber, Scope, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { makeDockerClient } from "../src/DockerClient.js"
import { makeDockerLauncher } from "../src/index.js"
import { cleanupRoots, dockerReady, makeRequest, makeRoot, makeTestSocket, pollUntil, removeRunContainers, runId, runLabels, socketPath, testImage, testUser } from "./helpers.js"
import { spawnParent } from "./support/spawn-parent.js"
import type { SpawnedParent } from "./support/spawn-parent.js"

const ready = dockerReady("crash-reap.test.ts")
const client = makeDockerClient({ socketPath })
const parents: Array<SpawnedParent> = []
const scopes: Array<Scope.CloseableScope> = []

afterAll(async () => {
  for (const p of parents) await p.kill()
  for (const s of scopes) await run(Scope.close(s, Exit.void)).catch(() => undefined)
  await removeRunContainers()
  cleanupRoots()
})

/** One instance: its own workspace and runtime dir, one deployed job, a parent process running it. */
const startInstance = async (name: string, fixture: string) => {
  const root = makeRoot()
  const workspace = path.join(root, "ws")
  const runtimeDir = path.join(root, "rt")
  const instanceId = `test-${runId}-${name}`
  const jobId = `job-${name}`
  const job = await run(
    deployConformanceJob({ workspace, jobId, clientName: mockClient().clientName, fixture: fixture as typeof conformanceEchoFixture })
  )
  const parent = spawnParent({
    workspace,
    runtimeDir,
    instanceId,
    jobId,
    image: testImage,
    socketPath,
    job,
    client: mockClient(),
    labels: runLabels
  })
  parents.push(parent)
  return { workspace, runtimeDir, instanceId, jobId, jobDir: job.jobDir, parent }
}
type Instance = Awaited<ReturnType<typeof startInstance>>

/** Runs an Effect; a failure rejects with the whole cause, pretty-printed. */
const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> =>
  Effect.runPromiseExit(effect).then((exit) => {
    if (Exit.isSuccess(exit)) return exit.value
    throw new Error(Cause.pretty(exit.cause))
  })

const containersOf = (instanceId: string) => run(client.listByLabels({ "flexec.instance": instanceId }))

const isRunning = async (id: string) =>
  run(client.inspect(id).pipe(Effect.map((s) => s.running), Effect.catchAll(() => Effect.succeed(false))))

/** A new parent of `instance` (in this process), fully started (recovery done) when it resolves. */
const newExecutor = async (instance: Instance, recover: "reap" | "adopt"): Promise<{ executor: ClientExecutorService; scope: Scope.CloseableScope }> => {
  const scope = Effect.runSync(Scope.make())
  scopes.push(scope)
  const executor = await run(
    makeJobExecutor({
      client: mockClient(),
      runtimeDir: instance.runtimeDir,
      instanceId: instance.instanceId,
      labels: runLabels,
      launcher: makeDockerLauncher({ image: testImage, docker: { socketPath }, containerUser: testUser }),
      recover,
      graceMs: 300,
      killTimeoutMs: 300
    }).pipe(Scope.extend(scope))
  )
  return { executor, scope }
}

const socketDirs = (runtimeDir: string) => {
  const ch = path.join(runtimeDir, "ch")
  return fs.existsSync(ch) ? fs.readdirSync(ch) : []
}

describe.skipIf(!ready)("a parent SIGKILLed while its jobs run [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("the next parent's recover() reaps every orphan of its instance and leaves another instance's jobs alone", async () => {
    const [a, b] = await Promise.all([startInstance("a", "long-task"), startInstance("b", "long-task")])
    await Promise.all([a.parent.started(60_000), b.parent.started(60_000)])
    await Promise.all([a.parent.kill(), b.parent.kill()])

    // The orphans outlive their parents.
    const [[ca], [cb]] = await Promise.all([containersOf(a.instanceId), containersOf(b.instanceId)])
    expect(ca, "A's container").toBeDefined()
    expect(cb, "B's container").toBeDefined()
    expect(ca!.labels["flexec.job_id"]).toBe(a.jobId)
    expect(await isRunning(ca!.id)).toBe(true)
    expect(await isRunning(cb!.id)).toBe(true)
    expect(socketDirs(a.runtimeDir), "A's dead parent left its job's socket directory").toHaveLength(1)

    // A new parent of A: when it resolves, A's orphan is reaped.
    const { executor: ea, scope: sa } = await newExecutor(a, "reap")
    const recovered = await run(ea.recovered)
    expect(recovered.map((r) => [r.jobId, r.action])).toEqual([[a.jobId, "reaped"]])
    expect(await containersOf(a.instanceId), "A's containers, per the engine").toEqual([])
    expect(await run(client.inspect(ca!.id).pipe(Effect.flip, Effect.map((e) => e._tag === "DockerApiError" && e.statusCode))))
      .toBe(404)
    expect(socketDirs(a.runtimeDir), "A's socket directories").toEqual([])
    expect(await run(ea.jobs)).toEqual([])

    // B's job was not touched.
    const stateB = await run(client.inspect(cb!.id))
    expect(stateB.running).toBe(true)
    expect(stateB.labels["flexec.instance"]).toBe(b.instanceId)
    expect(socketDirs(b.runtimeDir)).toHaveLength(1)
    await run(Scope.close(sa, Exit.void))
    expect(await isRunning(cb!.id), "B's job after A's new parent closed").toBe(true)

    // B's own new parent reaps it.
    const { executor: eb, scope: sb } = await newExecutor(b, "reap")
    expect((await run(eb.recovered)).map((r) => [r.jobId, r.action])).toEqual([[b.jobId, "reaped"]])
    expect(await containersOf(b.instanceId)).toEqual([])
    expect(socketDirs(b.runtimeDir)).toEqual([])
    await run(Scope.close(sb, Exit.void))
  }, 120_000)

  it("an adopted job's output goes on: to the handle's logs, executor.logs(jobId) and <jobDir>/log.txt", async () => {
    const c = await startInstance("c", "long-task")
    await c.parent.started(60_000)
    const logFile = path.join(c.jobDir, "log.txt")
    // Started comes before the job's first line: wait until the first parent has written it
    await pollUntil("the first parent's log line", () =>
      fs.existsSync(logFile) && fs.readFileSync(logFile, "utf8").includes("long-task: task 1 running") ? true : undefined, 20_000)
    await c.parent.kill()
    const before = fs.readFileSync(logFile, "utf8")
    expect(before, "what the first parent wrote").toContain("long-task: task 1 running")

    const { executor, scope } = await newExecutor(c, "adopt")
    expect((await run(executor.recovered)).map((r) => [r.jobId, r.action])).toEqual([[c.jobId, "adopted"]])
    // Subscribed before the job prints (the stream also replays what came since the re-attach).
    const lines = await run(
      Stream.runCollect(executor.logs(c.jobId).pipe(Stream.takeUntil((l) => l.line.includes("task aborted (1)")))).pipe(Effect.forkIn(scope))
    )
    // The worker reconnects to its socket (within its reconnect window); then a request makes it print.
    await pollUntil("the adopted job to take abort_task", async () => {
      const r = await run(Effect.either(executor.abortTask(c.jobId)))
      return Either.isRight(r) ? true : undefined
    }, 15_000)
    const collected = await run(Fiber.join(lines).pipe(Effect.timeout("10 seconds")))
    const printed = Chunk.toReadonlyArray(collected)
    expect(printed.map((l) => l.line)).toContain("long-task: task aborted (1)")
    expect(printed.find((l) => l.line === "long-task: task aborted (1)")?.stream).toBe("stdout")
    await pollUntil("the line in log.txt", () => (fs.readFileSync(logFile, "utf8").includes("long-task: task aborted (1)") ? true : undefined), 10_000)
    const after = fs.readFileSync(logFile, "utf8")
    expect(after.startsWith(before), "log.txt is appended to, not rewritten").toBe(true)
    expect(fs.lstatSync(logFile).isFile()).toBe(true)

    await run(executor.abortApp(c.jobId))
    const outcome = await run(executor.awaitCompletion(c.jobId))
    expect(outcome.exit.lost).toBe(false)
    await run(Scope.close(scope, Exit.void))
    expect(await containersOf(c.instanceId)).toEqual([])
  }, 120_000)

  it("a log.txt the container replaced by a link is not followed when its output is re-attached", async () => {
    const root = makeRoot()
    const victim = path.join(root, "victim.txt")
    fs.writeFileSync(victim, "untouched\n")
    const socket = await makeTestSocket(path.join(root, "ch"))
    // A parent that "died": its scope is never closed while we recover.
    const deadParent = Effect.runSync(Scope.make())
    scopes.push(deadParent)
    const script = [
      `const fs = require("node:fs")`,
      `fs.unlinkSync("log.txt")`,
      `fs.symlinkSync(process.env.VICTIM, "log.txt")`,
      `fs.writeFileSync("planted", "")`,
      `setInterval(() => console.log("tick"), 50)`
    ].join("\n")
    const instanceId = `test-${runId}-link`
    const request = makeRequest({ root, instanceId, script, channel: socket.info, env: { VICTIM: victim } })
    const launcher = () => makeDockerLauncher({ image: testImage, docker: { socketPath }, containerUser: testUser })
    try {
      await run(launcher().launch(request).pipe(Scope.extend(deadParent)))
      await pollUntil("the container to plant its link", () => (fs.existsSync(path.join(request.paths.jobDir, "planted")) ? true : undefined))
      expect(fs.lstatSync(request.paths.logFile).isSymbolicLink()).toBe(true)

      const [job] = await run(launcher().recover!(instanceId))
      expect(job?.handle.logs, "the re-attached output still streams").toBeDefined()
      const ticks = await run(job!.handle.logs!.pipe(Stream.take(3), Stream.runCollect, Effect.timeout("10 seconds")))
      expect(Chunk.toReadonlyArray(ticks).map((l) => l.line)).toEqual(["tick", "tick", "tick"])
      expect(fs.readFileSync(victim, "utf8"), "the link's target").toBe("untouched\n")
      await run(job!.handle.terminate({ killAfter: Duration.seconds(1) }))
      await run(job!.handle.wait.pipe(Effect.timeout("30 seconds")))
      expect(fs.readFileSync(victim, "utf8"), "the link's target after the exit").toBe("untouched\n")
    } finally {
      await socket.close()
    }
  }, 60_000)
})
