import { describe, expect, it } from "vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { jobExecutorLayer } from "../src/JobExecutor.js"
import { InstanceInUse, InvalidJobId, JobMetaMissing } from "../src/Errors.js"
import { toPromiseExecutor } from "../src/promise/index.js"
import { makeMemoryLauncher } from "./support/memoryLauncher.js"
import { deploy, programs } from "./support/setup.js"

const temp = () => fs.mkdtempSync(path.join(os.tmpdir(), "flexec-promise-"))

describe("Promise facade", () => {
  it("runs a job, streams events from the moment of the call, and rejects with the tagged errors themselves", async () => {
    const workspace = temp()
    const runtimeDir = temp()
    const launcher = makeMemoryLauncher(() => programs.exitWith(0))
    const executor = await toPromiseExecutor(jobExecutorLayer({ client: { clientName: "site-1" }, launcher, runtimeDir }))
    try {
      const events = executor.events()
      deploy(workspace, "job-1")
      await executor.startApp({ jobId: "job-1", args: { workspace } })
      const tags: Array<string> = []
      for await (const event of events) {
        tags.push(event._tag)
        if (event._tag === "Completed") break
      }
      expect(tags).toEqual(["Launched", "Started", "Stopped", "Completed"])
      expect(await executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 0 })
      expect(await executor.checkStatus("job-1")).toBe("stopped")

      const bad = await executor.startApp({ jobId: "../x", args: { workspace } }).catch((e: unknown) => e)
      expect(bad).toBeInstanceOf(InvalidJobId)
      expect(bad).toMatchObject({ _tag: "InvalidJobId", value: "../x" })
      const missing = await executor.startApp({ jobId: "nope", args: { workspace } }).catch((e: unknown) => e)
      expect(missing).toBeInstanceOf(JobMetaMissing)
      expect(String((missing as Error).message)).toContain("nope")

      const second = await toPromiseExecutor(
        jobExecutorLayer({ client: { clientName: "site-1" }, launcher: makeMemoryLauncher(() => programs.exitWith(0)), runtimeDir })
      ).catch((e: unknown) => e)
      expect(second).toBeInstanceOf(InstanceInUse)
    } finally {
      await executor.close()
      fs.rmSync(workspace, { recursive: true, force: true })
      fs.rmSync(runtimeDir, { recursive: true, force: true })
    }
  })

  it("close() aborts what still runs and releases the instance", async () => {
    const workspace = temp()
    const runtimeDir = temp()
    const launcher = makeMemoryLauncher(() => programs.neverConnects)
    const executor = await toPromiseExecutor(jobExecutorLayer({ client: { clientName: "site-1" }, launcher, runtimeDir }))
    deploy(workspace, "job-1")
    await executor.startApp({ jobId: "job-1", args: { workspace } })
    const outcome = executor.awaitCompletion("job-1")
    await executor.close()
    expect(await outcome).toMatchObject({ returnCode: 9 })
    expect(launcher.live()).toBe(0)
    expect(fs.existsSync(path.join(runtimeDir, "owner.json"))).toBe(false)
    const again = await toPromiseExecutor(jobExecutorLayer({ client: { clientName: "site-1" }, launcher, runtimeDir }))
    await again.close()
    fs.rmSync(workspace, { recursive: true, force: true })
    fs.rmSync(runtimeDir, { recursive: true, force: true })
  })
})
