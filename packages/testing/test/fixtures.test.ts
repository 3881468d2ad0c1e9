/**
 * Every fixture, run as a real child process against a raw parent over a unix socket.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import {
  deployJob,
  fixtureArgv,
  fixtureFacts,
  fixtureJob,
  fixtureModule,
  fixtureNames,
  fixturePath,
  processOnlyFixtures
} from "../src/index.js"
import { alive, killStarted, pollUntil, RawParent, startFixture } from "./support/rawParent.js"

let parent: RawParent
let jobDir: string

beforeEach(async () => {
  parent = await RawParent.open()
  jobDir = fs.mkdtempSync(path.join(os.tmpdir(), "flx-job-"))
})

afterEach(async () => {
  killStarted()
  await parent.close()
  fs.rmSync(jobDir, { recursive: true, force: true })
})

const run = (name: Parameters<typeof fixtureArgv>[0], ...args: Array<string | number>) =>
  startFixture({ argv: fixtureArgv(name, ...args), parent, jobDir })

describe("fixture helpers", () => {
  it("name every fixture of worker.cjs, and only those", () => {
    expect([...fixtureNames].sort()).toEqual(Object.keys(fixtureModule().fixtures).sort())
    expect(fixtureModule().facts).toEqual(fixtureFacts)
    expect([...processOnlyFixtures].sort()).toEqual(["allocate-until-oom", "spawn-grandchild"])
  })

  it("fixtureArgv runs worker.cjs with node; fixtureJob packages it as an app", () => {
    expect(fixtureArgv("exit-with", 3)).toEqual([process.execPath, fixturePath, "exit-with", "3"])
    expect(path.isAbsolute(fixturePath) && fs.existsSync(fixturePath)).toBe(true)
    const job = fixtureJob("huge-payload", 1024)
    expect(job.set).toEqual({ fixture: "huge-payload", args: ["1024"] })
    expect(job.files["main.js"]).toBe(fs.readFileSync(fixturePath, "utf8"))
    expect(JSON.parse(job.files["package.json"]!)).toMatchObject({ type: "commonjs" })
  })

  it("deployJob writes meta.json and app_<client>/main.js", () => {
    const deployed = Effect.runSync(
      deployJob({ workspace: jobDir, jobId: "job-7", clientName: "site-2", meta: { study: "s" }, fixture: "exit-with", args: [4] })
    )
    expect(deployed.jobDir).toBe(path.join(jobDir, "job-7"))
    expect(JSON.parse(fs.readFileSync(path.join(jobDir, "job-7", "meta.json"), "utf8"))).toEqual({ job_id: "job-7", study: "s" })
    expect(fs.readFileSync(path.join(jobDir, "job-7", "app_site-2", "main.js"), "utf8")).toBe(fs.readFileSync(fixturePath, "utf8"))
    expect(deployed.set).toEqual({ fixture: "exit-with", args: ["4"] })
  })
})

describe("fixtures as processes", () => {
  it("echo: hello with the job id and token, Started, echoes JSON and bytes, exits 0 on abort", async () => {
    const job = run("echo")
    const c = await parent.connection()
    const hello = await c.helloHeader()
    expect(hello).toMatchObject({ kind: "hello", version: 1, jobId: "job-1", token: parent.token })
    await c.awaitStatus(2)
    expect(await c.request("test", "echo", { a: [1, "two"] })).toEqual({ rc: "ok", payload: { a: [1, "two"] } })
    const bytes = new Uint8Array([0, 1, 2, 255])
    const reply = await c.request("test", "echo", bytes)
    expect(reply.rc).toBe("ok")
    expect(reply.payload).toBeInstanceOf(Uint8Array)
    expect([...(reply.payload as Uint8Array)]).toEqual([0, 1, 2, 255])
    expect((await c.request("client_command", "abort")).rc).toBe("ok")
    await c.awaitStatus(3)
    expect(await job.exit()).toEqual({ code: 0, signal: null })
  })

  it("exit-on-abort: exits 0 on abort", async () => {
    const job = run("exit-on-abort")
    const c = await parent.connection()
    await c.awaitStatus(2)
    await c.request("client_command", "abort")
    expect((await job.exit()).code).toBe(0)
  })

  it("crash-at-start: exits 1 without connecting", async () => {
    const job = run("crash-at-start")
    expect(await job.exit()).toEqual({ code: 1, signal: null })
    expect(parent.connections).toHaveLength(0)
  })

  it("crash-later: Started, then exits 1 without Stopped", async () => {
    const job = run("crash-later", 50)
    const c = await parent.connection()
    await c.awaitStatus(2)
    expect((await job.exit()).code).toBe(1)
    expect(c.statuses).toEqual([2])
  })

  it("exit-with: Started, Stopped, then exits with the code", async () => {
    const job = run("exit-with", 7)
    const c = await parent.connection()
    expect((await job.exit()).code).toBe(7)
    expect(c.statuses).toEqual([2, 3])
  })

  it("write-rc: leaves the code in _process_rc.txt and exits 1", async () => {
    const job = run("write-rc", 0)
    expect((await job.exit()).code).toBe(1)
    expect(fs.readFileSync(path.join(jobDir, "_process_rc.txt"), "utf8").trim()).toBe("0")
  })

  it("ignore-abort: survives abort and SIGTERM, dies by SIGKILL", async () => {
    const job = run("ignore-abort")
    const c = await parent.connection()
    await c.awaitStatus(2)
    expect((await c.request("client_command", "abort")).rc).toBe("ok")
    await job.line("abort ignored")
    job.child.kill("SIGTERM")
    await job.line("SIGTERM ignored")
    expect((await c.request("test", "echo", "still here")).payload).toBe("still here")
    job.child.kill("SIGKILL")
    expect(await job.exit()).toEqual({ code: null, signal: "SIGKILL" })
  })

  it("slow-start: connects after its delay, then behaves as exit-on-abort", async () => {
    const job = run("slow-start", 100)
    const c = await parent.connection()
    await c.awaitStatus(2)
    await c.request("client_command", "abort")
    expect((await job.exit()).code).toBe(0)
  })

  it("never-connect: stays up without connecting; SIGTERM ends it", async () => {
    const job = run("never-connect")
    await job.line("never-connect: up")
    job.child.kill("SIGTERM")
    expect(await job.exit()).toEqual({ code: null, signal: "SIGTERM" })
    expect(parent.connections).toHaveLength(0)
  })

  it("spawn-grandchild: a grandchild in its group that catches SIGTERM and outlives the job; its pid in grandchild.pid", async () => {
    const job = startFixture({ argv: fixtureArgv("spawn-grandchild"), parent, jobDir, detached: true })
    const c = await parent.connection()
    await c.awaitStatus(2)
    const pidFile = path.join(jobDir, "grandchild.pid")
    const pid = await pollUntil(() => (fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, "utf8")) : undefined), 10_000, "grandchild.pid")
    try {
      expect(alive(pid)).toBe(true)
      // it catches SIGTERM (bit 15 of SigCgt) once node has installed its handler
      const catchesTerm = () => (BigInt(`0x${/SigCgt:\s*([0-9a-f]+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]}`) >> 14n) & 1n
      await pollUntil(() => (catchesTerm() === 1n ? true : undefined), 10_000, "the grandchild's SIGTERM handler")
      expect(fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[2]).toBe(String(job.child.pid)) // pgid
      await c.request("client_command", "abort")
      expect((await job.exit()).code).toBe(0)
      expect(alive(pid)).toBe(true)
      process.kill(-job.child.pid!, "SIGKILL") // the group: what a process backend kills
      await pollUntil(() => (alive(pid) ? undefined : true), 10_000, "the grandchild to die")
    } finally {
      if (alive(pid)) process.kill(pid, "SIGKILL")
    }
  })

  it("allocate-until-oom: exits 77 at its cap when nothing kills it", async () => {
    const job = run("allocate-until-oom", 64)
    expect((await job.exit(20_000)).code).toBe(77)
    expect(job.stdout.some((l) => l.includes("reached the cap of 64 MiB"))).toBe(true)
  })

  it("malformed-frame: hello, Started, then garbage; exits 1 when the parent closes", async () => {
    const job = run("malformed-frame")
    const c = await parent.connection()
    await c.awaitStatus(2)
    await c.whenClosed()
    expect(c.decodeError).toContain("not valid JSON")
    expect((await job.exit()).code).toBe(1)
  })

  it("malformed-frame first: garbage as the first frame", async () => {
    const job = run("malformed-frame", "first")
    const c = await parent.connection()
    await c.whenClosed()
    expect(c.decodeError).toBeDefined()
    expect(c.frames).toHaveLength(0)
    expect((await job.exit()).code).toBe(1)
  })

  it("huge-payload: answers test/huge with that many bytes", async () => {
    const job = run("huge-payload", 3 * 1024 * 1024)
    const c = await parent.connection()
    await c.awaitStatus(2)
    const reply = await c.request("test", "huge")
    expect(reply.rc).toBe("ok")
    const payload = reply.payload as Uint8Array
    expect(payload.byteLength).toBe(3 * 1024 * 1024)
    expect(payload[0]).toBe(0x78)
    expect(payload[payload.byteLength - 1]).toBe(0x78)
    await c.request("client_command", "abort")
    expect((await job.exit()).code).toBe(0)
  })

  it("report-errors: show_errors and show_stats report what it reported", async () => {
    const job = run("report-errors")
    const c = await parent.connection()
    await job.line("report-errors: reported")
    const errors = (await c.request("client_command", "show_errors")).payload as Record<string, Record<string, string>>
    expect(errors.general?.error).toMatch(/^\d{4}-\d\d-\d\dT.*: second failure$/)
    expect(errors.io?.warning).toMatch(/: disk almost full$/)
    const stats = (await c.request("client_command", "show_stats")).payload as Record<string, unknown>
    expect(stats).toMatchObject(fixtureFacts.reportErrors.stats)
  })

  it("long-task: each abort_task is counted and a fresh task starts", async () => {
    const job = run("long-task")
    const c = await parent.connection()
    await job.line("task 1 running")
    expect(((await c.request("client_command", "show_stats")).payload as Record<string, unknown>).tasks).toEqual({ aborted: 0 })
    await c.request("client_command", "abort_task")
    await job.line("task 2 running")
    await c.request("client_command", "abort_task")
    await job.line("task 3 running")
    expect(((await c.request("client_command", "show_stats")).payload as Record<string, unknown>).tasks).toEqual({ aborted: 2 })
    await c.request("client_command", "abort")
    expect((await job.exit()).code).toBe(0)
  })

  it("call-parent: asks parent/hello and exits 0 with the reply", async () => {
    parent.onRequest = (r) => (r.channel === "parent" && r.topic === "hello" ? { payload: { hi: (r.payload as { jobId: string }).jobId } } : undefined)
    const job = run("call-parent")
    expect((await job.exit()).code).toBe(0)
    expect(job.stdout.some((l) => l.includes('call-parent: reply {"hi":"job-1"}'))).toBe(true)
  })

  it("call-parent: exits 3 when the parent has no handler; with stay, the stats say why", async () => {
    const job = run("call-parent")
    expect((await job.exit()).code).toBe(fixtureFacts.exitCodes.callParentFailed)
    await parent.close()
    parent = await RawParent.open()
    const staying = run("call-parent", "stay")
    const c = await parent.connection()
    await c.awaitStatus(2)
    await staying.line("call-parent: request failed", 10_000, "stderr")
    const stats = (await c.request("client_command", "show_stats")).payload as Record<string, unknown>
    const entry = stats["call-parent"]
    expect(entry).toMatchObject({ ok: false, code: "invalid_request" })
    await c.request("client_command", "abort")
    expect((await staying.exit()).code).toBe(0)
  })

  it("runs the fixture named by FLEXEC_SET when copied as an app's main.js", async () => {
    const deployed = Effect.runSync(deployJob({ workspace: jobDir, jobId: "job-2", clientName: "site-1", fixture: "exit-with", args: [5] }))
    const main = path.join(deployed.appDir, "main.js")
    const job = startFixture({ argv: [process.execPath, main], parent, jobDir, env: { FLEXEC_SET: JSON.stringify(deployed.set) } })
    expect((await job.exit()).code).toBe(5)
    const unknown = startFixture({ argv: [process.execPath, main], parent, jobDir, env: { FLEXEC_SET: '{"fixture":"nope"}' } })
    expect((await unknown.exit()).code).toBe(fixtureFacts.exitCodes.unknownFixture)
  })
})
