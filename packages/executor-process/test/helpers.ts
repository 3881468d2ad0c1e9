/**
 * Test helpers: temporary workspaces, hand-built launch requests, polling with
 * a deadline.
 */
import { Duration, Effect, Schedule } from "effect"
import type { Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { PassThrough } from "node:stream"
import { fileURLToPath } from "node:url"
import type { JobId, LaunchRequest } from "../src/internal/core.js"

const here = path.dirname(fileURLToPath(import.meta.url))

/** The repository's root, wherever it was cloned. */
export const repoRoot = path.resolve(here, "..", "..", "..")

/** The folder that holds `@flexec/core` for a job's `NODE_PATH`: the workspace's own node_modules. */
export const workspaceNodeModules = path.join(repoRoot, "node_modules")

/** The built worker runtime of this checkout. */
export const workerRuntimeModule = path.join(repoRoot, "packages", "core", "dist", "worker.cjs")

export const fixture = (name: string): string => path.join(here, "fixtures", name)

/** The directories of one test job. */
export interface TestDirs {
  readonly root: string
  readonly workspace: string
  readonly jobDir: string
  readonly appDir: string
  readonly runtimeDir: string
}

/** A fresh workspace with one deployed job directory, removed when the scope closes. */
export const makeDirs = (jobId = "job-1"): Effect.Effect<TestDirs, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "fxp-"))
      const workspace = path.join(root, "ws")
      const jobDir = path.join(workspace, jobId)
      const appDir = path.join(jobDir, "app_site-1")
      const runtimeDir = path.join(root, "rt")
      fs.mkdirSync(appDir, { recursive: true })
      fs.mkdirSync(runtimeDir, { recursive: true, mode: 0o700 })
      return { root, workspace, jobDir, appDir, runtimeDir }
    }),
    (dirs) => Effect.sync(() => fs.rmSync(dirs.root, { recursive: true, force: true }))
  )

/** The variables every test job gets (a small allowlist, as the engine builds it). */
export const baseEnv = (jobId: string): Record<string, string> => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: os.homedir(),
  FLEXEC_JOB_ID: jobId,
  FLEXEC_CHANNEL_TOKEN: "token-" + jobId
})

/** A launch request built by hand (the engine is not involved). */
export const makeRequest = (
  dirs: TestDirs,
  command: ReadonlyArray<string>,
  overrides: Partial<LaunchRequest> = {}
): LaunchRequest => {
  const jobId = (overrides.jobId ?? path.basename(dirs.jobDir)) as JobId
  const channelDir = path.join(dirs.runtimeDir, "c-" + jobId)
  return {
    jobId,
    client: { clientName: "site-1" },
    site: "site-1",
    instanceId: "test",
    meta: {},
    paths: {
      workspace: dirs.workspace,
      jobDir: dirs.jobDir,
      appDir: dirs.appDir,
      startup: path.join(dirs.workspace, "startup"),
      local: path.join(dirs.workspace, "local"),
      logFile: path.join(dirs.jobDir, "log.txt"),
      rcFile: path.join(dirs.jobDir, "_process_rc.txt"),
      runtimeDir: dirs.runtimeDir
    },
    allocation: {},
    gpus: [],
    commandTemplate: undefined,
    command,
    env: baseEnv(jobId),
    channel: {
      dir: channelDir,
      socketName: "s",
      socketPath: path.join(channelDir, "s"),
      url: `unix://${path.join(channelDir, "s")}`,
      token: "token-" + jobId,
      connectInProcess: () => new PassThrough()
    },
    set: {},
    labels: {},
    killTimeout: Duration.seconds(5),
    workerRuntime: { modulePath: workerRuntimeModule, nodePath: workspaceNodeModules },
    ...overrides
  }
}

/** `node <fixture> ...args`. */
export const node = (name: string, ...args: ReadonlyArray<string>): ReadonlyArray<string> => [
  process.execPath,
  fixture(name),
  ...args
]

/** Polls `check` every 20 ms until it returns something truthy, failing after `timeoutMs`. */
export const eventually = <A>(what: string, check: () => A | undefined | null | false, timeoutMs = 10_000): Effect.Effect<A, Error> =>
  Effect.suspend(() => {
    const value = check()
    return value === undefined || value === null || value === false ? Effect.fail("not yet" as const) : Effect.succeed(value)
  }).pipe(
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.mapError(() => new Error(`gave up on ${what}`)),
    Effect.timeoutFail({ duration: timeoutMs, onTimeout: () => new Error(`timed out waiting for ${what}`) })
  )

/** Reads a file, or `undefined` when it does not exist. */
export const readMaybe = (file: string): string | undefined => {
  try {
    return fs.readFileSync(file, "utf8")
  } catch {
    return undefined
  }
}

/** True when `pid` is gone or a zombie (the outcome the tests need: nothing of it still runs). */
export const isDead = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]
    return state === "Z" || state === "X"
  } catch {
    return true
  }
}
