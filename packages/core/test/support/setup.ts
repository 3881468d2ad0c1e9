/** Shared set-up of the engine tests: a workspace, a runtime dir, an executor over the memory launcher. */
import { Effect, Queue } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { ExecutorEvent } from "../../src/ClientExecutor.js"
import type { JobExecutorOptions } from "../../src/ExecutorOptions.js"
import type { Capabilities, LaunchRequest } from "../../src/JobLauncher.js"
import { makeJobExecutor } from "../../src/JobExecutor.js"
import { makeMemoryLauncher, type Program } from "./memoryLauncher.js"

/** A temp dir removed when the scope closes. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** Deploys `<ws>/<jobId>/meta.json` and the app dir. */
export const deploy = (workspace: string, jobId: string, meta: Record<string, unknown> = {}, clientName = "site-1") => {
  const jobDir = path.join(workspace, jobId)
  fs.mkdirSync(path.join(jobDir, `app_${clientName}`), { recursive: true })
  fs.writeFileSync(path.join(jobDir, "meta.json"), JSON.stringify({ job_id: jobId, ...meta }))
  return jobDir
}

/** An executor over a memory launcher, with a live event subscription. */
export const setup = (
  programFor: (request: LaunchRequest) => Program | "fail" | "hang",
  options: Partial<JobExecutorOptions> = {},
  capabilities: Partial<Capabilities> = {},
  hooks: { onLaunchScopeClosed?: (jobId: string) => void } = {}
) =>
  Effect.gen(function* () {
    const workspace = yield* tempDir("flexec-ws-")
    const runtimeDir = options.runtimeDir ?? (yield* tempDir("flexec-rt-"))
    const launcher = makeMemoryLauncher(programFor, capabilities, hooks)
    const executor = yield* makeJobExecutor({
      client: { clientName: "site-1" },
      launcher,
      runtimeDir,
      ...options
    })
    const events = yield* executor.subscribe
    return { workspace, runtimeDir, launcher, executor, events }
  })

/** Takes events until one matches. */
export const nextEvent = <T extends ExecutorEvent["_tag"]>(
  events: Queue.Dequeue<ExecutorEvent>,
  tag: T,
  jobId?: string
): Effect.Effect<Extract<ExecutorEvent, { _tag: T }>> =>
  Effect.gen(function* () {
    while (true) {
      const event = yield* Queue.take(events)
      if (event._tag === tag && (jobId === undefined || event.jobId === jobId)) return event as Extract<ExecutorEvent, { _tag: T }>
    }
  })

/** Programs used across tests. */
export const programs = {
  /** A cooperative worker: runs until aborted, echoes on test/echo. */
  cooperative: ((c) =>
    c.worker({
      run: (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(0))),
      handlers: { test: { echo: (m) => m.payload, fail: () => { throw new Error("boom") } } }
    })) as Program,
  /** Returns `code` right after Started. */
  exitWith: (code: number): Program => (c) => c.worker({ run: () => code }),
  /** Ignores the abort message and SIGTERM. */
  stubborn: ((c) => {
    c.onTerminate(() => "ignore")
    c.worker({ run: () => new Promise(() => undefined) })
  }) as Program,
  /** Never connects; dies on SIGTERM. */
  neverConnects: (() => undefined) as Program
}
