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
    // the job ignores the abort: after the grace period it gets SIGTERM, and the view says so
    expect(cli.stdout()).toMatch(/SIGTERM\s+sent to the job; SIGKILL in 5s if it does not exit/)
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

/** A job folder `<tmp>/<jobId>` with meta.json and the given files in app/. */
const jobWith = (jobId: string, files: Record<string, string>): string => {
  const job = makeJobFolder(jobId, undefined)
  temps.push(path.dirname(job))
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(job, "app", name), text)
  return job
}

describe("flexec run: what a job starts with", () => {
  it("a job that never calls runJob: says it waits, then why it failed and what to do; exit 104", async () => {
    const job = jobWith("silent", { "main.js": "setInterval(() => {}, 1000)" })
    const { code, stdout } = await runCli(["run", job, "--start-timeout", "1"])
    expect(code).toBe(104)
    expect(stdout).toMatch(/launched\s+waiting for the job to connect and report Started \(up to 1s, --start-timeout\)/)
    expect(stdout).toMatch(/the job did not report Started within 1s and was stopped: it never connected to the parent\. Does its entry point call runJob \(of @flexec\/core\/worker\)\? --start-timeout <s> waits longer\./)
    expect(stdout).toMatch(/outcome\s+return code 104 \(infrastructure error\)/)
    expect(stdout).not.toMatch(/\] started$/m)
  })

  it("--start-timeout must be a positive number", async () => {
    const { code, stderr } = await runCli(["run", helloJob, "--start-timeout", "0"])
    expect(code).toBe(2)
    expect(stderr.trim()).toBe("error: --start-timeout must be a number of seconds > 0, not 0")
  })

  it("app/main.mjs (ESM, loading the runtime from FLEXEC_WORKER_MODULE) is found and run", async () => {
    const job = jobWith("esm-job", {
      "main.mjs": 'const { runJob } = await import(process.env.FLEXEC_WORKER_MODULE)\nrunJob({ run: () => { console.log("hello from esm"); return 0 } })\n'
    })
    const { code, stdout } = await runCli(["run", job])
    expect(stdout).toContain("| hello from esm")
    expect(code).toBe(0)
  })

  it("examples/python-worker (app/main.py) runs with python3: its log, its stats, exit 0", async () => {
    const python = path.resolve(helloJob, "../python-worker")
    const { code, stdout } = await runCli(["run", python])
    expect(stdout).toMatch(/command python3 \{appDir\}\/main\.py/)
    expect(stdout).toContain("| python-worker python-worker on site-1: 3 rounds")
    expect(stdout).toContain("| done")
    expect(code).toBe(0)
  })

  it("--command runs another entry point (placeholders resolved)", async () => {
    const job = jobWith("custom-entry", {
      "train.js": 'const { runJob } = require("@flexec/core/worker"); runJob({ run: (ctx) => { console.log("training " + process.argv[2] + " " + ctx.jobId); return 0 } })'
    })
    const { code, stdout } = await runCli(["run", job, "--command", `${process.execPath} {appDir}/train.js "two words"`])
    expect(stdout).toContain("| training two words custom-entry")
    expect(code).toBe(0)
  })

  it("no entry point and no --command: one line naming what was looked for, exit 103, nothing launched", async () => {
    const job = jobWith("no-entry", { "train.js": "process.exit(0)" })
    const { code, stdout, stderr } = await runCli(["run", job])
    expect(code).toBe(103)
    expect(stdout).toBe("")
    expect(stderr.trim().split("\n")).toEqual([expect.stringMatching(/^error: no app\/main\.js, app\/main\.mjs, app\/main\.py in .*no-entry: put the job's entry point there, or give --command/)])
  })

  it("--image without --backend docker is a usage error (exit 2), not ignored", async () => {
    const { code, stdout, stderr } = await runCli(["run", helloJob, "--image", "flexec-node:test"])
    expect(code).toBe(2)
    expect(stdout).toBe("")
    expect(stderr.trim()).toBe("error: --image is for containers: add --backend docker (the process backend runs the job on this host)")
  })

  it("a second run of the same job in the same --workspace is refused (exit 104) and the running job is untouched", async () => {
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-cli-ws-"))
    temps.push(ws)
    const job = makeJobFolder("twice", stubbornJob(false))
    temps.push(path.dirname(job))
    const first = startCli(["run", job, "--workspace", ws, "--grace", "1"])
    await waitUntil(() => first.stdout().includes("| working"), 30_000, () => `the first run's job to work:\n${first.stdout()}${first.stderr()}`)
    const log = path.join(ws, "twice", "log.txt")
    const second = await runCli(["run", job, "--workspace", ws])
    expect(second.code).toBe(104)
    expect(second.stdout).toBe("")
    expect(second.stderr.trim()).toBe(
      `error: job twice is already running in workspace ${ws} (flexec run, pid ${first.child.pid}): wait for it to end, stop it, or give another --workspace`
    )
    // the first run's deployment is still there, and its job still writes to its log
    const size = fs.statSync(log).size
    await waitUntil(() => fs.statSync(log).size > size, 10_000, () => "the first job to keep logging")
    first.child.kill("SIGINT")
    expect(await within(first.exited, 30_000, () => `no exit after SIGINT:\n${first.stdout()}`)).toBe(9)
    // once the first has ended, the job may run there again
    const third = await runCli(["run", helloJob, "--workspace", ws])
    expect(third.code).toBe(0)
  })
})

describe("flexec run: the live view", () => {
  it("shows the job's last log lines before `stopped`", async () => {
    const job = jobWith("last-words", {
      "main.js": 'const { runJob } = require("@flexec/core/worker"); runJob({ run: () => { for (let i = 1; i <= 50; i++) console.log("line " + i); console.log("last words"); return 0 } })'
    })
    const { code, stdout } = await runCli(["run", job])
    expect(code).toBe(0)
    const lines = stdout.split("\n")
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l))
    expect(at(/\| last words$/)).toBeGreaterThan(0)
    expect(at(/\] stopped$/)).toBeGreaterThan(at(/\| last words$/))
  })

  it("shows the job's setStats values as they change", async () => {
    const job = jobWith("with-stats", {
      "main.js": 'const { runJob } = require("@flexec/core/worker"); runJob({ run: (ctx) => new Promise((resolve) => { ctx.setStats("training", { round: 3, loss: 0.25 }); console.log("working"); ctx.signal.addEventListener("abort", () => resolve(0)) }) })'
    })
    const cli = startCli(["run", job, "--grace", "5"])
    await waitUntil(() => /stats\s+training: round=3 loss=0\.25$/m.test(cli.stdout()), 30_000, () => `the stats line:\n${cli.stdout()}${cli.stderr()}`)
    cli.child.kill("SIGINT")
    expect(await within(cli.exited, 30_000, () => `no exit after SIGINT:\n${cli.stdout()}`)).toBe(9)
  })

  it("a job that SIGTERM does not stop: the view says when SIGKILL is sent", async () => {
    const job = makeJobFolder("sigkill-job", stubbornJob(true))
    temps.push(path.dirname(job))
    const cli = startCli(["run", job, "--grace", "0"])
    await waitUntil(() => cli.stdout().includes("| working"), 30_000, () => `the job to start:\n${cli.stdout()}${cli.stderr()}`)
    cli.child.kill("SIGTERM")
    // grace 0 s + kill timeout 5 s + slack
    expect(await within(cli.exited, 30_000, () => `no exit after SIGTERM:\n${cli.stdout()}`)).toBe(9)
    expect(cli.stdout()).toMatch(/SIGTERM\s+sent to the job; SIGKILL in 5s if it does not exit/)
    expect(cli.stdout()).toMatch(/SIGKILL\s+sent to the job \(it did not exit after SIGTERM\)/)
    expect(cli.stdout()).toMatch(/return code 9 \(aborted\); exit code none, signal SIGKILL/)
  })
})

describe("every job folder of examples/ runs with flexec run", () => {
  const examples = path.resolve(helloJob, "..")
  const jobFolders = fs.readdirSync(examples).filter((name) => fs.existsSync(path.join(examples, name, "meta.json")))
  it("there are job folders (hello-job, python-worker)", () => {
    expect(jobFolders).toEqual(expect.arrayContaining(["hello-job", "python-worker"]))
  })
  for (const name of jobFolders) {
    it(`examples/${name}: return code 0`, async () => {
      const { code, stdout, stderr } = await runCli(["run", path.join(examples, name)])
      expect(stderr).toBe("")
      expect(stdout).toMatch(/outcome\s+return code 0 \(success\)/)
      expect(code).toBe(0)
    })
  }
})
