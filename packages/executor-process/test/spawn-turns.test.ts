import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { ProcessJobLauncher } from "../src/ProcessJobLauncher.js"
import { makeDirs, makeRequest, node } from "./helpers.js"

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
