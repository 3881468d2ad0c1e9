import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { helloJob, makeJobFolder, runCli, stackFrame, startCli, waitUntil, within } from "./helpers.js"

const temps: Array<string> = []
afterAll(() => {
  for (const t of temps) fs.rmSync(t, { recursive: true, force: true })
})

/** A job that ignores the abort request (and, with `ignoreTerm`, SIGTERM too), and logs a tick. */
const stubbornJob = (ignoreTerm: boolean) => `
const { runJob } = require("@flexec/core/worker")
${ignoreTerm ? 'process.on("SIGTERM", () => console.log("ignoring SIGTERM"))' : ""}
runJob({
  run: () => new Promise(() => {
    console.log("working")
    setInterval(() => console.log("tick"), 200)
  })
})
`

describe("flexec run", () => {
  it("runs examples/hello-job: started, the job's log, stopped, the outcome; exit 0", async () => {
    const { code, stdout, stderr } = await runCli(["run", helloJob])
    expect(stderr).toBe("")
    expect(code).toBe(0)
    const lines = stdout.split("\n")
    const index = (re: RegExp) => lines.findIndex((l) => re.test(l))
    expect(index(/starting\s+hello-job on site-1 \(process backend/)).toBe(0)
    expect(index(/\] started$/)).toBeGreaterThan(0)
    expect(index(/\| round 1\/5$/)).toBeGreaterThan(index(/\] started$/))
    expect(index(/\| done$/)).toBeGreaterThan(index(/\| round 5\/5$/))
    expect(index(/\] stopped$/)).toBeGreaterThan(index(/\] started$/))
    expect(lines.filter((l) => l !== "").at(-1)).toMatch(/outcome\s+return code 0 \(success\); exit code 0, signal none$/)
  })

  it("--json: one JSON object per line, with Started, Completed (returnCode 0), the log, and the outcome last", async () => {
    const { code, stdout } = await runCli(["run", helloJob, "--json"])
    expect(code).toBe(0)
    const objects = stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, any>)
    const types = objects.map((o) => o.type)
    expect(types).toContain("Started")
    expect(types).toContain("Stopped")
    const completed = objects.find((o) => o.type === "Completed")
    expect(completed?.outcome.returnCode).toBe(0)
    expect(objects.filter((o) => o.type === "log").map((o) => o.line)).toEqual(["round 1/5", "round 2/5", "round 3/5", "round 4/5", "round 5/5", "done"])
    expect(objects.at(-1)).toMatchObject({ type: "outcome", jobId: "hello-job", returnCode: 0, exit: { code: 0, signal: null, oomKilled: false } })
    expect(types.indexOf("Started")).toBeLessThan(types.indexOf("Completed"))
  })

  it("--workspace keeps the deployment: <ws>/<jobId>/meta.json, app_<site>/ and log.txt", async () => {
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-cli-ws-"))
    temps.push(ws)
    const { code } = await runCli(["run", helloJob, "--workspace", ws, "--site", "site-7"])
    expect(code).toBe(0)
    expect(fs.existsSync(path.join(ws, "hello-job", "meta.json"))).toBe(true)
    expect(fs.existsSync(path.join(ws, "hello-job", "app_site-7", "main.js"))).toBe(true)
    expect(fs.readFileSync(path.join(ws, "hello-job", "log.txt"), "utf8")).toContain("done")
  })

  it("a job folder without meta.json: one line of error, exit 103, no stack trace", async () => {
    const job = makeJobFolder("no-meta", "process.exit(0)", null)
    temps.push(path.dirname(job))
    const { code, stdout, stderr } = await runCli(["run", job])
    expect(code).toBe(103)
    expect(stdout).toBe("")
    expect(stderr.trim().split("\n")).toHaveLength(1)
    expect(stderr).toMatch(/^error: no meta\.json in .*no-meta: a job folder holds meta\.json/)
    expect(stderr).not.toMatch(stackFrame)
  })

  it("a meta.json that is not JSON, or names an invalid job id: one line, exit 103", async () => {
    const job = makeJobFolder("bad-meta", "process.exit(0)", null)
    temps.push(path.dirname(job))
    fs.writeFileSync(path.join(job, "meta.json"), "{ not json")
    const notJson = await runCli(["run", job])
    expect(notJson.code).toBe(103)
    expect(notJson.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^error: .*meta\.json is not a JSON object with a string job_id: .*JSON.*; fix the file$/)])
    fs.writeFileSync(path.join(job, "meta.json"), JSON.stringify({ job_id: "../escape" }))
    const badId = await runCli(["run", job])
    expect(badId.code).toBe(103)
    expect(badId.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^error: invalid job id "\.\.\/escape"/)])
  })

  it("a job folder that does not exist: one line, exit 2", async () => {
    const { code, stderr } = await runCli(["run", "/nonexistent/flexec-job"])
    expect(code).toBe(2)
    expect(stderr.trim().split("\n")).toEqual([expect.stringMatching(/^error: job folder \/nonexistent\/flexec-job does not exist/)])
  })

  it("a job that returns 1: exit status 1 and the outcome says execution error", async () => {
    const job = makeJobFolder("fails", 'const { runJob } = require("@flexec/core/worker"); runJob({ run: () => { console.log("failing"); return 1 } })')
    temps.push(path.dirname(job))
    const { code, stdout } = await runCli(["run", job])
    expect(code).toBe(1)
    expect(stdout).toContain("| failing")
    expect(stdout).toMatch(/return code 1 \(execution error\); exit code 1/)
  })

  it("Ctrl-C (SIGINT) aborts a long job: terminated after the grace period, exit 9", async () => {
    const job = makeJobFolder("long-job", stubbornJob(false))
    temps.push(path.dirname(job))
    const cli = startCli(["run", job, "--grace", "1"])
    await waitUntil(() => cli.stdout().includes("| working"), 30_000, () => `the job to start:\n${cli.stdout()}${cli.stderr()}`)
    cli.child.kill("SIGINT")
    // grace 1 s + kill timeout 5 s + slack
    const code = await within(cli.exited, 20_000, () => `no exit after SIGINT:\n${cli.stdout()}${cli.stderr()}`)
    expect(code).toBe(9)
    expect(cli.stdout()).toMatch(/aborting\s+\(SIGINT\)/)
    expect(cli.stdout()).toMatch(/outcome\s+return code 9 \(aborted\)/)
    expect(cli.stderr()).toBe("")
  })

  it("a second Ctrl-C kills at once, long before the grace period ends", async () => {
    const job = makeJobFolder("very-stubborn", stubbornJob(true))
    temps.push(path.dirname(job))
    const cli = startCli(["run", job, "--grace", "120"])
    await waitUntil(() => cli.stdout().includes("| working"), 30_000, () => `the job to start:\n${cli.stdout()}${cli.stderr()}`)
    cli.child.kill("SIGINT")
    await waitUntil(() => cli.stdout().includes("aborting"), 10_000, () => `"aborting":\n${cli.stdout()}`)
    cli.child.kill("SIGINT")
    const code = await within(cli.exited, 60_000, () => `no exit after the second SIGINT:\n${cli.stdout()}${cli.stderr()}`)
    expect(code).toBe(9)
    expect(cli.stdout()).toMatch(/killing\s+\(SIGINT\)/)
    expect(cli.stdout()).toMatch(/return code 9 \(aborted\); exit code none, signal SIGKILL/)
  })
})
