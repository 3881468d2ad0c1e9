/**
 * Chaos for the process backend (issue 8): 300 jobs (`FLEXEC_CHAOS_JOBS`) with
 * random faults from a seeded plan (`FLEXEC_CHAOS_SEED`, printed), ten at a
 * time, then the invariants: one `Completed` per job with the outcome table's
 * return code, every allocation freed exactly once, no process / socket
 * directory / pid file left, the heap back within a bound after a forced GC.
 * The harness is test/support/chaos-harness.ts; crash recovery of the parent
 * itself is crash-recovery.test.ts.
 *
 * The forced GC: `global.gc` when vitest runs with `--expose-gc`, else the
 * harness exposes it for this worker through `v8.setFlagsFromString` and
 * `vm.runInNewContext("gc")` (works in any pool, no per-file config).
 */
import { describe, expect, it } from "@effect/vitest"
import { processesOfRun } from "@flexec/testing"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { ProcessJobExecutor } from "../src/index.js"
import { allFaultKinds, runChaos } from "./support/chaos-harness.js"
import type { ChaosBackend } from "./support/chaos-harness.js"

const pidOf = (jobId: string, runtimeDir: string) =>
  Effect.try({
    try: () => JSON.parse(fs.readFileSync(path.join(runtimeDir, "pids", `${jobId}.json`), "utf8")) as { pid: number; pgid: number },
    catch: (e) => new Error(`no pid file for ${jobId}: ${String(e)}`)
  })

const signal = (sig: NodeJS.Signals, group: boolean) => (jobId: string, runtimeDir: string) =>
  Effect.flatMap(pidOf(jobId, runtimeDir), ({ pid, pgid }) =>
    Effect.try({ try: () => void process.kill(group ? -pgid : pid, sig), catch: (e) => new Error(`${sig} to ${jobId}: ${String(e)}`) })
  )

const backend: ChaosBackend = {
  name: "process",
  kinds: allFaultKinds,
  makeExecutor: (o) => ProcessJobExecutor.make({ client: { clientName: "site-1" }, ...o }),
  kill: signal("SIGKILL", false),
  freeze: signal("SIGSTOP", true),
  thaw: signal("SIGCONT", true),
  alive: (prefix) => Effect.sync(() => processesOfRun(prefix).map((pid) => `process ${pid}`)),
  cleanup: (prefix) =>
    Effect.sync(() => {
      for (const pid of processesOfRun(prefix)) {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // gone
        }
      }
    }),
  startTimeoutMs: 30_000,
  shortStartTimeoutMs: 1_500,
  graceMs: 300,
  killTimeoutMs: 300,
  jobMs: 60_000,
  heapBoundBytes: 32 * 1024 * 1024
}

describe("chaos: process backend", () => {
  it.scopedLive(
    "300 jobs with random faults: one Completed each with the table's code, freed once, nothing left, heap bounded",
    () =>
      Effect.gen(function* () {
        const report = yield* runChaos(backend, { defaultJobs: 300, concurrency: 10 })
        expect(report.problems).toEqual([])
        expect(report.leaks).toEqual([])
        expect(report.outcomesOk).toBe(report.jobs - (report.faults["refused"] ?? 0))
      }),
    600_000
  )
})
