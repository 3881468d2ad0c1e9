/**
 * examples/python-worker: a worker written in Python from docs/PROTOCOL.md
 * alone runs under the process backend like any Node job. Proves the protocol
 * is language-neutral.
 */
import type { PromiseExecutor } from "@flexec/core/promise"
import { createProcessExecutor } from "@flexec/executor-process"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cleanup, deploy, examplesDir, makeWorkspace, pollUntil, uniqueInstance } from "./support.js"

const site = "site-1"
const appDir = path.join(examplesDir, "python-worker", "app")
const hasPython = spawnSync("python3", ["--version"]).status === 0
if (!hasPython) console.warn("\n*** SKIPPING python-worker.test.ts: python3 is not on PATH ***\n")

describe.skipIf(!hasPython)("python-worker under the process backend [skipped without python3]", () => {
  let executor: PromiseExecutor
  let workspace: string

  beforeAll(async () => {
    workspace = makeWorkspace("fx-py-")
    executor = await createProcessExecutor({
      client: { clientName: site },
      instanceId: uniqueInstance("py"),
      command: ["python3", "{appDir}/main.py"],
      graceMs: 5_000,
      killTimeoutMs: 2_000
    })
  })
  afterAll(async () => {
    await executor?.close()
    cleanup()
  })

  it("runs to success: exit 0, return code 0, its log written", async () => {
    deploy(workspace, "py-ok", site, appDir)
    await executor.startApp({ jobId: "py-ok", args: { workspace, set: { rounds: 3, round_ms: 20 } } })
    const outcome = await executor.awaitCompletion("py-ok")
    expect(outcome.returnCode).toBe(0)
    expect(outcome.exit).toMatchObject({ code: 0, signal: null })
    expect(await executor.getStatus("py-ok")).toBe(3)
    const log = fs.readFileSync(path.join(workspace, "py-ok", "log.txt"), "utf8")
    expect(log).toContain("python-worker py-ok on site-1: 3 rounds")
    expect(log).toContain("done")
  })

  it("answers echo (JSON and bytes), stats, errors, log config; aborts with outcome 9", async () => {
    const jobId = "py-long"
    deploy(workspace, jobId, site, appDir)
    await executor.startApp({ jobId, args: { workspace, set: { rounds: 0, round_ms: 20 } } })
    await pollUntil("Started", async () => ((await executor.getStatus(jobId)) === 2 ? true : undefined))
    expect(await executor.checkStatus(jobId)).toBe("started")

    const json = await executor.sendToJob({
      jobId, channel: "app", topic: "echo",
      message: { headers: { trace: "t-1" }, payload: { x: [1, "é"], nested: { ok: true } } }
    })
    expect(json.payload).toEqual({ x: [1, "é"], nested: { ok: true } })

    const bytes = new Uint8Array([0, 1, 2, 255, 128])
    const reply = await executor.sendToJob({ jobId, channel: "app", topic: "echo", message: { headers: {}, payload: bytes } })
    expect(reply.payload).toBeInstanceOf(Uint8Array)
    expect(Array.from(reply.payload as Uint8Array)).toEqual([0, 1, 2, 255, 128])

    const stats = await pollUntil("a training round in the stats", async () => {
      const info = await executor.getRunInfo(jobId)
      return (info.training as { round?: number } | undefined)?.round !== undefined ? info : undefined
    })
    expect(stats.training).toMatchObject({ of: 0 })

    const errors = await executor.getErrors(jobId)
    expect(errors.example?.warning).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z: python-worker is an example$/)
    await executor.resetErrors(jobId)
    expect(await executor.getErrors(jobId)).toEqual({})

    await executor.configureJobLog(jobId, { level: "debug" })
    const who = await executor.sendToJob({ jobId, channel: "app", topic: "whoami", message: { headers: {}, payload: undefined } })
    expect(who.payload).toEqual({ jobId, client: site, logLevel: "debug" })
    await expect(executor.configureJobLog(jobId, { level: "loud" })).rejects.toMatchObject({ _tag: "RemoteError" })
    await expect(
      executor.sendToJob({ jobId, channel: "app", topic: "nope", message: { headers: {}, payload: undefined } })
    ).rejects.toMatchObject({ _tag: "InvalidRequest" })
    await executor.abortTask(jobId)

    await executor.abortApp(jobId)
    const outcome = await executor.awaitCompletion(jobId)
    expect(outcome.returnCode).toBe(9)
    expect(outcome.reason).toBe("aborted")
    // It stopped by itself on the abort message: no signal was needed.
    expect(outcome.exit).toMatchObject({ code: 0, signal: null })
    expect(await executor.checkStatus(jobId)).toBe("stopped")
    expect(fs.readFileSync(path.join(workspace, jobId, "log.txt"), "utf8")).toMatch(/aborted after \d+ rounds/)
  })

  it("a bad set is a config error: return code 103", async () => {
    deploy(workspace, "py-bad", site, appDir)
    await executor.startApp({ jobId: "py-bad", args: { workspace, set: { rounds: "many" } } })
    const outcome = await executor.awaitCompletion("py-bad")
    expect(outcome.returnCode).toBe(103)
    expect(outcome.exit.code).toBe(103)
  })
})
