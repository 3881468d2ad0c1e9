import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import Docker from "dockerode"
import { Effect } from "effect"
import { createDockerExecutor, DockerJobExecutor } from "../src/index.js"
import { cleanupRoots, dockerReady, makeRoot, removeRunContainers, runId, runLabels, socketPath, testImage, testUser } from "./helpers.js"
import { MockResourceManager, waitForStarted, waitUntil } from "@flexec/testing"
import { ImageNotFound } from "@flexec/core"
import { makeDockerClient } from "../src/DockerClient.js"

const ready = dockerReady("executor.test.ts")

afterAll(async () => {
  await removeRunContainers()
  cleanupRoots()
})

describe.skipIf(!ready)("createDockerExecutor [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("runs deployed jobs in containers through the engine: Started, a reply, Aborted; and Success", async () => {
    const root = makeRoot()
    const workspace = path.join(root, "ws")
    const deploy = (jobId: string, main: string) => {
      const appDir = path.join(workspace, jobId, "app_site1")
      fs.mkdirSync(appDir, { recursive: true })
      fs.writeFileSync(path.join(workspace, jobId, "meta.json"), JSON.stringify({ job_id: jobId }))
      fs.writeFileSync(path.join(appDir, "main.js"), main)
    }
    deploy("job-ok", `require("@flexec/core/worker").runJob({ run: async () => 0 })`)
    deploy(
      "job-e2e",
      `const { runJob } = require("@flexec/core/worker")
       runJob({
         run: async (ctx) => {
           ctx.setStats("progress", { step: 1 })
           await new Promise((resolve) => ctx.signal.aborted ? resolve() : ctx.signal.addEventListener("abort", resolve))
           return 0
         }
       })`
    )
    const executor = await createDockerExecutor({
      client: { clientName: "site1" },
      image: testImage,
      docker: { socketPath },
      containerUser: testUser,
      instanceId: `test-${runId}-exec`,
      runtimeDir: path.join(root, "rt"),
      labels: runLabels,
      killTimeoutMs: 2000,
      graceMs: 5000
    })
    try {
      await executor.startApp({ jobId: "job-e2e", args: { workspace } })
      await waitForStarted(executor, "job-e2e", 30_000)
      // Started comes just before `run`; its stats follow.
      await waitUntil("the job's stats", async () => ("progress" in (await executor.getRunInfo("job-e2e")) ? true : undefined), 30_000, 50)
      expect(await executor.getRunInfo("job-e2e")).toMatchObject({ progress: { step: 1 } })
      await executor.abortApp("job-e2e")
      const outcome = await executor.awaitCompletion("job-e2e")
      expect(outcome.returnCode).toBe(9)
      expect(outcome.exit.code).toBe(0)

      await executor.startApp({ jobId: "job-ok", args: { workspace } })
      const ok = await executor.awaitCompletion("job-ok")
      expect(ok).toMatchObject({ returnCode: 0, exit: { code: 0, signal: null, oomKilled: false, lost: false } })
    } finally {
      await executor.close()
    }
  })

  it("a missing image is ImageNotFound only once the job is unregistered and freed: a retry right after is ImageNotFound again, no container left", async () => {
    const root = makeRoot()
    const workspace = path.join(root, "ws")
    const jobId = "job-noimage"
    fs.mkdirSync(path.join(workspace, jobId, "app_site1"), { recursive: true })
    fs.writeFileSync(
      path.join(workspace, jobId, "meta.json"),
      JSON.stringify({ job_id: jobId, launcher_spec: { default: { docker: { image: `flexec-no-such-image:${runId}` } } } })
    )
    const executor = await createDockerExecutor({
      client: { clientName: "site1" },
      image: testImage,
      docker: { socketPath },
      containerUser: testUser,
      instanceId: `test-${runId}-noimage`,
      runtimeDir: path.join(root, "rt"),
      labels: runLabels
    })
    try {
      const rm = new MockResourceManager()
      for (const attempt of [1, 2]) {
        const { token } = await Effect.runPromise(rm.checkResources({}))
        const allocatedResource = await Effect.runPromise(rm.allocateResources({}, token))
        const error = await executor
          .startApp({ jobId, args: { workspace }, allocatedResource, token, resourceManager: rm })
          .catch((e: unknown) => e)
        expect(error, `attempt ${attempt}`).toBeInstanceOf(ImageNotFound)
        expect(await executor.jobs()).toEqual([])
        expect(rm.freedTokens().get(token)).toBe(1)
      }
      const left = await Effect.runPromise(makeDockerClient({ socketPath }).listByLabels({ ...runLabels, "flexec.job_id": jobId }))
      expect(left).toEqual([])
    } finally {
      await executor.close()
    }
  })
})

describe.skipIf(!ready)("DockerJobExecutor.make [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("builds the executor in the caller's scope: a job runs, and closing the scope removes its container", async () => {
    const root = makeRoot()
    const workspace = path.join(root, "ws")
    const appDir = path.join(workspace, "job-make", "app_site1")
    fs.mkdirSync(appDir, { recursive: true })
    fs.writeFileSync(path.join(workspace, "job-make", "meta.json"), JSON.stringify({ job_id: "job-make" }))
    fs.writeFileSync(path.join(appDir, "main.js"), `require("@flexec/core/worker").runJob({ run: (ctx) => new Promise(() => {}) })`)
    const instanceId = `test-${runId}-make`
    const program = Effect.scoped(
      Effect.gen(function* () {
        const executor = yield* DockerJobExecutor.make({
          client: { clientName: "site1" },
          image: testImage,
          docker: { socketPath },
          containerUser: testUser,
          instanceId,
          runtimeDir: path.join(root, "rt"),
          labels: runLabels,
          killTimeoutMs: 500,
          graceMs: 500
        })
        yield* executor.startApp({ jobId: "job-make", args: { workspace } })
        return (yield* executor.jobs).map((j) => j.jobId)
      })
    )
    expect(await Effect.runPromise(program)).toEqual(["job-make"])
    const left = await new Docker({ socketPath }).listContainers({ all: true, filters: { label: [`flexec.instance=${instanceId}`] } })
    expect(left).toEqual([])
  })
})
