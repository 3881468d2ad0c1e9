import { afterEach, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createProcessExecutor } from "../src/index.js"
import { isDead } from "./helpers.js"
import { MockResourceManager, waitForStarted, waitUntil } from "@flexec/testing"
import { LaunchFailed } from "@flexec/core"
import { Effect } from "effect"

// Smoke tests of the wrappers through the engine (the engine-level suite lives elsewhere).

const roots: Array<string> = []
afterEach(() => {
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true })
})

const deploy = (jobId: string, main: string) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "fxe-"))
  roots.push(root)
  const workspace = path.join(root, "ws")
  const appDir = path.join(workspace, jobId, "app_site-1")
  fs.mkdirSync(appDir, { recursive: true })
  fs.writeFileSync(path.join(workspace, jobId, "meta.json"), JSON.stringify({ job_id: jobId }))
  fs.writeFileSync(path.join(appDir, "main.js"), main)
  return { root, workspace, runtimeDir: path.join(root, "rt") }
}

describe("createProcessExecutor", () => {
  it("runs a CommonJS job app to completion", async () => {
    const { workspace, runtimeDir } = deploy(
      "job-ok",
      `const { runJob } = require("@flexec/core/worker")
       runJob({ run: async (ctx) => { console.log("hello from " + ctx.jobId); return 0 } })`
    )
    const executor = await createProcessExecutor({ client: { clientName: "site-1" }, instanceId: "smoke-ok", runtimeDir })
    try {
      await executor.startApp({ jobId: "job-ok", args: { workspace } })
      const outcome = await executor.awaitCompletion("job-ok")
      expect(outcome.returnCode).toBe(0)
      expect(outcome.exit).toEqual({ code: 0, signal: null, oomKilled: false, lost: false })
      expect(fs.readFileSync(path.join(workspace, "job-ok", "log.txt"), "utf8")).toContain("hello from job-ok")
      expect(fs.readdirSync(path.join(runtimeDir, "pids"))).toEqual([])
    } finally {
      await executor.close()
    }
  })

  it("makes a V8 code cache of the worker runtime when it starts, and its jobs load the runtime with it", async () => {
    const { workspace, runtimeDir } = deploy(
      "job-cache",
      `const worker = require("@flexec/core/worker")
       worker.runJob({ run: () => worker[Symbol.for("flexec.workerCodeCache")] === "accepted" ? 0 : 7 })`
    )
    const executor = await createProcessExecutor({ client: { clientName: "site-1" }, instanceId: "smoke-cache", runtimeDir })
    try {
      const cache = path.join(runtimeDir, "node_modules", "@flexec", "core", "worker.cache")
      await waitUntil("the worker runtime's code cache", () => fs.existsSync(cache) || undefined)
      await executor.startApp({ jobId: "job-cache", args: { workspace } })
      // 0: the job's node accepted the cache (7: refused or absent)
      expect((await executor.awaitCompletion("job-cache")).returnCode).toBe(0)
    } finally {
      await executor.close()
    }
    // workerCodeCache: false makes none (checked after a whole job, longer than making one takes)
    const other = deploy(
      "job-none",
      `const worker = require("@flexec/core/worker")
       worker.runJob({ run: () => worker[Symbol.for("flexec.workerCodeCache")] === "absent" ? 0 : 7 })`
    )
    const without = await createProcessExecutor({ client: { clientName: "site-1" }, instanceId: "smoke-nocache", runtimeDir: other.runtimeDir, workerCodeCache: false })
    try {
      await without.startApp({ jobId: "job-none", args: { workspace: other.workspace } })
      expect((await without.awaitCompletion("job-none")).returnCode).toBe(0)
      expect(fs.existsSync(path.join(other.runtimeDir, "node_modules", "@flexec", "core", "worker.cache"))).toBe(false)
    } finally {
      await without.close()
    }
  })

  it("aborts a job that ignores the abort and SIGTERM: aborted, and its process is gone", async () => {
    const { workspace, runtimeDir } = deploy(
      "job-stuck",
      `process.on("SIGTERM", () => {})
       require("node:fs").writeFileSync("job.pid", String(process.pid))
       const { runJob } = require("@flexec/core/worker")
       runJob({ run: () => new Promise(() => {}) })`
    )
    const executor = await createProcessExecutor({
      client: { clientName: "site-1" },
      instanceId: "smoke-abort",
      runtimeDir,
      graceMs: 200,
      killTimeoutMs: 300
    })
    try {
      await executor.startApp({ jobId: "job-stuck", args: { workspace } })
      await waitForStarted(executor, "job-stuck", 10_000)
      await executor.abortApp("job-stuck")
      const outcome = await executor.awaitCompletion("job-stuck")
      expect(outcome.returnCode).toBe(9)
      const pid = Number(fs.readFileSync(path.join(workspace, "job-stuck", "job.pid"), "utf8"))
      expect(isDead(pid)).toBe(true)
      expect(outcome.exit.signal).toBe("SIGKILL")
    } finally {
      await executor.close()
    }
  })

  it("a launch that fails (no such command) rejects only once the job is unregistered and freed: a retry right after is not JobAlreadyRegistered", async () => {
    const { workspace, runtimeDir } = deploy("job-nocmd", "")
    const executor = await createProcessExecutor({
      client: { clientName: "site-1" },
      instanceId: "smoke-nocmd",
      runtimeDir,
      command: ["/nonexistent/flexec-no-such-command", "{appDir}/main.js"]
    })
    try {
      const rm = new MockResourceManager()
      const events = executor.events()[Symbol.asyncIterator]()
      for (const attempt of [1, 2]) {
        const { token } = await Effect.runPromise(rm.checkResources({}))
        const allocatedResource = await Effect.runPromise(rm.allocateResources({}, token))
        const error = await executor
          .startApp({ jobId: "job-nocmd", args: { workspace }, allocatedResource, token, resourceManager: rm })
          .catch((e: unknown) => e)
        expect(error, `attempt ${attempt}`).toBeInstanceOf(LaunchFailed)
        expect((error as LaunchFailed).message).toContain("flexec-no-such-command")
        // at the rejection: unregistered, freed exactly once, Completed already published
        expect(await executor.jobs()).toEqual([])
        expect(rm.freedTokens().get(token)).toBe(1)
        let completed = await events.next()
        while (!completed.done && completed.value._tag !== "Completed") completed = await events.next()
        expect(completed.value).toMatchObject({ _tag: "Completed", jobId: "job-nocmd", outcome: { returnCode: 104 } })
      }
      expect(rm.callsTo("freeResources")).toHaveLength(2)
      const pids = path.join(runtimeDir, "pids")
      expect(fs.existsSync(pids) ? fs.readdirSync(pids) : []).toEqual([])
    } finally {
      await executor.close()
    }
  })

  it("a sendToJob right after startApp resolves is answered (it waits for the job's connection)", async () => {
    const { workspace, runtimeDir } = deploy(
      "job-send",
      `const { runJob } = require("@flexec/core/worker")
       runJob({
         run: (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(0))),
         handlers: { test: { echo: (m) => ({ echoed: m.payload, pid: process.pid }) } }
       })`
    )
    const executor = await createProcessExecutor({ client: { clientName: "site-1" }, instanceId: "smoke-send", runtimeDir })
    try {
      await executor.startApp({ jobId: "job-send", args: { workspace } })
      const reply = await executor.sendToJob({
        jobId: "job-send",
        channel: "test",
        topic: "echo",
        message: { headers: {}, payload: { hello: "job" } },
        timeout: 20_000
      })
      // the job's own process answered
      const payload = reply.payload as { echoed: unknown; pid: number }
      expect(payload.echoed).toEqual({ hello: "job" })
      expect(payload.pid).not.toBe(process.pid)
      await executor.abortApp("job-send")
      expect((await executor.awaitCompletion("job-send")).returnCode).toBe(9)
    } finally {
      await executor.close()
    }
  })
})
