/**
 * The process backend against its own promise (docs/SECURITY.md): jobs run as
 * the parent's user and are trusted not to attack each other, but a job still
 * cannot speak as another job, cannot make the parent write outside its files,
 * cannot escape the workspace through its id, and never sees the parent's
 * credentials in argv or logs; recovery never signals a process that is not
 * this instance's job. Real processes through `createProcessExecutor`.
 * (recover.test.ts covers forged pid files naming another process, a reused
 * pid, a foreign group and another instance; launch.test.ts planted log links.)
 */
import { afterAll, afterEach, describe, expect, it } from "@effect/vitest"
import { deployJob, waitForStarted, waitUntil } from "@flexec/testing"
import { Effect } from "effect"
import { spawn, spawnSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createProcessExecutor, ProcessJobLauncher } from "../src/index.js"
import { writePidFile } from "../src/internal/pidFile.js"
import { bootId, startTimeOf } from "../src/internal/procfs.js"
import { isDead } from "./helpers.js"

const counts = { cases: 0, faults: 0, leaks: 0 }
afterAll(() => console.log(`security: process cases=${counts.cases} faults-injected=${counts.faults} leaks=${counts.leaks}`))

const roots: Array<string> = []
const children: Array<ChildProcess> = []
afterEach(() => {
  for (const child of children.splice(0)) {
    try {
      process.kill(-child.pid!, "SIGKILL")
    } catch {
      // gone
    }
  }
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true })
})

/** Everything the parent writes through console (Effect's default logger) until `stop`. */
const captureConsole = () => {
  const lines: Array<string> = []
  const methods = ["log", "info", "warn", "error", "debug"] as const
  const originals = methods.map((m) => console[m])
  methods.forEach((m, i) => {
    console[m] = (...args: Array<unknown>) => {
      lines.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a) ?? String(a))).join(" "))
      originals[i]!.apply(console, args)
    }
  })
  return {
    stop: () => {
      methods.forEach((m, i) => (console[m] = originals[i]!))
      return lines.join("\n")
    }
  }
}

const SECRETS = { token: "FLTOKEN-s3cr3t-0a1b2c", tokenSignature: "FLSIG-s1gn4ture-3d4e5f", ssid: "FLSSID-77aa88" }
const client = { clientName: "site-1", ...SECRETS }

const makeRoot = () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "fxsec-"))
  roots.push(root)
  const workspace = path.join(root, "ws")
  fs.mkdirSync(workspace)
  return { root, workspace, runtimeDir: path.join(root, "rt") }
}

/**
 * A probe job: keeps what the environment gave it before the runtime read it,
 * reports through `show_stats`, tries to speak as another job on request, and
 * plants links as told; it runs until aborted.
 */
const probeApp = `
const net = require("node:net")
const fs = require("node:fs")
const early = { url: process.env.FLEXEC_PARENT_URL, token: process.env.FLEXEC_CHANNEL_TOKEN, auth: process.env.FLEXEC_JOB_AUTH_TOKEN, sig: process.env.FLEXEC_JOB_TOKEN_SIGNATURE }
const { runJob } = require("@flexec/core/worker")
const frame = (header) => {
  const h = Buffer.from(JSON.stringify(header))
  const b = Buffer.alloc(8 + h.length)
  b.writeUInt32BE(4 + h.length, 0); b.writeUInt32BE(h.length, 4); h.copy(b, 8)
  return b
}
const tryHello = (socketPath, jobId, token) => new Promise((resolve) => {
  const s = net.connect(socketPath)
  let data = Buffer.alloc(0)
  const done = (r) => { s.destroy(); resolve(r) }
  s.on("error", (e) => done("error:" + e.code))
  s.on("connect", () => s.write(frame({ kind: "hello", version: 1, jobId, token })))
  s.on("data", (d) => { data = Buffer.concat([data, d]); if (data.includes("hello_ok")) done("hello_ok") })
  s.on("close", () => done("closed"))
})
runJob({
  run: async (ctx) => {
    ctx.setStats("probe", {
      pid: process.pid,
      url: early.url,
      received: [early.auth, early.sig, typeof early.token],
      leftover: ["FLEXEC_CHANNEL_TOKEN", "FLEXEC_JOB_AUTH_TOKEN", "FLEXEC_JOB_TOKEN_SIGNATURE", "FLEXEC_JOB_SSID"].filter((k) => k in process.env),
      envHasSecret: JSON.stringify(process.env).includes("FLTOKEN") || JSON.stringify(process.env).includes("FLSIG")
    })
    console.log("probe running as " + ctx.jobId)
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve))
    return 0
  },
  handlers: {
    probe: {
      speakAs: (message) => tryHello(message.payload.socketPath, message.payload.jobId, early.token),
      plant: (message) => {
        for (const [name, target] of Object.entries(message.payload)) { fs.rmSync(name, { force: true }); fs.symlinkSync(target, name) }
        console.log("x".repeat(4096))
        return "planted"
      },
      exit: (message) => { setTimeout(() => process.exit(message.payload), 10); return "bye" }
    }
  }
})
`

const spawnSyncMkfifo = (file: string) => {
  const result = spawnSync("mkfifo", [file])
  if (result.status !== 0) throw new Error(`mkfifo failed: ${String(result.stderr)}`)
}

const deployProbe = (workspace: string, jobId: string) => {
  const appDir = path.join(workspace, jobId, "app_site-1")
  fs.mkdirSync(appDir, { recursive: true })
  fs.writeFileSync(path.join(workspace, jobId, "meta.json"), JSON.stringify({ job_id: jobId }))
  fs.writeFileSync(path.join(appDir, "main.js"), probeApp)
}

type Executor = Awaited<ReturnType<typeof createProcessExecutor>>

const waitStarted = (executor: Executor, jobId: string) => waitForStarted(executor, jobId, 15_000)

interface Probe {
  readonly pid: number
  readonly url: string
  readonly received: ReadonlyArray<string>
  readonly leftover: ReadonlyArray<string>
  readonly envHasSecret: boolean
}
const probeOf = (executor: Executor, jobId: string): Promise<Probe> =>
  waitUntil("the probe's stats", async () => ((await executor.getRunInfo(jobId)) as { probe?: Probe }).probe, 10_000, 20)

const ask = (executor: Executor, jobId: string, topic: string, payload: unknown) =>
  executor.sendToJob({ jobId, channel: "probe", topic, message: { headers: {}, payload: payload as never }, timeout: 10_000 })

describe("security: process backend", () => {
  it("credentials: not in argv, not in the log, removed from the job's process.env; channel dirs private and per job; a job cannot speak as another", async () => {
    const { root, runtimeDir, workspace } = makeRoot()
    deployProbe(workspace, "job-a")
    const b = await Effect.runPromise(deployJob({ workspace, jobId: "job-b", clientName: "site-1", fixture: "exit-on-abort" }))
    const logged = captureConsole()
    const executor = await createProcessExecutor({ client, instanceId: "sec", runtimeDir })
    try {
      await executor.startApp({ jobId: "job-a", args: { workspace } })
      await executor.startApp({ jobId: "job-b", jobMeta: b.meta, args: { workspace, set: b.set } })
      await waitStarted(executor, "job-a")
      await waitStarted(executor, "job-b")
      const probe = await probeOf(executor, "job-a")
      counts.cases++

      // argv: /proc/<pid>/cmdline of the job and of the parent
      for (const pid of [probe.pid, process.pid]) {
        const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")
        for (const secret of Object.values(SECRETS)) expect(cmdline).not.toContain(secret)
      }
      // the credentials reached the job through its environment, and the runtime took them out of process.env
      expect(probe.received).toEqual([SECRETS.token, SECRETS.tokenSignature, "string"])
      expect(probe.leftover).toEqual([])
      expect(probe.envHasSecret).toBe(false)

      // channel directories: one per job, 0700, owned by the parent, under the runtime dir (not the workspace)
      const dirA = path.dirname(probe.url.replace(/^unix:\/\//, ""))
      expect(dirA.startsWith(runtimeDir)).toBe(true)
      expect(dirA.startsWith(workspace)).toBe(false)
      const channelDirs = fs.readdirSync(path.dirname(dirA)).map((d) => path.join(path.dirname(dirA), d))
      expect(channelDirs.length).toBe(2)
      for (const dir of channelDirs) {
        const stat = fs.lstatSync(dir)
        expect(stat.isDirectory() && !stat.isSymbolicLink()).toBe(true)
        expect(stat.mode & 0o777).toBe(0o700)
        expect(stat.uid).toBe(process.getuid!())
      }
      const dirB = channelDirs.find((d) => d !== dirA)!
      const socketB = path.join(dirB, fs.readdirSync(dirB)[0]!)

      // job A, with its own valid token, cannot say hello as job B, nor as itself on B's socket
      counts.faults += 3
      expect(await ask(executor, "job-a", "speakAs", { socketPath: socketB, jobId: "job-b" })).toMatchObject({ payload: "closed" })
      expect(await ask(executor, "job-a", "speakAs", { socketPath: socketB, jobId: "job-a" })).toMatchObject({ payload: "closed" })
      // nor open a second connection as itself while it is connected
      expect(await ask(executor, "job-a", "speakAs", { socketPath: probe.url.replace(/^unix:\/\//, ""), jobId: "job-a" })).toMatchObject({
        payload: "closed"
      })
      expect(await executor.getStatus("job-b")).toBe(2)

      await executor.abortApp("job-a")
      await executor.abortApp("job-b")
      // the parent's logs (the job logs) carry no credential
      for (const jobId of ["job-a", "job-b"]) {
        const log = fs.readFileSync(path.join(workspace, jobId, "log.txt"), "utf8")
        for (const secret of Object.values(SECRETS)) expect(log).not.toContain(secret)
      }
      expect(fs.readFileSync(path.join(workspace, "job-a", "log.txt"), "utf8")).toContain("probe running as job-a")
      // nor the parent's own log lines
      const parentLog = logged.stop()
      expect(parentLog.length).toBeGreaterThan(0)
      for (const secret of Object.values(SECRETS)) expect(parentLog).not.toContain(secret)
      void root
    } finally {
      logged.stop()
      await executor.close()
    }
  }, 60_000)

  it("links planted as log.txt and _process_rc.txt are not followed: their targets are untouched and the rc is not taken from them", async () => {
    const { root, runtimeDir, workspace } = makeRoot()
    deployProbe(workspace, "job-l")
    const victimLog = path.join(root, "victim-log.txt")
    const victimRc = path.join(root, "victim-rc.txt")
    fs.writeFileSync(victimLog, "precious\n")
    fs.writeFileSync(victimRc, "0\n")
    const executor = await createProcessExecutor({ client, instanceId: "sec-links", runtimeDir })
    try {
      await executor.startApp({ jobId: "job-l", args: { workspace } })
      await waitStarted(executor, "job-l")
      counts.cases++
      counts.faults += 2
      const jobDir = path.join(workspace, "job-l")
      await ask(executor, "job-l", "plant", { [path.join(jobDir, "log.txt")]: victimLog, [path.join(jobDir, "_process_rc.txt")]: victimRc })
      await ask(executor, "job-l", "exit", 5)
      const outcome = await executor.awaitCompletion("job-l")
      // exit 5 (not the 0 of the linked file): ExecutionError
      expect(outcome.exit.code).toBe(5)
      expect(outcome.returnCode).toBe(1)
      expect(fs.readFileSync(victimLog, "utf8")).toBe("precious\n")
      expect(fs.readFileSync(victimRc, "utf8")).toBe("0\n")
      // the parent removed the rc link itself, not its target
      expect(fs.existsSync(path.join(jobDir, "_process_rc.txt"))).toBe(false)
    } finally {
      await executor.close()
    }
  }, 60_000)

  it("job ids and job directories cannot escape the workspace: traversal ids and a symlinked job dir are refused before anything runs", async () => {
    const { root, runtimeDir, workspace } = makeRoot()
    // a job directory planted as a link to a directory outside the workspace
    const outside = path.join(root, "outside")
    fs.mkdirSync(path.join(outside, "app_site-1"), { recursive: true })
    fs.writeFileSync(path.join(outside, "meta.json"), JSON.stringify({ job_id: "job-link" }))
    fs.writeFileSync(path.join(outside, "app_site-1", "main.js"), `require("node:fs").writeFileSync(${JSON.stringify(path.join(outside, "ran"))}, "1")`)
    fs.symlinkSync(outside, path.join(workspace, "job-link"))
    deployProbe(root, "escaped")
    const executor = await createProcessExecutor({ client, instanceId: "sec-ids", runtimeDir })
    try {
      const cases: Array<[string, string]> = [
        ["../escaped", "InvalidJobId"],
        ["..", "InvalidJobId"],
        ["a/../../escaped", "InvalidJobId"],
        ["/etc", "InvalidJobId"],
        [".hidden", "InvalidJobId"],
        ["startup", "InvalidJobId"],
        ["job-link", "InvalidJobMeta"]
      ]
      for (const [jobId, tag] of cases) {
        counts.cases++
        counts.faults++
        const error = await executor.startApp({ jobId, args: { workspace } }).then(
          () => undefined,
          (e: { _tag?: string }) => e
        )
        expect(error?._tag, jobId).toBe(tag)
      }
      // a client name is an id too: it names app_<client>
      const badClient = await executor
        .startApp({ jobId: "job-x", client: { clientName: "../site-1" }, args: { workspace } })
        .then(() => undefined, (e: { _tag?: string }) => e)
      expect(badClient?._tag).toBe("InvalidClient")
      expect(await executor.jobs()).toEqual([])
      expect(fs.existsSync(path.join(outside, "ran"))).toBe(false)
      expect(fs.existsSync(path.join(root, "escaped", "log.txt"))).toBe(false)
    } finally {
      await executor.close()
    }
  }, 30_000)

  it("a meta.json the job replaced with a FIFO, a link or a huge file is refused without blocking or reading it all", async () => {
    const { root, runtimeDir, workspace } = makeRoot()
    const executor = await createProcessExecutor({ client, instanceId: "sec-meta", runtimeDir })
    try {
      const plant = (jobId: string, how: (file: string) => void) => {
        deployProbe(workspace, jobId)
        const file = path.join(workspace, jobId, "meta.json")
        fs.rmSync(file)
        how(file)
      }
      plant("job-fifo", (file) => spawnSyncMkfifo(file))
      plant("job-link", (file) => fs.symlinkSync(path.join(root, "elsewhere.json"), file))
      fs.writeFileSync(path.join(root, "elsewhere.json"), JSON.stringify({ job_id: "job-link" }))
      plant("job-huge", (file) => {
        fs.writeFileSync(file, "{}")
        fs.truncateSync(file, 64 * 1024 * 1024)
      })
      for (const [jobId, tags] of [
        ["job-fifo", ["InvalidJobMeta"]],
        ["job-link", ["JobMetaMissing", "InvalidJobMeta"]],
        ["job-huge", ["InvalidJobMeta"]]
      ] as const) {
        counts.cases++
        counts.faults++
        const error = await executor.startApp({ jobId, args: { workspace } }).then(
          () => undefined,
          (e: { _tag?: string }) => e
        )
        expect(tags as ReadonlyArray<string | undefined>, jobId).toContain(error?._tag)
      }
      expect(await executor.jobs()).toEqual([])
    } finally {
      await executor.close()
    }
  }, 30_000)

  it("recovery does not signal a process that is not this instance's job, whatever a forged pid file says", async () => {
    const { runtimeDir } = makeRoot()
    fs.mkdirSync(runtimeDir, { recursive: true, mode: 0o700 })
    const start = (env: Record<string, string>) => {
      const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { detached: true, env, stdio: "ignore" })
      child.on("error", () => {})
      children.push(child)
      return child
    }
    // same job id, but another instance's process (its environment says so) under a pid file claiming ours
    const otherInstance = start({ FLEXEC_JOB_ID: "job-f", FLEXEC_INSTANCE_ID: "someone-else" })
    // no flexec environment at all
    const plain = start({ PATH: process.env.PATH ?? "" })
    await waitUntil("both processes in /proc", () => ([otherInstance, plain].every((c) => startTimeOf(c.pid!) !== undefined) ? true : undefined), 5000, 10).catch(() => undefined)
    const forged = (pid: number, pgid: number, jobId: string) => ({
      version: 1 as const,
      pid,
      pgid,
      startTime: startTimeOf(pid) ?? "0",
      bootId: bootId(),
      jobId,
      instanceId: "inst",
      channelToken: "t",
      channelDir: "/nonexistent",
      startedAt: Date.now()
    })
    writePidFile(runtimeDir, forged(otherInstance.pid!, otherInstance.pid!, "job-f"))
    writePidFile(runtimeDir, forged(plain.pid!, plain.pid!, "job-p"))
    // the parent itself, and pid 1
    writePidFile(runtimeDir, forged(process.pid, process.pid, "job-self"))
    writePidFile(runtimeDir, forged(1, 1, "job-init"))
    counts.cases++
    counts.faults += 4
    const launcher = ProcessJobLauncher.make({ runtimeDir })
    const recovered = await Effect.runPromise(launcher.recover("inst"))
    expect(recovered).toEqual([])
    for (const child of [otherInstance, plain]) {
      expect(isDead(child.pid!)).toBe(false)
      expect(child.signalCode).toBeNull()
    }
  }, 30_000)
})
