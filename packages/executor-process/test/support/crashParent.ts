/**
 * Runs `parent.mjs` (a flexec parent in a process of its own) and tracks every
 * process group the crash-recovery tests start, so they can all be killed.
 */
import { Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const packageDir = path.join(here, "..", "..")
const parentScript = path.join(here, "parent.mjs")

/** Builds `dist/` when it is missing or older than a file of `src/` (the parent script imports the built package). */
export const ensureBuilt = (): void => {
  const built = path.join(packageDir, "dist", "index.js")
  const builtAt = fs.existsSync(built) ? fs.statSync(built).mtimeMs : 0
  const sources = fs.readdirSync(path.join(packageDir, "src"), { recursive: true, encoding: "utf8" })
  const stale = sources.some((f) => f.endsWith(".ts") && fs.statSync(path.join(packageDir, "src", f)).mtimeMs > builtAt)
  if (stale) execFileSync("npx", ["tsup"], { cwd: packageDir, stdio: "ignore", timeout: 120_000 })
}

/** Process groups started by the tests (parents and jobs): all SIGKILLed by `killAll`. */
const groups = new Set<number>()

/** Remembers a process group to kill at the end. */
export const track = (pgid: number): void => void groups.add(pgid)

/** SIGKILLs every tracked group (idempotent; a gone group is fine). */
export const killAll = (): void => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, "SIGKILL")
    } catch {
      // already gone
    }
  }
}

/** What a parent is told: its instance, and the jobs to start. */
export interface ParentConfig {
  readonly runtimeDir: string
  readonly instanceId: string
  readonly clientName: string
  readonly workspace: string
  readonly env: Readonly<Record<string, string>>
  readonly jobs: ReadonlyArray<{ readonly jobId: string; readonly meta: unknown; readonly set: unknown }>
  /** The executor option `channel` (default: unix). */
  readonly channel?: unknown
}

/** A running parent and the pids of its Started jobs. */
export interface Parent {
  readonly child: ChildProcess
  readonly jobs: ReadonlyArray<{ readonly jobId: string; readonly pid: number }>
}

/** Starts a parent (leading its own group) and waits, bounded, for its READY line. */
export const startParent = (config: ParentConfig, timeoutMs = 20_000): Effect.Effect<Parent, Error> =>
  Effect.async<Parent, Error>((resume) => {
    const child = spawn(process.execPath, [parentScript, JSON.stringify(config)], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"]
    })
    if (child.pid !== undefined) track(child.pid)
    let out = ""
    let err = ""
    let done = false
    const finish = (result: Effect.Effect<Parent, Error>) => {
      if (done) return
      done = true
      clearTimeout(timer)
      resume(result)
    }
    const timer = setTimeout(() => finish(Effect.fail(new Error(`the parent did not get ready in ${timeoutMs} ms: ${out}${err}`))), timeoutMs)
    child.stderr!.on("data", (chunk: Buffer) => void (err += chunk.toString()))
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const ready = /^READY (.*)$/m.exec(out)
      if (ready) {
        const jobs = (JSON.parse(ready[1]!) as { jobs: Parent["jobs"] }).jobs
        for (const job of jobs) track(job.pid)
        finish(Effect.succeed({ child, jobs }))
      } else if (/^FAILED /m.test(out)) {
        finish(Effect.fail(new Error(`the parent failed: ${out}${err}`)))
      }
    })
    child.once("exit", (code, signal) => finish(Effect.fail(new Error(`the parent exited (${code ?? signal}) before ready: ${out}${err}`))))
  })

/** SIGKILLs the parent (no cleanup of any kind) and waits for its exit. */
export const crash = (parent: Parent): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (parent.child.exitCode !== null || parent.child.signalCode !== null) return resume(Effect.void)
    parent.child.once("exit", () => resume(Effect.void))
    parent.child.kill("SIGKILL")
  })
