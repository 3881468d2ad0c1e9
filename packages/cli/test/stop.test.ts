/**
 * Every way `flexec run` can end before its job does — EPIPE on stdout, SIGHUP,
 * SIGTERM, SIGINT, an internal error, a closed terminal (tmux), Ctrl-C through
 * `npm run flexec` — aborts the job, waits for its outcome and removes what the
 * run created (the temporary workspace, the executor's runtime directory).
 * Real processes and real signals; the job records its pid so the test can
 * check it is gone.
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { bin, makeJobFolder, startCli, waitUntil, within } from "./helpers.js"
import type { Cli } from "./helpers.js"

/** A word for a POSIX shell: the checkout may sit under a path with blanks in it. */
const q = (word: string): string => `'${word.replaceAll("'", "'\\''")}'`

const temps: Array<string> = []
const pids: Array<number> = []
afterAll(() => {
  for (const pid of pids) {
    try {
      process.kill(-pid, "SIGKILL")
    } catch {
      // gone
    }
  }
  for (const t of temps) fs.rmSync(t, { recursive: true, force: true })
})

/** A job that records its pid, works until aborted, then says so and exits 0. */
const abortableJob = `
const fs = require("node:fs")
const { runJob } = require("@flexec/core/worker")
fs.writeFileSync("job.pid", String(process.pid))
runJob({
  run: (ctx) => new Promise((resolve) => {
    console.log("working in pid " + process.pid)
    const tick = setInterval(() => console.log("tick"), 100)
    ctx.signal.addEventListener("abort", () => {
      clearInterval(tick)
      console.log("aborted by the parent")
      resolve(0)
    })
  })
})
`

const isGone = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]
    return state === "Z" || state === "X"
  } catch {
    return true
  }
}

const runtimeDirOf = (cliPid: number): string => path.join(os.tmpdir(), `flexec-${process.getuid?.() ?? 0}`, `process-cli-${cliPid}`)

/** Starts `flexec run` on a fresh abortable job and waits until the job works; returns its pid and the temporary workspace. */
const startRun = async (extra: ReadonlyArray<string> = [], env: NodeJS.ProcessEnv = process.env) => {
  const job = makeJobFolder("stop-job", abortableJob)
  temps.push(path.dirname(job))
  const cli = startCli(["run", job, "--grace", "5", ...extra], env)
  await waitUntil(() => cli.stdout().includes("| working"), 30_000, () => `the job to work:\n${cli.stdout()}${cli.stderr()}`)
  const workspace = /workspace (\S+),/.exec(cli.stdout())![1]!
  // from the job's log line: its workspace may already be gone (an internal error cleans up at once)
  const jobPid = Number(/\| working in pid (\d+)/.exec(cli.stdout())![1])
  pids.push(jobPid)
  return { cli, workspace, jobPid }
}

/** The run left nothing behind: the job, its workspace and the runtime directory are gone. */
const expectCleanedUp = async (cli: Cli, workspace: string, jobPid: number) => {
  await waitUntil(() => isGone(jobPid), 10_000, () => `job ${jobPid} to be gone`)
  expect(fs.existsSync(workspace)).toBe(false)
  expect(fs.existsSync(runtimeDirOf(cli.child.pid!))).toBe(false)
}

describe("flexec run stops its job whatever ends it", () => {
  for (const signal of ["SIGTERM", "SIGHUP", "SIGINT"] as const) {
    it(`${signal}: the job is aborted (it sees its signal), the outcome waited for, exit 9, nothing left`, async () => {
      const { cli, workspace, jobPid } = await startRun()
      cli.child.kill(signal)
      const code = await within(cli.exited, 30_000, () => `no exit after ${signal}:\n${cli.stdout()}${cli.stderr()}`)
      expect(code).toBe(9)
      expect(cli.stdout()).toMatch(new RegExp(`aborting\\s+\\(${signal}\\) the job has 5s to stop`))
      expect(cli.stdout()).toContain("| aborted by the parent")
      expect(cli.stdout()).toMatch(/outcome\s+return code 9 \(aborted\); exit code 0/)
      expect(cli.stderr()).toBe("")
      await expectCleanedUp(cli, workspace, jobPid)
    })
  }

  it("EPIPE (the reader of stdout went away, as `| head` does): no crash, the job aborted, exit 9, nothing left", async () => {
    const { cli, workspace, jobPid } = await startRun()
    cli.child.stdout!.destroy()
    const code = await within(cli.exited, 30_000, () => `no exit after EPIPE:\n${cli.stderr()}`)
    expect(code).toBe(9)
    expect(cli.stderr()).toBe("")
    await expectCleanedUp(cli, workspace, jobPid)
  })

  it("a shell pipe into head: flexec ends with the job aborted and cleaned up", async () => {
    const job = makeJobFolder("stop-job", abortableJob)
    temps.push(path.dirname(job))
    const statusFile = path.join(path.dirname(job), "status")
    const out = spawnSync("bash", ["-c", `node ${q(bin)} run ${q(job)} | head -n 3; echo "\${PIPESTATUS[0]}" > ${q(statusFile)}`], { encoding: "utf8", timeout: 60_000 })
    expect(out.stdout.split("\n").filter((l) => l !== "")).toHaveLength(3)
    expect(fs.readFileSync(statusFile, "utf8").trim()).toBe("9")
    expect(out.stderr).toBe("")
  })

  for (const fault of ["defect", "uncaught"] as const) {
    it(`an internal error (${fault}): one error line, the job aborted, exit 1, nothing left`, async () => {
      const { cli, workspace, jobPid } = await startRun([], { ...process.env, FLEXEC_CLI_FAULT: fault })
      const code = await within(cli.exited, 30_000, () => `no exit after the fault:\n${cli.stdout()}${cli.stderr()}`)
      expect(code).toBe(1)
      expect(cli.stderr()).toMatch(new RegExp(`^error: FLEXEC_CLI_FAULT=${fault}`))
      expect(cli.stderr().trim().split("\n")).toHaveLength(1)
      await expectCleanedUp(cli, workspace, jobPid)
    })
  }
})

const hasTmux = spawnSync("tmux", ["-V"]).status === 0


/** Runs `shellCommand` in a detached tmux session (a real terminal) of its own server socket. */
const tmux = (socket: string, ...args: ReadonlyArray<string>) => execFileSync("tmux", ["-S", socket, ...args], { encoding: "utf8" })

describe.skipIf(!hasTmux)("flexec run in a real terminal (tmux) [skipped without tmux: apt-get install tmux]", () => {
  /** A tmux server of its own running `command` in a 200×50 pane that stays (dead) after the command ends. */
  const session = (name: string, command: string) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-tmux-"))
    temps.push(dir)
    const socket = path.join(dir, "tmux.sock")
    const conf = path.join(dir, "tmux.conf")
    fs.writeFileSync(conf, "set -g remain-on-exit on\n")
    execFileSync("tmux", ["-S", socket, "-f", conf, "new-session", "-d", "-s", name, "-x", "200", "-y", "50", command])
    const screen = () => tmux(socket, "capture-pane", "-p", "-t", name)
    return { socket, screen, kill: () => spawnSync("tmux", ["-S", socket, "kill-server"]) }
  }

  it("closing the terminal (tmux kill-server: SIGHUP): the job is aborted and nothing is left", async () => {
    const job = makeJobFolder("stop-job", abortableJob)
    temps.push(path.dirname(job))
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-tmux-ws-"))
    temps.push(ws)
    const t = session("hup", `exec node ${q(bin)} run ${q(job)} --workspace ${q(ws)}`)
    try {
      await waitUntil(() => fs.existsSync(path.join(ws, "stop-job", "job.pid")) && t.screen().includes("working"), 30_000, () => `the job to work:\n${t.screen()}`)
      const jobPid = Number(fs.readFileSync(path.join(ws, "stop-job", "job.pid"), "utf8"))
      pids.push(jobPid)
      const lock = path.join(ws, ".flexec-run-stop-job.json")
      const cliPid = (JSON.parse(fs.readFileSync(lock, "utf8")) as { pid: number }).pid
      t.kill()
      await waitUntil(() => isGone(jobPid) && isGone(cliPid), 30_000, () => `the job ${jobPid} and flexec ${cliPid} to end`)
      // the job was aborted in order: it said so in its log
      expect(fs.readFileSync(path.join(ws, "stop-job", "log.txt"), "utf8")).toContain("aborted by the parent")
      expect(fs.existsSync(lock)).toBe(false)
      expect(fs.existsSync(runtimeDirOf(cliPid))).toBe(false)
    } finally {
      t.kill()
    }
  }, 120_000)

  it("Ctrl-C through `npm run flexec`: the job aborted (outcome 9), then npm ends by SIGINT (a shell shows 130); nothing left", async () => {
    const job = makeJobFolder("stop-job", abortableJob)
    temps.push(path.dirname(job))
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-tmux-ws-"))
    temps.push(ws)
    const repo = path.resolve(path.dirname(bin), "../../..")
    // the pane runs a recorder that keeps npm's exit (code or signal) in a file and ignores Ctrl-C itself
    const exitFile = path.join(ws, "..", `${path.basename(ws)}.exit.json`)
    temps.push(exitFile)
    const recorder = `process.on("SIGINT", () => {}); const c = require("node:child_process").spawn("npm", process.argv.slice(1), { stdio: "inherit" }); c.on("exit", (code, signal) => require("node:fs").writeFileSync(${JSON.stringify(exitFile)}, JSON.stringify({ code, signal })))`
    const t = session("npm", `cd ${q(repo)} && exec node -e ${q(recorder)} run flexec -- run ${q(job)} --workspace ${q(ws)} --grace 5`)
    try {
      await waitUntil(() => fs.existsSync(path.join(ws, "stop-job", "job.pid")) && t.screen().includes("working"), 60_000, () => `the job to work:\n${t.screen()}`)
      const jobPid = Number(fs.readFileSync(path.join(ws, "stop-job", "job.pid"), "utf8"))
      pids.push(jobPid)
      tmux(t.socket, "send-keys", "-t", "npm", "C-c")
      await waitUntil(() => fs.existsSync(exitFile), 60_000, () => `npm to exit:\n${t.screen()}`)
      // npm waits for flexec, then re-raises the SIGINT it got from the terminal
      expect(JSON.parse(fs.readFileSync(exitFile, "utf8"))).toEqual({ code: null, signal: "SIGINT" })
      expect(t.screen()).toMatch(/aborting\s+\(SIGINT\)/)
      expect(t.screen()).toMatch(/return code 9 \(aborted\)/)
      await waitUntil(() => isGone(jobPid), 10_000, () => `job ${jobPid} to be gone`)
      expect(fs.readFileSync(path.join(ws, "stop-job", "log.txt"), "utf8")).toContain("aborted by the parent")
      expect(fs.existsSync(path.join(ws, ".flexec-run-stop-job.json"))).toBe(false)
    } finally {
      t.kill()
    }
  }, 150_000)

  it("the live view on a terminal: the status line shows the job's stats; NO_COLOR leaves out every colour", async () => {
    const job = makeJobFolder("tty-job", `
const { runJob } = require("@flexec/core/worker")
runJob({ run: (ctx) => new Promise((resolve) => {
  ctx.setStats("training", { round: 7, loss: 0.5 })
  console.log("working")
  ctx.signal.addEventListener("abort", () => resolve(0))
}) })
`)
    temps.push(path.dirname(job))
    for (const noColor of [false, true]) {
      const t = session("tty", `${noColor ? "NO_COLOR=1 " : "unset NO_COLOR FORCE_COLOR; "}exec node ${q(bin)} run ${q(job)} --grace 5`)
      try {
        await waitUntil(() => /tty-job: started\s+training: round=7 loss=0\.5/.test(t.screen()), 30_000, () => `the status line with the stats:\n${t.screen()}`)
        const withEscapes = tmux(t.socket, "capture-pane", "-p", "-e", "-t", "tty")
        // SGR colour sequences: ESC [ <digits> m (the dim log bar and the ✔/✘ use them)
        const sgr = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`)
        if (noColor) expect(withEscapes).not.toMatch(sgr)
        else expect(withEscapes).toMatch(sgr)
        tmux(t.socket, "send-keys", "-t", "tty", "C-c")
        await waitUntil(() => /return code 9 \(aborted\)/.test(t.screen()), 30_000, () => `the outcome:\n${t.screen()}`)
      } finally {
        t.kill()
      }
    }
  }, 120_000)
})
