import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import * as fs from "node:fs"
import { ProcessJobLauncher } from "../src/ProcessJobLauncher.js"
import { pidFilePath } from "../src/internal/pidFile.js"
import { environValue } from "../src/internal/procfs.js"
import { makeDirs, makeRequest, node } from "./helpers.js"

/** The live processes whose environment names `jobId` (FLEXEC_JOB_ID). */
const processesOf = (jobId: string): ReadonlyArray<number> =>
  fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name)).map(Number).filter((pid) => environValue(pid, "FLEXEC_JOB_ID") === jobId)

const launcher = ProcessJobLauncher.make()

/** Counts turns of the event loop (a `setImmediate` chain) until the scope closes; read with the function. */
const turnCounter = Effect.gen(function* () {
  let turns = 0
  let ticking = true
  const tick = () => {
    turns++
    if (ticking) setImmediate(tick)
  }
  setImmediate(tick)
  yield* Effect.addFinalizer(() => Effect.sync(() => (ticking = false)))
  return () => turns
})

describe("ProcessJobLauncher: concurrent launches", () => {
  // `spawn` blocks the event loop; concurrent launches must spawn on separate
  // turns so sockets (hellos of jobs already running) are served in between.
  it.scopedLive("spawn one at a time, each on a later turn of the event loop", () =>
    Effect.gen(function* () {
      const turns = yield* turnCounter
      const dirs = yield* Effect.all(Array.from({ length: 6 }, () => makeDirs()))
      const launchedAt: Array<number> = []
      yield* Effect.all(
        dirs.map((d) => launcher.launch(makeRequest(d, node("echo.cjs"))).pipe(Effect.tap(() => Effect.sync(() => launchedAt.push(turns()))))),
        { concurrency: "unbounded" }
      )
      expect(launchedAt).toHaveLength(6)
      for (let i = 1; i < launchedAt.length; i++) expect(launchedAt[i]!).toBeGreaterThan(launchedAt[i - 1]!)
    }))

  // An abortApp racing a batch of launches interrupts the ones still waiting for their turn:
  // they must spawn nothing (and so leave no pid file and no process), and the others still go.
  it.scopedLive("a launch interrupted while it waits for its turn spawns nothing, writes no pid file, and the launch behind it still spawns", () =>
    Effect.gen(function* () {
      const launcher = ProcessJobLauncher.make()
      // ids of this run only: the machine's other test runs must not count as this test's processes
      const run = Math.random().toString(36).slice(2, 8)
      const [idA, idB, idC] = ["a", "b", "c"].map((x) => `turn-${x}-${run}`) as [string, string, string]
      const [a, b, c] = yield* Effect.all([makeDirs(idA), makeDirs(idB), makeDirs(idC)])
      const scopes = yield* Effect.all([Scope.make(), Scope.make(), Scope.make()])
      yield* Effect.addFinalizer(() => Effect.forEach(scopes, (s) => Scope.close(s, Exit.void)))
      const launchIn = (dirs: typeof a, i: number) =>
        Effect.fork(launcher.launch(makeRequest(dirs, node("wait.cjs"))).pipe(Scope.extend(scopes[i]!)))
      // a takes this turn; b and c wait for theirs (one macrotask turn each)
      const fa = yield* launchIn(a, 0)
      const fb = yield* launchIn(b, 1)
      const fc = yield* launchIn(c, 2)
      // b has opened its log and waits for its turn: microtask steps only, no turn of the event loop passes
      const bLog = makeRequest(b, []).paths.logFile
      for (let i = 0; i < 1000 && !fs.existsSync(bLog); i++) yield* Effect.yieldNow()
      expect(fs.existsSync(bLog), "b reached its spawn turn").toBe(true)
      yield* Fiber.interrupt(fb)
      expect(fs.existsSync(pidFilePath(b.runtimeDir, idB)), "b's pid file").toBe(false)
      expect(fs.existsSync(bLog), "b's log file").toBe(false)
      expect(processesOf(idB), "b's processes").toEqual([])
      // the queue went on without b: a and c are running jobs
      const handles = yield* Effect.all([Fiber.join(fa), Fiber.join(fc)])
      expect(handles.map((h) => h.jobId)).toEqual([idA, idC])
      expect(fs.existsSync(pidFilePath(c.runtimeDir, idC))).toBe(true)
      expect(processesOf(idC)).toHaveLength(1)
    }))
})

describe("ProcessJobLauncher: each launcher its own turns", () => {
  // A launcher's turns are its own: a second launcher's launch does not wait behind the first's queue.
  it.scopedLive("two launchers spawn in the same turn", () =>
    Effect.gen(function* () {
      const turns = yield* turnCounter
      const [a, b] = [ProcessJobLauncher.make(), ProcessJobLauncher.make()]
      const dirs = yield* Effect.all([makeDirs(), makeDirs()])
      const launchedAt: Array<number> = []
      yield* Effect.all(
        [a, b].map((l, i) => l.launch(makeRequest(dirs[i]!, node("echo.cjs"))).pipe(Effect.tap(() => Effect.sync(() => launchedAt.push(turns()))))),
        { concurrency: "unbounded" }
      )
      expect(launchedAt).toHaveLength(2)
      expect(launchedAt[0]).toBe(launchedAt[1])
    }))
})
