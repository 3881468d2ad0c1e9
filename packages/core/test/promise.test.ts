import { describe, expect, it } from "vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { jobExecutorLayer, makeJobExecutor } from "../src/JobExecutor.js"
import { InstanceInUse, InvalidJobId, JobMetaMismatch, JobMetaMissing, RemoteError, RequestTimeout, TargetUnreachable } from "../src/Errors.js"
import { toPromiseExecutor } from "../src/promise/index.js"
import { makeMemoryLauncher } from "./support/memoryLauncher.js"
import { deploy, programs } from "./support/setup.js"
import type { Program } from "./support/memoryLauncher.js"
import { Exit, Layer, ManagedRuntime } from "effect"
import { ClientExecutor, UnsafeClientExecutor } from "../src/ClientExecutor.js"

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

      // a START meta naming another job_id is a drift from the deployed meta
      deploy(workspace, "job-3")
      const drift = await executor.startApp({ jobId: "job-3", jobMeta: { job_id: "job-4" }, args: { workspace } }).catch((e: unknown) => e)
      expect(drift).toBeInstanceOf(JobMetaMismatch)
      expect(drift).toMatchObject({ _tag: "JobMetaMismatch", jobId: "job-3", key: "job_id" })
      expect(await executor.jobs()).toEqual([])

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

  /** The hot calls through `layer`'s executor: replies, remote errors, timeouts, statuses, unknown and invalid ids. */
  const hotCalls = async (makeLayer: (runtimeDir: string, launcher: ReturnType<typeof makeMemoryLauncher>) => Layer.Layer<ClientExecutor, unknown>) => {
    const workspace = temp()
    const runtimeDir = temp()
    const program: Program = (c) =>
      c.worker({
        run: (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(0))),
        handlers: { test: { echo: (m) => m.payload, fail: () => { throw new Error("boom") }, hang: () => new Promise(() => undefined) } }
      })
    const launcher = makeMemoryLauncher(() => program)
    const executor = await toPromiseExecutor(makeLayer(runtimeDir, launcher))
    try {
      const events = executor.events()[Symbol.asyncIterator]()
      deploy(workspace, "job-1")
      await executor.startApp({ jobId: "job-1", args: { workspace } })
      const seen: Array<string> = []
      for (let e = await events.next(); !e.done; e = await events.next()) {
        seen.push(e.value._tag)
        if (e.value._tag === "Started") break
      }
      expect(seen).toEqual(["Launched", "Started"])
      const message = { headers: {}, payload: { n: 1 } }
      expect((await executor.sendToJob({ jobId: "job-1", channel: "test", topic: "echo", message })).payload).toEqual({ n: 1 })
      const failed = await executor.sendToJob({ jobId: "job-1", channel: "test", topic: "fail", message }).catch((e: unknown) => e)
      expect(failed).toBeInstanceOf(RemoteError)
      expect(failed).toMatchObject({ jobId: "job-1", returnCode: "process_exception", detail: "boom" })
      const slow = await executor.sendToJob({ jobId: "job-1", channel: "test", topic: "hang", message, timeout: 30 }).catch((e: unknown) => e)
      expect(slow).toBeInstanceOf(RequestTimeout)
      expect(slow).toMatchObject({ jobId: "job-1", channel: "test", topic: "hang", timeout: 30 })
      expect(await executor.checkStatus("job-1")).toBe("started")
      expect(await executor.getStatus("job-1")).toBe(2)
      expect(await executor.checkStatus("job-2")).toBe("not started")
      expect(await executor.checkStatus("../x").catch((e: unknown) => e)).toBeInstanceOf(InvalidJobId)
      expect(await executor.sendToJob({ jobId: "job-2", channel: "test", topic: "echo", message }).catch((e: unknown) => e)).toBeInstanceOf(TargetUnreachable)
      expect(await executor.sendToJob({ jobId: "../x", channel: "test", topic: "echo", message }).catch((e: unknown) => e)).toBeInstanceOf(InvalidJobId)
      await executor.abortApp("job-1")
      const rest: Array<string> = []
      for (let e = await events.next(); !e.done; e = await events.next()) {
        rest.push(e.value._tag)
        if (e.value._tag === "Completed") break
      }
      expect(rest).toEqual(["Stopped", "Completed"])
    } finally {
      await executor.close()
      fs.rmSync(workspace, { recursive: true, force: true })
      fs.rmSync(runtimeDir, { recursive: true, force: true })
    }
  }

  it("the engine's layer gives the facade its fiberless door: replies, remote errors, timeouts and statuses as the Effect way gives them", async () => {
    await hotCalls((runtimeDir, launcher) => jobExecutorLayer({ client: { clientName: "site-1" }, launcher, runtimeDir }))
    // the door is in the layer's context, and it is the service the Effect API wraps
    const runtimeDir = temp()
    const runtime = ManagedRuntime.make(jobExecutorLayer({ client: { clientName: "site-1" }, launcher: makeMemoryLauncher(() => programs.exitWith(0)), runtimeDir }))
    try {
      const door = await runtime.runPromise(UnsafeClientExecutor)
      expect(door).toBe(await runtime.runPromise(ClientExecutor))
      const exit = await new Promise<Exit.Exit<unknown, unknown>>((resolve) =>
        door.unsafeSendToJob({ jobId: "job-9", channel: "test", topic: "echo", message: { headers: {}, payload: 1 } }, resolve)
      )
      expect(exit).toMatchObject({ _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "TargetUnreachable", jobId: "job-9" } } })
    } finally {
      await runtime.dispose()
      fs.rmSync(runtimeDir, { recursive: true, force: true })
    }
  })

  it("a ClientExecutor layer without the door: the facade derives it from the service, with the same results", async () => {
    await hotCalls((runtimeDir, launcher) => Layer.scoped(ClientExecutor, makeJobExecutor({ client: { clientName: "site-1" }, launcher, runtimeDir })))
  })

  it("sendToJob right after startApp waits for the job's connection; one that never connects is RequestTimeout", async () => {
    const workspace = temp()
    const runtimeDir = temp()
    // the worker connects when the test says so: after the request was sent
    let connect: (() => void) | undefined
    const program: Program = (c) => {
      if (c.request.jobId === "silent") return
      connect = () =>
        c.worker({
          run: (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(0))),
          handlers: { test: { echo: (m) => m.payload } }
        })
    }
    const launcher = makeMemoryLauncher(() => program)
    const executor = await toPromiseExecutor(jobExecutorLayer({ client: { clientName: "site-1" }, launcher, runtimeDir }))
    try {
      deploy(workspace, "job-1")
      deploy(workspace, "silent")
      await executor.startApp({ jobId: "job-1", args: { workspace } })
      expect(await executor.getStatus("job-1")).toBe(1)
      const message = { headers: {}, payload: { n: 7 } }
      const pending = executor.sendToJob({ jobId: "job-1", channel: "test", topic: "echo", message, timeout: 5_000 })
      connect!()
      expect((await pending).payload).toEqual({ n: 7 })
      await executor.startApp({ jobId: "silent", args: { workspace } })
      const silent = await executor.sendToJob({ jobId: "silent", channel: "test", topic: "echo", message, timeout: 50 }).catch((e: unknown) => e)
      expect(silent).toBeInstanceOf(RequestTimeout)
      expect(silent).toMatchObject({ jobId: "silent", timeout: 50 })
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

describe("Promise facade: the parent-exit guard (onParentExit)", () => {
  const counts = () => ["SIGINT", "SIGTERM", "SIGHUP", "uncaughtException"].map((e) => process.listenerCount(e))

  it("listens for SIGINT/SIGTERM/SIGHUP and uncaught errors while an executor is open, and stops at close()", async () => {
    const runtimeDir = temp()
    const before = counts()
    const executor = await toPromiseExecutor(jobExecutorLayer({ client: { clientName: "site-1" }, launcher: makeMemoryLauncher(() => programs.exitWith(0)), runtimeDir }))
    expect(counts()).toEqual(before.map((n) => n + 1))
    await executor.close()
    expect(counts()).toEqual(before)
    fs.rmSync(runtimeDir, { recursive: true, force: true })
  })

  it("\"leave\" installs nothing; any other value is a TypeError before anything starts", async () => {
    const runtimeDir = temp()
    const before = counts()
    const executor = await toPromiseExecutor(
      jobExecutorLayer({ client: { clientName: "site-1" }, launcher: makeMemoryLauncher(() => programs.exitWith(0)), runtimeDir }),
      { onParentExit: "leave" }
    )
    expect(counts()).toEqual(before)
    await executor.close()
    const bad = await toPromiseExecutor(
      jobExecutorLayer({ client: { clientName: "site-1" }, launcher: makeMemoryLauncher(() => programs.exitWith(0)), runtimeDir }),
      { onParentExit: "keep" as never }
    ).catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(TypeError)
    expect(String(bad)).toContain('onParentExit must be "abort" or "leave", not "keep"')
    // nothing was started: the instance is free
    const again = await toPromiseExecutor(jobExecutorLayer({ client: { clientName: "site-1" }, launcher: makeMemoryLauncher(() => programs.exitWith(0)), runtimeDir }))
    await again.close()
    fs.rmSync(runtimeDir, { recursive: true, force: true })
  })
})
