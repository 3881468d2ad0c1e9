/**
 * The Docker engine restarted or unreachable mid-job (issue 8), through a
 * unix-socket proxy the test owns in front of the engine (the shared dockerd is
 * never stopped: other tests use it). The proxy first forwards; "cut" destroys
 * every open connection (the executor's long-poll waits among them) and from
 * then on accepts and immediately drops every new one, counting them; "restore"
 * forwards again.
 *
 * While the engine is unreachable: a new `startApp` fails with
 * `BackendUnavailable`; a job whose container exited meanwhile and a job still
 * running both stay registered and Started, with no `Completed` (the executor
 * keeps asking, as the proxy counts). Once restored: the exited job completes
 * with its real outcome, the running one is still tracked, answers and aborts,
 * and a job whose container the engine lost during the outage (removed behind
 * the executor's back) completes as lost (127).
 */
import type { ClientExecutorService, ExecutorEvent } from "@flexec/core"
import { makeJobExecutor, Message } from "@flexec/core"
import { deployJob, fixtureFacts, MockResourceManager } from "@flexec/testing"
import { Effect, Exit, Fiber, Option, Queue, Scope } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { makeDockerClient } from "../src/DockerClient.js"
import { makeDockerLauncher } from "../src/index.js"
import { cleanupRoots, dockerReady, makeRoot, pollUntil, removeRunContainers, runId, runLabels, socketPath, testImage, testUser } from "./helpers.js"

const ready = dockerReady("engine-restart.test.ts")
const direct = makeDockerClient({ socketPath })

afterAll(async () => {
  await removeRunContainers()
  cleanupRoots()
})

/** A proxy in front of the engine that can cut every connection and refuse new ones until restored. */
const makeProxy = async (proxyPath: string) => {
  const open = new Set<net.Socket>()
  let mode: "forward" | "refuse" = "forward"
  let refused = 0
  const server = net.createServer((downstream) => {
    downstream.on("error", () => {})
    if (mode === "refuse") {
      refused++
      downstream.destroy()
      return
    }
    const upstream = net.connect(socketPath)
    upstream.on("error", () => {})
    open.add(downstream)
    open.add(upstream)
    downstream.pipe(upstream)
    upstream.pipe(downstream)
    downstream.on("close", () => (open.delete(downstream), upstream.destroy()))
    upstream.on("close", () => (open.delete(upstream), downstream.destroy()))
  })
  await new Promise<void>((resolve) => server.listen(proxyPath, resolve))
  return {
    get refused() {
      return refused
    },
    cut: () => {
      mode = "refuse"
      for (const s of open) s.destroy()
    },
    restore: () => void (mode = "forward"),
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)

describe.skipIf(!ready)("the engine unreachable mid-job [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("new launches fail with BackendUnavailable; running and exited jobs stay registered until the engine answers again, then complete with their real outcome", async () => {
    const root = makeRoot()
    const workspace = path.join(root, "ws")
    const runtimeDir = path.join(root, "rt")
    const proxyPath = path.join(root, "engine.sock")
    const proxy = await makeProxy(proxyPath)
    const scope = Effect.runSync(Scope.make())
    const events: Array<ExecutorEvent> = []
    try {
      const executor: ClientExecutorService = await run(
        makeJobExecutor({
          client: { clientName: "site-1" },
          launcher: makeDockerLauncher({ image: testImage, docker: { socketPath: proxyPath }, containerUser: testUser }),
          labels: runLabels,
          instanceId: `test-${runId}-restart`,
          runtimeDir,
          graceMs: 300,
          killTimeoutMs: 300
        }).pipe(Scope.extend(scope))
      )
      const queue = await run(executor.subscribe.pipe(Scope.extend(scope)))
      const listener = Effect.runFork(Queue.take(queue).pipe(Effect.tap((e) => Effect.sync(() => void events.push(e))), Effect.forever))
      const completedOf = (jobId: string) => events.filter((e) => e._tag === "Completed" && e.jobId === jobId)

      const managers = new Map<string, { rm: MockResourceManager; token: string }>()
      const start = (jobId: string, fixture: "crash-later" | "exit-on-abort" | "exit-with", ...args: ReadonlyArray<string | number>) =>
        Effect.gen(function* () {
          const job = yield* deployJob({ workspace, jobId, clientName: "site-1", fixture, args })
          const rm = new MockResourceManager()
          const { token } = yield* rm.checkResources({})
          const allocation = yield* rm.allocateResources({}, token)
          managers.set(jobId, { rm, token })
          return yield* executor.startApp({ jobId, jobMeta: job.meta, args: { workspace, set: job.set }, allocatedResource: allocation, token, resourceManager: rm })
        })
      const containerState = async (jobId: string) => {
        const [c] = await run(direct.listByLabels({ ...runLabels, "flexec.job_id": jobId }))
        return c?.state
      }

      // A exits 1 by itself some seconds after Started (while the engine is unreachable); B runs until aborted.
      await run(start("job-exits", "crash-later", 6_000))
      await run(start("job-runs", "exit-on-abort"))
      await run(start("job-lost", "exit-on-abort"))
      const ids = ["job-exits", "job-runs", "job-lost"]
      await pollUntil("the jobs Started", async () => {
        for (const id of ids) if ((await run(executor.getStatus(id))) !== 2) return undefined
        return true
      })

      proxy.cut()
      const refusedAtCut = proxy.refused

      // a new launch: BackendUnavailable, naming the engine's socket
      const launch = await run(start("job-new", "exit-with", 0).pipe(Effect.either))
      expect(launch._tag === "Left" && launch.left._tag).toBe("BackendUnavailable")
      if (launch._tag === "Left") expect(launch.left.message).toContain(proxyPath)

      // the engine loses the third job's container (asked of the engine directly)
      const [lost] = await run(direct.listByLabels({ ...runLabels, "flexec.job_id": "job-lost" }))
      await run(direct.remove(lost!.id))
      // the first job's container really exits (asked of the engine directly)...
      await pollUntil("job-exits' container to exit", async () => ((await containerState("job-exits")) === "exited" ? true : undefined), 30_000)
      // ... and the executor keeps asking the unreachable engine (several refused connections) ...
      await pollUntil("the executor to retry", () => (proxy.refused >= refusedAtCut + 6 ? true : undefined), 30_000)
      // ... without reporting either job finished
      expect((await containerState("job-runs")) ?? "gone").toBe("running")
      const listed = await run(executor.jobs)
      expect(listed.map((j) => [j.jobId, j.status]).sort()).toEqual([["job-exits", 2], ["job-lost", 2], ["job-runs", 2]])
      for (const id of ids) expect(completedOf(id), id).toEqual([])
      expect(await run(executor.checkStatus("job-exits"))).toBe("started")
      const pending = await run(executor.awaitCompletion("job-exits").pipe(Effect.timeout("20 millis"), Effect.option))
      expect(Option.isNone(pending)).toBe(true)
      expect(managers.get("job-exits")!.rm.freedTokens().size).toBe(0)

      // the engine answers again: the exited job completes with its real outcome
      proxy.restore()
      const outcome = await run(executor.awaitCompletion("job-exits").pipe(Effect.timeout("30 seconds")))
      expect(outcome).toMatchObject({ returnCode: 1, exit: { code: 1, signal: null, oomKilled: false, lost: false } })
      expect(completedOf("job-exits")).toHaveLength(1)
      // the lost container: the engine confirms it gone, the job is not left registered
      const gone = await run(executor.awaitCompletion("job-lost").pipe(Effect.timeout("30 seconds")))
      expect(gone).toMatchObject({ returnCode: 127, exit: { lost: true } })

      // the running job is still tracked: it answers, and abort ends it
      expect(await run(executor.getStatus("job-runs"))).toBe(2)
      const reply = await run(
        executor.sendToJob({ jobId: "job-runs", channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: Message.make({ after: "restore" }) })
      )
      expect(reply.payload).toEqual({ after: "restore" })
      await run(executor.abortApp("job-runs"))
      expect((await run(executor.awaitCompletion("job-runs"))).returnCode).toBe(9)

      // exactly one Completed per registered job (the refused launch included), each allocation freed once
      for (const jobId of [...ids, "job-new"]) {
        expect(completedOf(jobId), jobId).toHaveLength(1)
        const { rm, token } = managers.get(jobId)!
        expect(Object.fromEntries(rm.freedTokens()), jobId).toEqual({ [token]: 1 })
      }
      expect(await run(executor.jobs)).toEqual([])
      await run(Fiber.interrupt(listener))
      await run(Scope.close(scope, Exit.void))
      const left = await run(direct.listByLabels({ "flexec.instance": `test-${runId}-restart` }))
      expect(left.map((c) => `${c.names.join(",")} (${c.state})`)).toEqual([])
      expect(fs.readdirSync(path.join(runtimeDir, "ch"))).toEqual([])
    } finally {
      proxy.restore()
      await run(Scope.close(scope, Exit.void).pipe(Effect.timeout("60 seconds"), Effect.ignore))
      await proxy.close()
    }
  }, 120_000)
})
