/**
 * Runs the built `flexec` (node dist/bin.cjs) as a real child process and
 * waits on its output with deadlines.
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { waitUntil as waitFor } from "@flexec/testing"

const here = path.dirname(fileURLToPath(import.meta.url))
/** The built command. */
export const bin = path.resolve(here, "../dist/bin.cjs")
/** The repository's example job. */
export const helloJob = path.resolve(here, "../../../examples/hello-job")

if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run \`npm run build\` in packages/cli first`)

/** A running `flexec`. */
export interface Cli {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  readonly exited: Promise<number | string>
}

/** Starts `node dist/bin.cjs ...args`. */
export const startCli = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env, cwd?: string): Cli => {
  const child = spawn(process.execPath, [bin, ...args], { env, cwd: cwd ?? path.dirname(bin), stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  let err = ""
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c))
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (err += c))
  const exited = new Promise<number | string>((resolve) => child.on("close", (code, signal) => resolve(code ?? signal ?? -1)))
  return { child, stdout: () => out, stderr: () => err, exited }
}

/** `promise`, or a rejection with `describe()` after `ms`. */
export const within = <A>(promise: Promise<A>, ms: number, describe: () => string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(describe())), ms)
    promise.then((a) => {
      clearTimeout(timer)
      resolve(a)
    }, (e: unknown) => {
      clearTimeout(timer)
      reject(e instanceof Error ? e : new Error(String(e)))
    })
  })

/** Runs `flexec ...args` to its end; fails if it takes longer than `deadlineMs`. */
export const runCli = async (args: ReadonlyArray<string>, deadlineMs = 60_000, env?: NodeJS.ProcessEnv) => {
  const cli = startCli(args, env)
  const code = await within(cli.exited, deadlineMs, () => {
    cli.child.kill("SIGKILL")
    return `flexec ${args.join(" ")} did not end within ${deadlineMs} ms\nstdout:\n${cli.stdout()}\nstderr:\n${cli.stderr()}`
  })
  return { code, stdout: cli.stdout(), stderr: cli.stderr() }
}

/** `@flexec/testing`'s `waitUntil` for a predicate; the failure says `what()` as it is then (e.g. the output so far). */
export const waitUntil = async (predicate: () => boolean, ms: number, what: () => string): Promise<void> => {
  await waitFor("the condition", () => (predicate() ? true : undefined), ms).catch(() => {
    throw new Error(`timed out after ${ms} ms waiting for ${what()}`)
  })
}

/** A temporary job folder `<tmp>/<jobId>`: meta.json (none when `meta` is null) and app/main.js. */
export const makeJobFolder = (
  jobId: string,
  mainJs: string | undefined,
  meta: Record<string, unknown> | null = { job_id: jobId, resource_spec: {} }
): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-cli-test-"))
  const job = path.join(dir, jobId)
  fs.mkdirSync(path.join(job, "app"), { recursive: true })
  if (meta !== null) fs.writeFileSync(path.join(job, "meta.json"), JSON.stringify(meta))
  if (mainJs !== undefined) fs.writeFileSync(path.join(job, "app", "main.js"), mainJs)
  return job
}

/** A line of output that looks like a stack frame. */
export const stackFrame = /^\s+at .+:\d+:\d+\)?$/m
