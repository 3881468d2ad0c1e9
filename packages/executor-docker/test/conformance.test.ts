/**
 * The conformance suite of @flexec/testing against DockerJobLauncher on the
 * real engine (image flexec-node:test, the worker fixture as `main.js`, run by
 * the backend's default command `node {appDir}/main.js`).
 *
 * Capabilities are the backend's own. None of the suite's groups exercises
 * `gpus` (this machine has no GPU). The suite's recovery group tests
 * `recover: "reap"` only, and its dropped parent (an executor whose scope is
 * closed) removes the job's socket directory, which a bind-mounting backend
 * cannot survive; so `adopt` is tested here with a parent that really dies
 * (SIGKILL of another process).
 *
 * Leak checks beyond the suite's per-test ones: when each test's launcher is
 * released, no socket directory is left under its runtime dir (the recovery
 * test's second runtime dir included); after the suite, no container labelled
 * with this run is left (asked of the engine).
 */
import { makeJobExecutor, Message } from "@flexec/core"
import {
  conformanceEchoFixture,
  conformanceSuite,
  deployConformanceJob,
  mockClient,
  runConformanceTest,
  testRunLabel
} from "@flexec/testing"
import { Effect, Either, Exit, Scope } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { makeDockerClient } from "../src/DockerClient.js"
import { makeDockerLauncher } from "../src/index.js"
import { dockerReady, socketPath, testImage, testUser } from "./helpers.js"

const ready = dockerReady("conformance.test.ts")
const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
const launcher = () => makeDockerLauncher({ image: testImage, docker: { socketPath }, containerUser: testUser })
const client = makeDockerClient({ socketPath })

/** Socket directories found under a runtime dir when its launcher was released. */
const leftSocketDirs: Array<string> = []

const runLabel = (runId: string) => ({ "flexec.test-run": runId })
const containersOf = (runId: string) => Effect.runPromise(client.listByLabels(runLabel(runId)))

describe.skipIf(!ready)("docker conformance [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  const common = conformanceSuite({
    name: "docker",
    makeLauncher: ({ runtimeDir }) =>
      Effect.acquireRelease(
        Effect.sync(launcher),
        () =>
          Effect.sync(() => {
            const ch = path.join(runtimeDir, "ch")
            if (fs.existsSync(ch)) for (const name of fs.readdirSync(ch)) leftSocketDirs.push(path.join(ch, name))
          })
      ),
    // Short enough for a few dozen containers; `docker stop` rounds the kill timeout up to whole seconds.
    timeouts: { graceMs: 300, killTimeoutMs: 300, startTimeoutMs: 15_000, shortStartTimeoutMs: 1_500, testMs: 30_000 },
    // the engine sets HOSTNAME; PATH and HOME are the image's (docs: executor-docker README)
    jobEnvAdditions: ["HOSTNAME", "PATH", "HOME"],
    // a GPU job's DeviceRequests need a GPU: claimed, but not exercised here (validate.test.ts checks the request)
    unavailable: { gpus: "this machine has no GPU" }
  })

  afterAll(async () => {
    // Whatever a failing test left: removed, so the engine stays clean (the test below reports it).
    const left = await containersOf(common.runId).catch(() => [])
    await Effect.runPromise(Effect.forEach(left, (c) => Effect.ignore(client.remove(c.id)), { discard: true }))
  })

  describe("adopt (beyond the suite)", () => {
    it("a job whose parent was SIGKILLed is adopted by the next executor: it answers, and abort ends it", () =>
      runConformanceTest(common, (h) =>
        Effect.gen(function* () {
          const runtimeDir = path.join(h.runtimeDir, "..", "rt-adopt")
          const instanceId = `${h.instanceId}-adopt`
          const labels = { [testRunLabel]: common.runId }
          const jobId = h.newJobId("adoptee")
          const job = yield* deployConformanceJob({ workspace: h.workspace, jobId, clientName: mockClient().clientName, fixture: conformanceEchoFixture })
          // The first parent, in its own process (vite-node runs the TypeScript source).
          const viteNode = path.join(path.dirname(require.resolve("vite-node/package.json")), "vite-node.mjs")
          const args = [h.workspace, runtimeDir, instanceId, jobId, testImage, socketPath, JSON.stringify(job), JSON.stringify(mockClient()), JSON.stringify(labels)]
          const parent = yield* Effect.acquireRelease(
            Effect.sync(() => cp.spawn(process.execPath, [viteNode, path.join(here, "support", "adopt-parent.ts"), ...args], { stdio: ["ignore", "pipe", "pipe"] })),
            (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
          )
          let output = ""
          parent.stdout.on("data", (d: Buffer) => (output += d.toString()))
          parent.stderr.on("data", (d: Buffer) => (output += d.toString()))
          const exited = new Promise<void>((resolve) => parent.once("exit", () => resolve()))
          yield* h.until("the first parent to start its job", () => {
            if (parent.exitCode !== null) throw new Error(`the first parent exited ${parent.exitCode}: ${output}`)
            return output.includes("STARTED")
          }, 30_000)
          parent.kill("SIGKILL")
          yield* Effect.promise(() => exited)
          expect(fs.readdirSync(path.join(runtimeDir, "ch")), "the dead parent left the job's socket directory").toHaveLength(1)

          const scope2 = yield* Scope.make()
          const e2 = yield* makeJobExecutor({
            client: mockClient(),
            runtimeDir,
            instanceId,
            labels,
            launcher: launcher(),
            recover: "adopt",
            graceMs: common.timeouts.graceMs,
            killTimeoutMs: common.timeouts.killTimeoutMs
          }).pipe(Scope.extend(scope2))
          expect((yield* e2.jobs).map((j) => j.jobId)).toEqual([jobId])
          // The worker reconnects to the same path through its bind mount (within its reconnect window).
          const ask = e2.sendToJob({ jobId, channel: "test", topic: "echo", message: Message.make({ adopted: jobId }), timeout: "2 seconds" })
          let reply = yield* Effect.either(ask)
          yield* h.until("the adopted job to answer", () =>
            Either.isRight(reply) ? true : Effect.either(ask).pipe(Effect.map((r) => ((reply = r), Either.isRight(r)))), 8_000)
          expect(Either.getOrThrow(reply).payload).toEqual({ adopted: jobId })
          yield* e2.abortApp(jobId)
          expect((yield* e2.awaitCompletion(jobId)).returnCode).toBe(9)
          yield* Scope.close(scope2, Exit.void)
          const left = yield* client.listByLabels({ "flexec.instance": instanceId })
          expect(left.map((c) => c.names.join(",")), "the adopted container is removed once its outcome is read").toEqual([])
          expect(fs.readdirSync(path.join(runtimeDir, "ch")), "socket directories left after the adopting executor closed").toEqual([])
        })
      ), 60_000)
  })

  describe("not exercised here", () => {
    // The suite has no GPU test; the DeviceRequest a job's GPUs become is checked in validate.test.ts.
    it.skip("capabilities.gpus: a job gets exactly its allocated GPUs [skipped: this machine has no GPU]", () => undefined)
  })

  describe("leaks after the suite", () => {
    it("no container labelled with this run is left, per the engine", async () => {
      const left = await containersOf(common.runId)
      expect(left.map((c) => `${c.names.join(",")} (${c.state})`)).toEqual([])
    })

    it("no socket directory was left when a test's launcher was released", () => {
      expect(leftSocketDirs).toEqual([])
    })
  })
})
