/**
 * Shared by the example tests: deploy an example app into a temporary
 * workspace (NVFlare's layout), poll with a deadline, unique instance ids.
 */
import { spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { waitUntil } from "@flexec/testing"

/** The examples/ folder. */
export const examplesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
/** The repository root. */
export const repoRoot = path.resolve(examplesDir, "..")

const roots: Array<string> = []

/** A fresh temporary workspace root (removed by `cleanup`). */
export const makeWorkspace = (prefix = "fx-ex-"): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  roots.push(dir)
  return dir
}

/** Removes every workspace `makeWorkspace` made. */
export const cleanup = (): void => {
  for (const dir of roots.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}

/** Deploys `appDir` as `<workspace>/<jobId>/app_<site>` with a `meta.json`. */
export const deploy = (workspace: string, jobId: string, site: string, appDir: string): string => {
  const jobDir = path.join(workspace, jobId)
  fs.mkdirSync(jobDir, { recursive: true })
  fs.writeFileSync(path.join(jobDir, "meta.json"), JSON.stringify({ job_id: jobId, name: jobId, resource_spec: {} }))
  fs.cpSync(appDir, path.join(jobDir, `app_${site}`), { recursive: true })
  return jobDir
}

/** An instance id no other test run uses. */
export const uniqueInstance = (name: string): string => `${name}-${process.pid}-${crypto.randomBytes(3).toString("hex")}`

/** Polls `check` until it returns a value other than `undefined`, or fails at the deadline. */
export const pollUntil = <A>(what: string, check: () => A | undefined | Promise<A | undefined>, timeoutMs = 15_000): Promise<A> =>
  waitUntil(what, check, timeoutMs)

/** Runs `node <script>`; resolves with its exit code and output, or rejects after `timeoutMs`. */
export const runNode = (script: string, timeoutMs = 25_000, env: NodeJS.ProcessEnv = process.env) =>
  new Promise<{ code: number | null; out: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [script], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    child.stdout.on("data", (d) => (out += d))
    child.stderr.on("data", (d) => (out += d))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${script} did not finish in ${timeoutMs} ms:\n${out}`))
    }, timeoutMs)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })
