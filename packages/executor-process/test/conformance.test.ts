/**
 * The conformance suite of `@flexec/testing` against the real process backend:
 * every job is a real child process running `fixtures/worker.cjs` (deployed as
 * the app's `main.js`), loading the worker runtime through `NODE_PATH` /
 * `FLEXEC_WORKER_MODULE`. Plus: the suite's leak checks are shown to look at
 * the OS (a launcher that leaks a job's group is caught), and no pid file or
 * socket directory outlives a test.
 */
import type { JobLauncher } from "@flexec/core"
import { conformanceSuite, runConformanceTest } from "@flexec/testing"
import type { LauncherContext } from "@flexec/testing"
import { Effect, Exit, Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { ProcessJobLauncher } from "../src/index.js"
import { writePidFile } from "../src/internal/pidFile.js"
import { bootId, startTimeOf } from "../src/internal/procfs.js"
import { isDead } from "./helpers.js"

/** Pid files and socket directories found when a test's launcher scope closed (must stay empty). */
const leftBehind: Array<string> = []

const entriesOf = (dir: string): ReadonlyArray<string> =>
  fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => path.join(dir, f)) : []

/**
 * A process launcher in the test's scope. Its release runs after the executor
 * closed and the suite's leak checks ran, before the test's directories are
 * removed: then no pid file and no socket directory may be left.
 */
const processLauncher = ({ runtimeDir }: LauncherContext) =>
  Effect.acquireRelease(
    Effect.sync(() => ProcessJobLauncher.make({ runtimeDir, killTimeoutMs: 300 })),
    () =>
      Effect.sync(() => {
        leftBehind.push(...entriesOf(path.join(runtimeDir, "pids")), ...entriesOf(path.join(runtimeDir, "ch")))
      })
  )

const common = conformanceSuite({
  name: "process",
  makeLauncher: processLauncher,
  timeouts: {
    testMs: 20_000,
    eventMs: 8_000,
    graceMs: 200,
    killTimeoutMs: 300,
    startTimeoutMs: 8_000,
    shortStartTimeoutMs: 800,
    processGoneMs: 3_000
  },
  // point 8's opt-in: the pid file a job of this instance would have left, naming a pid that now
  // belongs to an unrelated process (same start time, so only the environment check can tell)
  staleRecord: ({ runtimeDir, instanceId, jobId, pid }) => {
    writePidFile(runtimeDir, {
      version: 1,
      pid,
      pgid: pid,
      startTime: startTimeOf(pid) ?? "0",
      bootId: bootId(),
      jobId,
      instanceId,
      channelToken: "stale",
      channelDir: path.join(runtimeDir, "ch", "stale"),
      startedAt: Date.now()
    })
  }
})

describe("process: beyond the suite", () => {
  it("an aborted job's SIGTERM-ignoring grandchild is gone with its group", async () => {
    let grandchild = 0
    await runConformanceTest(common, (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("spawn-grandchild")
        yield* h.waitEvent("Started", jobId)
        const file = path.join(h.workspace, jobId, "grandchild.pid")
        yield* h.until("the grandchild's pid file", () => fs.existsSync(file))
        grandchild = Number(fs.readFileSync(file, "utf8"))
        expect(isDead(grandchild)).toBe(false)
        yield* h.executor.abortApp(jobId)
        expect((yield* h.executor.awaitCompletion(jobId)).returnCode).toBe(9)
      }))
    // the suite's leak checks waited for every process of the job; check this one by pid too
    expect(isDead(grandchild)).toBe(true)
  }, 30_000)

  it("the leak checks look at the OS: a launcher that never releases a job's group is caught", async () => {
    const groups: Array<number> = []
    const never = Effect.runSync(Scope.make())
    const leaky = (context: LauncherContext): JobLauncher => {
      const real = ProcessJobLauncher.make({ runtimeDir: context.runtimeDir, killTimeoutMs: 300 })
      return {
        ...real,
        // the job's resources go to a scope nobody closes: its group is never SIGKILLed
        launch: (request) =>
          real.launch(request).pipe(
            Scope.extend(never),
            Effect.tap((handle) => Effect.sync(() => void groups.push(Number(handle.info?.pgid))))
          )
      }
    }
    try {
      const run = runConformanceTest({ ...common, makeLauncher: leaky, timeouts: { ...common.timeouts, processGoneMs: 1_000 } }, (h) =>
        Effect.gen(function* () {
          const jobId = yield* h.start("spawn-grandchild")
          yield* h.waitEvent("Started", jobId)
          yield* h.until("the grandchild's pid file", () => fs.existsSync(path.join(h.workspace, jobId, "grandchild.pid")))
        }))
      await expect(run).rejects.toThrow(/leak: OS processes of this test's jobs still run/)
    } finally {
      for (const pgid of groups) {
        try {
          process.kill(-pgid, "SIGKILL")
        } catch {
          // already gone
        }
      }
      await Effect.runPromise(Scope.close(never, Exit.void))
    }
    expect(groups).toHaveLength(1)
  }, 30_000)
})

afterAll(() => {
  expect(leftBehind, "pid files or socket directories left by the suite's jobs").toEqual([])
})
