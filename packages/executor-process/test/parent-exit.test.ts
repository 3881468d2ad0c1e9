/**
 * An embedding program that ends without `close()` (test/support/exitParent.mjs,
 * a real parent process using `createProcessExecutor`): its job, and the job's
 * grandchild, must not outlive it, and nothing of the job is left in the
 * runtime directory — unless the site chose `onParentExit: "leave"`.
 *
 * - process.exit(), an uncaught exception, an unhandled rejection, SIGTERM,
 *   SIGHUP, SIGINT: the job and its group are gone once the parent is, the pid
 *   file, the channel directory and the owner lock are removed.
 * - On a signal or an uncaught error the job is aborted in order first (its
 *   `ctx.signal` fires: it writes `aborted`); the parent then ends by that
 *   signal, or with status 1.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { waitUntil } from "@flexec/testing"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { isDead } from "./helpers.js"
import { ensureBuilt, killAll, track } from "./support/crashParent.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const parentScript = path.join(here, "support", "exitParent.mjs")

beforeAll(() => ensureBuilt(), 180_000)
afterAll(() => killAll())

/** The job: records its pid and a grandchild's, and `aborted` when its signal fires. */
const jobMain = `
const fs = require("node:fs")
const { spawn } = require("node:child_process")
const { runJob } = require("@flexec/core/worker")
const child = spawn("sleep", ["300"], { stdio: "ignore" })
fs.writeFileSync("job.pid", String(process.pid))
fs.writeFileSync("grandchild.pid", String(child.pid))
runJob({
  run: (ctx) => new Promise((resolve) => {
    ctx.signal.addEventListener("abort", () => {
      fs.writeFileSync("aborted", "yes")
      child.kill("SIGKILL")
      resolve(0)
    })
  })
})
`

interface Run {
  readonly root: string
  readonly jobDir: string
  readonly runtimeDir: string
  readonly jobPid: number
  readonly grandchildPid: number
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly output: () => string
  readonly child: ReturnType<typeof spawn>
}

const roots: Array<string> = []
afterAll(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true })
})

/** Starts a parent with one deployed job and waits for READY (the job Started). */
const startParent = async (how: string, onParentExit?: "abort" | "leave"): Promise<Run> => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "fxpe-"))
  roots.push(root)
  const workspace = path.join(root, "ws")
  const jobId = "exit-job"
  const jobDir = path.join(workspace, jobId)
  fs.mkdirSync(path.join(jobDir, "app_site-1"), { recursive: true })
  fs.writeFileSync(path.join(jobDir, "meta.json"), JSON.stringify({ job_id: jobId, resource_spec: {} }))
  fs.writeFileSync(path.join(jobDir, "app_site-1", "main.js"), jobMain)
  const runtimeDir = path.join(root, "rt")
  const config = { runtimeDir, instanceId: `exit-${how}`, workspace, jobId, how, ...(onParentExit ? { onParentExit } : {}) }
  const child = spawn(process.execPath, [parentScript, JSON.stringify(config)], { detached: true, stdio: ["ignore", "pipe", "pipe"] })
  if (child.pid !== undefined) track(child.pid)
  let out = ""
  child.stdout!.on("data", (c: Buffer) => void (out += c.toString()))
  child.stderr!.on("data", (c: Buffer) => void (out += c.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal }))
  )
  await waitUntil("the parent's READY", () => (out.includes("READY") ? true : undefined), 30_000).catch((e: unknown) => {
    throw new Error(`${String(e)}\n${out}`)
  })
  const jobPid = Number(fs.readFileSync(path.join(jobDir, "job.pid"), "utf8"))
  const grandchildPid = Number(fs.readFileSync(path.join(jobDir, "grandchild.pid"), "utf8"))
  track(jobPid)
  return { root, jobDir, runtimeDir, jobPid, grandchildPid, exited, output: () => out, child }
}

/** The parent's exit, bounded. */
const exitOf = async (run: Run) => {
  let timer: NodeJS.Timeout | undefined
  const result = await Promise.race([
    run.exited,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the parent did not exit:\n${run.output()}`)), 30_000)))
  ])
  clearTimeout(timer)
  return result
}

/** Nothing of the job is left: no process, no pid file, no channel directory, no owner lock. */
const expectNothingLeft = async (run: Run) => {
  // the job's group was SIGKILLed (or it exited) before the parent was gone; a zombie reaped by init may linger briefly
  await waitUntil("the job and its grandchild to be gone", () => (isDead(run.jobPid) && isDead(run.grandchildPid) ? true : undefined), 10_000)
  const pids = path.join(run.runtimeDir, "pids")
  expect(fs.existsSync(pids) ? fs.readdirSync(pids) : []).toEqual([])
  expect(fs.readdirSync(path.join(run.runtimeDir, "ch"))).toEqual([])
  expect(fs.existsSync(path.join(run.runtimeDir, "owner.json"))).toBe(false)
}

describe("a parent that ends without close() (onParentExit: \"abort\", the default)", () => {
  it("process.exit(0): the job's group is SIGKILLed synchronously; pid file, channel dir and owner lock removed", async () => {
    const run = await startParent("exit")
    expect(await exitOf(run)).toEqual({ code: 0, signal: null })
    await expectNothingLeft(run)
    // no time for an orderly abort in an 'exit' listener
    expect(fs.existsSync(path.join(run.jobDir, "aborted"))).toBe(false)
  })

  it("an uncaught exception: the error is printed, the job aborted in order, exit status 1", async () => {
    const run = await startParent("throw")
    expect(await exitOf(run)).toEqual({ code: 1, signal: null })
    expect(run.output()).toContain("boom: an uncaught exception")
    expect(run.output()).toMatch(/flexec: an uncaught exception: aborting 1 job before exiting \(close\(\) was not called\)/)
    expect(fs.readFileSync(path.join(run.jobDir, "aborted"), "utf8")).toBe("yes")
    await expectNothingLeft(run)
  })

  it("an unhandled rejection: the same, exit status 1", async () => {
    const run = await startParent("reject")
    expect(await exitOf(run)).toEqual({ code: 1, signal: null })
    expect(run.output()).toContain("boom: an unhandled rejection")
    expect(fs.readFileSync(path.join(run.jobDir, "aborted"), "utf8")).toBe("yes")
    await expectNothingLeft(run)
  })

  for (const signal of ["SIGTERM", "SIGHUP", "SIGINT"] as const) {
    it(`${signal} to the parent: the job aborted in order, then the parent ends by ${signal}`, async () => {
      const run = await startParent("wait")
      run.child.kill(signal)
      expect(await exitOf(run)).toEqual({ code: null, signal })
      expect(run.output()).toContain(`flexec: ${signal} received: aborting 1 job before exiting`)
      expect(fs.readFileSync(path.join(run.jobDir, "aborted"), "utf8")).toBe("yes")
      await expectNothingLeft(run)
    })
  }
})

describe("a program with its own plan", () => {
  it("its own SIGTERM handler decides (no abort in order); its process.exit still kills the job's group", async () => {
    const run = await startParent("own-handler")
    run.child.kill("SIGTERM")
    expect(await exitOf(run)).toEqual({ code: 3, signal: null })
    expect(run.output()).toContain("own handler")
    expect(run.output()).not.toContain("flexec: SIGTERM received")
    expect(fs.existsSync(path.join(run.jobDir, "aborted"))).toBe(false)
    await expectNothingLeft(run)
  })
})

describe("onParentExit: \"leave\" (for adoption)", () => {
  it("process.exit(0) leaves the job running with its pid file, for a later parent to adopt or reap", async () => {
    const run = await startParent("exit", "leave")
    expect(await exitOf(run)).toEqual({ code: 0, signal: null })
    expect(isDead(run.jobPid)).toBe(false)
    expect(isDead(run.grandchildPid)).toBe(false)
    expect(fs.readdirSync(path.join(run.runtimeDir, "pids"))).toEqual(["exit-job.json"])
    killAll()
  })

  it("SIGTERM kills the parent as before (no handler installed): the job keeps running", async () => {
    const run = await startParent("wait", "leave")
    run.child.kill("SIGTERM")
    expect(await exitOf(run)).toEqual({ code: null, signal: "SIGTERM" })
    expect(isDead(run.jobPid)).toBe(false)
    expect(fs.existsSync(path.join(run.jobDir, "aborted"))).toBe(false)
    killAll()
  })
})
