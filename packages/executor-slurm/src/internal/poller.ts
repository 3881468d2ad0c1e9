/**
 * The status of every live job of a launcher, by ONE `squeue` call per tick
 * (`squeue -h -t all -j id1,id2,...`), never a call per job: per-job polling is
 * what overloads slurmctld when a workflow tool runs many jobs. A job that
 * `squeue` no longer knows (its record aged out after `MinJobAge`) is looked up
 * in the jobcomp file; if it is not there either, its exit is `lost`.
 *
 * The polling fiber runs only while some job is watched.
 *
 * @internal
 */
import { Deferred, Duration, Effect, Either, Exit, FiberId, Option } from "effect"
import * as fs from "node:fs"
import type { SlurmCli } from "./cli.js"
import type { ClusterConfig } from "./clusterConfig.js"
import { BackendUnavailable } from "./core.js"
import type { JobExit } from "./core.js"
import { exitOfRawStatus, findJobCompExit, isTerminal, lostExit, parseQueue } from "./exit.js"

/** A job the poller watches. */
export interface Watch {
  readonly slurmId: string
  readonly name: string
  /** The exit, once seen. */
  exit: Option.Option<JobExit>
  /** The last state squeue reported. */
  state: string | undefined
  /** Consecutive ticks in which squeue did not list the job. */
  misses: number
  readonly onExit: Array<(exit: JobExit) => void>
}

/** The batched status poller of one launcher. */
export interface Poller {
  /** Starts watching a job (and the polling fiber, if it is idle). */
  readonly watch: (slurmId: string, name: string) => Effect.Effect<Watch>
  /** Stops watching. */
  readonly unwatch: (watch: Watch) => void
  /** Waits for the job's exit; fails with `BackendUnavailable` when a tick could not ask Slurm (the engine retries). */
  readonly wait: (watch: Watch) => Effect.Effect<JobExit, BackendUnavailable>
  /** Jobs watched whose exit is not known yet. */
  readonly live: () => number
  /** `squeue` calls made so far (diagnostics). */
  readonly calls: () => number
}

/** Bytes of the jobcomp file's end that are searched (it grows for good). */
const jobCompTail = 8 * 1024 * 1024

const readTail = (file: string): string | undefined => {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  } catch {
    return undefined
  }
  try {
    const size = fs.fstatSync(fd).size
    const length = Math.min(size, jobCompTail)
    const buffer = Buffer.alloc(length)
    let read = 0
    while (read < length) {
      const n = fs.readSync(fd, buffer, read, length - read, size - length + read)
      if (n === 0) break
      read += n
    }
    return buffer.subarray(0, read).toString("utf8")
  } catch {
    return undefined
  } finally {
    fs.closeSync(fd)
  }
}

/** Options of `makePoller`. */
export interface PollerOptions {
  readonly cli: SlurmCli
  readonly interval: Duration.Duration
  /** The cluster's config (for the jobcomp file), read at start. */
  readonly config: () => ClusterConfig | undefined
}

type TickResult = Either.Either<void, BackendUnavailable>

/** Makes the poller of a launcher. */
export const makePoller = (options: PollerOptions): Poller => {
  const watches = new Map<string, Watch>()
  let running = false
  let calls = 0
  let tickSignal = Deferred.unsafeMake<TickResult>(FiberId.none)

  const settle = (watch: Watch, exit: JobExit): void => {
    if (Option.isSome(watch.exit)) return
    watch.exit = Option.some(exit)
    for (const f of watch.onExit.splice(0)) {
      try {
        f(exit)
      } catch {
        // a callback's failure is its own
      }
    }
  }

  const pendingWatches = (): ReadonlyArray<Watch> => [...watches.values()].filter((w) => Option.isNone(w.exit))

  const tick = (pending: ReadonlyArray<Watch>): Effect.Effect<void, BackendUnavailable> =>
    Effect.gen(function* () {
      const ids = pending.map((w) => w.slurmId)
      calls++
      const listed = yield* options.cli.run("squeue", ["-h", "-t", "all", "-j", ids.join(","), "-O", "JobID:|,State:|,exit_code:|"]).pipe(
        Effect.map((out) => parseQueue(out.stdout)),
        // every id aged out: squeue says so and exits 1
        Effect.catchIf(
          (e) => !e.unavailable && /Invalid job id specified/i.test(e.detail),
          () => Effect.succeed([])
        ),
        Effect.mapError((e) => new BackendUnavailable({ backend: "slurm", detail: e.message }))
      )
      const rows = new Map(listed.map((r) => [r.slurmId, r]))
      const missing: Array<Watch> = []
      for (const watch of pending) {
        const row = rows.get(watch.slurmId)
        if (row === undefined) {
          watch.misses++
          missing.push(watch)
          continue
        }
        watch.misses = 0
        watch.state = row.state
        if (isTerminal(row.state)) settle(watch, exitOfRawStatus(row.state, row.rawExit))
      }
      if (missing.length === 0) return
      const file = options.config()?.jobCompFile
      const text = file === undefined ? undefined : readTail(file)
      for (const watch of missing) {
        const found = text === undefined ? undefined : findJobCompExit(text, watch.slurmId, watch.name)
        if (found !== undefined) settle(watch, found)
        // twice unlisted and never completed: gone without a record
        else if (watch.misses >= 2) settle(watch, lostExit)
      }
    })

  const loop: Effect.Effect<void> = Effect.gen(function* () {
    while (true) {
      yield* Effect.sleep(options.interval)
      const pending = pendingWatches()
      if (pending.length === 0) {
        running = false
        return
      }
      const result: TickResult = yield* Effect.either(tick(pending))
      const previous = tickSignal
      tickSignal = Deferred.unsafeMake<TickResult>(FiberId.none)
      Deferred.unsafeDone(previous, Exit.succeed(result))
    }
  }).pipe(Effect.onExit(() => Effect.sync(() => void (running = false))))

  const ensureRunning: Effect.Effect<void> = Effect.suspend(() => {
    if (running) return Effect.void
    running = true
    return Effect.asVoid(Effect.forkDaemon(loop))
  })

  const watch: Poller["watch"] = (slurmId, name) =>
    Effect.suspend(() => {
      const w: Watch = { slurmId, name, exit: Option.none(), state: undefined, misses: 0, onExit: [] }
      watches.set(slurmId, w)
      return Effect.as(ensureRunning, w)
    })

  const wait: Poller["wait"] = (w) =>
    Effect.suspend((): Effect.Effect<JobExit, BackendUnavailable> => {
      if (Option.isSome(w.exit)) return Effect.succeed(w.exit.value)
      return Effect.zipRight(
        ensureRunning,
        Effect.flatMap(Deferred.await(tickSignal), (result) => (Either.isLeft(result) ? Effect.fail(result.left) : wait(w)))
      )
    })

  return {
    watch,
    unwatch: (w) => {
      if (watches.get(w.slurmId) === w) watches.delete(w.slurmId)
    },
    wait,
    live: () => pendingWatches().length,
    calls: () => calls
  }
}
