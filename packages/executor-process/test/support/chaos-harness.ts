/**
 * The chaos harness (issue 8): runs many jobs, each with a fault plan drawn
 * from a seeded PRNG, against one backend, then checks the invariants of
 * DESIGN.md on everything it did:
 *
 * - every registered job has exactly one `Completed`, with a return code the
 *   outcome table allows for its plan (where a plan races two events, e.g. an
 *   abort against a natural exit, exactly the codes the table gives for either
 *   order are accepted, and the race is counted);
 * - `awaitCompletion` and the terminal status agree with that `Completed`;
 * - every registered job's allocation is freed exactly once, a refused job's never;
 * - afterwards: no job process / container of the run is alive, no socket
 *   directory or pid file is left in either runtime directory;
 * - the parent's heap (after a forced GC) is back within a bound of its start.
 *
 * `FLEXEC_CHAOS_SEED` reproduces a run (the seed is printed), `FLEXEC_CHAOS_JOBS`
 * overrides the job count. Faults are injected at random times (sleeps here
 * are the injection points, never a wait for an outcome: outcomes are awaited
 * with `awaitCompletion` / polled with deadlines).
 *
 * The docker package's chaos test imports this file too (one harness, two backends).
 */
import type { ClientExecutorService, ExecutorEvent, JobOutcome } from "@flexec/core"
import { Message } from "@flexec/core"
import type { FixtureName } from "@flexec/testing"
import { deployJob, fixtureFacts, MockResourceManager } from "@flexec/testing"
import { Duration, Effect, Exit, Fiber, Queue, Scope } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as v8 from "node:v8"
import * as vm from "node:vm"

// ---- the PRNG ----------------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG (uniform in [0, 1)). */
export const prng = (seed: number) => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    /** An integer in [lo, hi]. */
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(next() * xs.length)]!,
    chance: (p: number) => next() < p
  }
}
export type Rng = ReturnType<typeof prng>

// ---- the outcome table, for a plan -----------------------------------------------------------

/** DESIGN.md's rows 4–7 for a job that exited with `code` after Started. */
export const rcOfExitAfterStarted = (code: number): number => (code === 0 ? 0 : code >= 101 && code <= 104 ? code : 1)

// ---- faults ----------------------------------------------------------------------------------

/** The faults a job can be planned with. */
export type FaultKind =
  | "exit-code" // run() returns a random code: the table's row 4/5/7
  | "crash-at-start" // exits 1 before connecting: row 6 (104)
  | "crash-later" // exits 1 after Started: row 7 (1)
  | "write-rc" // rc file stands for the exit code
  | "abort-ignored" // ignores abort and SIGTERM; abort at a random time: SIGKILL, 9
  | "abort-random" // cooperative job, abort at a random time: 9
  | "abort-during-launch" // abortApp while startApp is still launching: 9 (startApp: ok or JobAborted)
  | "abort-races-exit" // abort racing a natural exit: {9, natural}
  | "start-timeout" // never connects (short start timeout): 104, or 9 if an abort raced it
  | "abort-while-starting" // slow start, abort at a random time: 9
  | "abort-task" // abort_task 1–3 times (each counted by the job), then abort: 9
  | "huge-payload" // multi-MiB replies and requests, one over the frame limit: then abort: 9
  | "concurrent-requests" // 16–32 requests at once + queries + a duplicate startApp: then abort: 9
  | "kill-9" // SIGKILL (docker kill) of the job from outside at a random time: 1 after Started, else {104, 1}
  | "freeze" // SIGSTOP: a request times out; thaw or abort frozen: 9
  | "free-fails" // freeResources dies: the outcome stands, freeError is reported, freed once
  | "free-hangs" // freeResources hangs: the step timeout ends it, freeError reported, freed once
  | "refused" // startApp refused before registering (JobMetaMismatch): no Completed, never freed

const weights: ReadonlyArray<readonly [FaultKind, number]> = [
  ["exit-code", 12],
  ["crash-at-start", 6],
  ["crash-later", 7],
  ["write-rc", 6],
  ["abort-ignored", 7],
  ["abort-random", 8],
  ["abort-during-launch", 8],
  ["abort-races-exit", 8],
  ["start-timeout", 5],
  ["abort-while-starting", 5],
  ["abort-task", 5],
  ["huge-payload", 5],
  ["concurrent-requests", 6],
  ["kill-9", 8],
  ["freeze", 5],
  ["free-fails", 4],
  ["free-hangs", 3],
  ["refused", 4]
]

/** Every fault kind, in the order of `weights`: what a backend that can play them all plans with. */
export const allFaultKinds: ReadonlyArray<FaultKind> = weights.map(([kind]) => kind)

/** What a backend gives the harness. */
export interface ChaosBackend {
  readonly name: string
  /** Faults this backend can take (e.g. `freeze` needs SIGSTOP). */
  readonly kinds: ReadonlyArray<FaultKind>
  /** An executor in the current scope. `startTimeoutMs` differs between the two executors of a run. */
  readonly makeExecutor: (o: {
    readonly instanceId: string
    readonly runtimeDir: string
    readonly startTimeoutMs: number
    readonly graceMs: number
    readonly killTimeoutMs: number
    readonly maxFrameBytes: number
    readonly completionStepTimeoutMs: number
  }) => Effect.Effect<ClientExecutorService, unknown, Scope.Scope>
  /** Kills the job from outside (SIGKILL / docker kill). */
  readonly kill: (jobId: string, runtimeDir: string) => Effect.Effect<void, Error>
  readonly freeze?: (jobId: string, runtimeDir: string) => Effect.Effect<void, Error>
  readonly thaw?: (jobId: string, runtimeDir: string) => Effect.Effect<void, Error>
  /** What of this run is still alive (processes, containers), by job id prefix; described for the report. */
  readonly alive: (jobIdPrefix: string) => Effect.Effect<ReadonlyArray<string>>
  /** Kills whatever of the run is left (after the checks, so a failing run leaves nothing behind). */
  readonly cleanup: (jobIdPrefix: string) => Effect.Effect<void>
  /** Start timeout of ordinary jobs (long: a loaded machine must not time them out). */
  readonly startTimeoutMs: number
  /** Start timeout of the `start-timeout` executor. */
  readonly shortStartTimeoutMs: number
  readonly graceMs: number
  readonly killTimeoutMs: number
  /** One job's driver, end to end. */
  readonly jobMs: number
  /** Upper bound of the heap growth (bytes) after a forced GC. */
  readonly heapBoundBytes: number
}

/** The counts a run prints and returns. */
export interface ChaosReport {
  readonly seed: number
  readonly jobs: number
  readonly faults: Readonly<Record<string, number>>
  readonly faultsInjected: number
  readonly outcomesOk: number
  readonly races: Readonly<Record<string, number>>
  readonly freedOnce: number
  readonly refusedNeverFreed: number
  readonly freeErrors: number
  readonly abortedDuringLaunch: number
  readonly leaks: ReadonlyArray<string>
  readonly problems: ReadonlyArray<string>
  readonly heapDeltaBytes: number
  readonly externalDeltaBytes: number
  readonly ms: number
}

interface JobRecord {
  readonly n: number
  readonly jobId: string
  readonly kind: FaultKind
  readonly short: boolean
  expected: ReadonlyArray<number>
  registered: boolean
  race: string | undefined
  startError: string | undefined
  outcome: JobOutcome | undefined
  expectFreeError: boolean
  readonly managers: Array<{ readonly rm: MockResourceManager; readonly token: string; readonly frees: number }>
  notes: Array<string>
}

const MiB = 1024 * 1024

/** A forced full GC: `global.gc` when exposed, else exposed for this process through V8's flags. */
export const forceGc = (): void => {
  let gc = (globalThis as { gc?: () => void }).gc
  if (typeof gc !== "function") {
    v8.setFlagsFromString("--expose-gc")
    gc = vm.runInNewContext("gc") as () => void
  }
  for (let i = 0; i < 3; i++) gc()
}
const memory = () => {
  forceGc()
  const m = process.memoryUsage()
  return { heap: v8.getHeapStatistics().used_heap_size, external: m.external + m.arrayBuffers }
}

const envInt = (name: string): number | undefined => {
  const v = process.env[name]
  if (v === undefined || v === "") return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`)
  return n
}

const sleepMs = (ms: number) => Effect.sleep(Duration.millis(ms))
const tagOf = (e: unknown): string =>
  typeof e === "object" && e !== null && "_tag" in e ? String((e as { _tag: unknown })._tag) : String(e)

/** Polls `check` every 20 ms until true; fails after `ms`. */
const until = (what: string, check: Effect.Effect<boolean, unknown>, ms: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    for (;;) {
      if (yield* Effect.orElseSucceed(check, () => false)) return
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out after ${ms} ms waiting for ${what}`))
      yield* sleepMs(20)
    }
  })

/**
 * Runs the chaos: `jobs` jobs (default `defaultJobs`, `FLEXEC_CHAOS_JOBS`), at
 * most `concurrency` at a time, with plans from the seed (`FLEXEC_CHAOS_SEED`).
 */
export const runChaos = (backend: ChaosBackend, o: { readonly defaultJobs: number; readonly concurrency: number }) =>
  Effect.gen(function* () {
    const seed = envInt("FLEXEC_CHAOS_SEED") ?? crypto.randomBytes(4).readUInt32BE(0)
    const jobCount = envInt("FLEXEC_CHAOS_JOBS") ?? o.defaultJobs
    console.log(`chaos(${backend.name}): seed=${seed} jobs=${jobCount} (reproduce: FLEXEC_CHAOS_SEED=${seed} FLEXEC_CHAOS_JOBS=${jobCount})`)
    const began = Date.now()
    const runTag = crypto.randomBytes(3).toString("hex")
    const prefix = `x${runTag}-`
    const root = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "fxchaos-"))),
      (dir) => backend.cleanup(prefix).pipe(Effect.ensuring(Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))))
    )
    const workspace = path.join(root, "ws")
    fs.mkdirSync(workspace)
    const runtimeDirs = { main: path.join(root, "rt-main"), short: path.join(root, "rt-short") }
    const maxFrameBytes = 24 * MiB

    const planRng = prng(seed)
    const kinds = weights.filter(([k]) => backend.kinds.includes(k))
    const total = kinds.reduce((s, [, w]) => s + w, 0)
    const drawKind = (): FaultKind => {
      let x = planRng.next() * total
      for (const [k, w] of kinds) if ((x -= w) < 0) return k
      return kinds[kinds.length - 1]![0]
    }
    const records: Array<JobRecord> = []
    const jobRngs: Array<Rng> = []
    for (let n = 1; n <= jobCount; n++) {
      const kind = drawKind()
      jobRngs.push(prng((seed ^ Math.imul(n, 0x9e3779b1)) >>> 0))
      records.push({
        n,
        jobId: `${prefix}${n}-${kind}`,
        kind,
        short: kind === "start-timeout",
        expected: [],
        registered: true,
        race: undefined,
        startError: undefined,
        outcome: undefined,
        expectFreeError: false,
        managers: [],
        notes: []
      })
    }

    const before = memory()
    const execScope = yield* Scope.make()
    const common = {
      graceMs: backend.graceMs,
      killTimeoutMs: backend.killTimeoutMs,
      maxFrameBytes,
      completionStepTimeoutMs: 1_500
    }
    const executors = {
      main: yield* backend
        .makeExecutor({ ...common, instanceId: `chaos-${runTag}`, runtimeDir: runtimeDirs.main, startTimeoutMs: backend.startTimeoutMs })
        .pipe(Scope.extend(execScope)),
      short: yield* backend
        .makeExecutor({ ...common, instanceId: `chaos-${runTag}-st`, runtimeDir: runtimeDirs.short, startTimeoutMs: backend.shortStartTimeoutMs })
        .pipe(Scope.extend(execScope))
    }
    const completed = new Map<string, Array<ExecutorEvent & { readonly _tag: "Completed" }>>()
    const listeners: Array<Fiber.RuntimeFiber<unknown>> = []
    for (const ex of [executors.main, executors.short]) {
      const queue = yield* ex.subscribe.pipe(Scope.extend(execScope))
      listeners.push(
        yield* Queue.take(queue).pipe(
          Effect.tap((e) =>
            Effect.sync(() => {
              if (e._tag === "Completed") completed.set(e.jobId, [...(completed.get(e.jobId) ?? []), e])
            })
          ),
          Effect.forever,
          Effect.forkIn(execScope)
        )
      )
    }

    // ---- one job ----
    const drive = (r: JobRecord, rng: Rng) =>
      Effect.gen(function* () {
        const ex = r.short ? executors.short : executors.main
        const runtimeDir = r.short ? runtimeDirs.short : runtimeDirs.main
        const newManager = () =>
          Effect.gen(function* () {
            const rm = new MockResourceManager()
            const { token } = yield* rm.checkResources({})
            const allocation = yield* rm.allocateResources({}, token)
            return { rm, token, allocation }
          })
        const deployAndStart = (fixture: FixtureName, args: ReadonlyArray<string | number>, opts: { readonly manager?: Effect.Effect.Success<ReturnType<typeof newManager>>; readonly deployedMeta?: Record<string, unknown>; readonly jobMeta?: Record<string, unknown> } = {}) =>
          Effect.gen(function* () {
            const job = yield* deployJob({ workspace, jobId: r.jobId, clientName: "site-1", fixture, args, ...(opts.deployedMeta ? { meta: opts.deployedMeta } : {}) })
            const m = opts.manager ?? (yield* newManager())
            r.managers.push({ rm: m.rm, token: m.token, frees: 1 })
            return yield* ex.startApp({
              jobId: r.jobId,
              jobMeta: opts.jobMeta ?? job.meta,
              args: { workspace, set: job.set },
              allocatedResource: m.allocation,
              token: m.token,
              resourceManager: m.rm
            })
          })
        const start = (fixture: FixtureName, ...args: ReadonlyArray<string | number>) => deployAndStart(fixture, args)
        const started = until(`${r.jobId} Started`, Effect.map(ex.getStatus(r.jobId), (s) => s >= 2), backend.jobMs)
        const abort = ex.abortApp(r.jobId)

        switch (r.kind) {
          case "exit-code": {
            const code = rng.pick([0, 0, 1, 2, 3, 42, 101, 102, 103, 104])
            r.expected = [rcOfExitAfterStarted(code)]
            r.notes.push(`code ${code}`)
            yield* start("exit-with", code)
            break
          }
          case "crash-at-start":
            r.expected = [104]
            yield* start("crash-at-start")
            break
          case "crash-later":
            r.expected = [1]
            yield* start("crash-later", rng.int(0, 400))
            break
          case "write-rc": {
            const code = rng.pick([0, 5, 101, 102, 103, 104])
            r.expected = [rcOfExitAfterStarted(code)]
            r.notes.push(`rc ${code}`)
            yield* start("write-rc", code)
            break
          }
          case "abort-ignored":
            r.expected = [9]
            yield* start("ignore-abort")
            if (rng.chance(0.7)) yield* started
            yield* sleepMs(rng.int(0, 300))
            yield* abort
            break
          case "abort-random":
            r.expected = [9]
            yield* start("exit-on-abort")
            yield* sleepMs(rng.int(0, 800))
            yield* abort
            break
          case "abort-while-starting":
            r.expected = [9]
            yield* start("slow-start", rng.int(200, 1500))
            yield* sleepMs(rng.int(0, 1200))
            yield* abort
            break
          case "abort-during-launch": {
            r.expected = [9]
            const launching = yield* Effect.fork(Effect.either(start("exit-on-abort")))
            yield* sleepMs(rng.int(0, 15))
            // an abort before the job was registered is a no-op: repeat until it took (Completed)
            yield* Effect.gen(function* () {
              const deadline = Date.now() + backend.jobMs
              for (;;) {
                yield* abort
                if (completed.has(r.jobId)) return
                const done = yield* Fiber.poll(launching)
                if (done._tag === "Some" && Exit.isSuccess(done.value) && done.value.value._tag === "Left") return
                if (Date.now() > deadline) return yield* Effect.fail(new Error("abort during launch never took"))
                yield* sleepMs(2)
              }
            })
            const result = yield* Fiber.join(launching)
            if (result._tag === "Left") {
              if (result.left._tag !== "JobAborted") return yield* Effect.fail(result.left)
              r.race = "aborted-during-launch"
            }
            break
          }
          case "abort-races-exit": {
            const crash = rng.chance(0.5)
            const natural = crash ? 1 : rcOfExitAfterStarted(rng.pick([0, 2, 101]))
            r.expected = [9, natural]
            if (crash) yield* start("crash-later", rng.int(0, 300))
            else yield* start("exit-with", natural === 1 ? 2 : natural)
            yield* sleepMs(rng.int(0, 500))
            yield* abort
            break
          }
          case "start-timeout":
            if (rng.chance(0.3)) {
              r.expected = [9, 104]
              yield* start("never-connect")
              yield* sleepMs(rng.int(0, backend.shortStartTimeoutMs + 500))
              yield* abort
            } else {
              r.expected = [104]
              yield* start("never-connect")
            }
            break
          case "abort-task": {
            r.expected = [9]
            yield* start("long-task")
            const tasks = Effect.map(ex.getRunInfo(r.jobId), (info) => (info.tasks as { aborted?: number } | undefined)?.aborted)
            yield* until(`${r.jobId} running its first task`, Effect.map(tasks, (n) => n === 0), backend.jobMs)
            const times = rng.int(1, 3)
            for (let i = 1; i <= times; i++) {
              yield* ex.abortTask(r.jobId)
              yield* until(`${r.jobId} counting ${i} aborted task(s)`, Effect.map(tasks, (n) => n === i), backend.jobMs)
            }
            r.notes.push(`${times} task(s) aborted`)
            yield* abort
            break
          }
          case "huge-payload": {
            r.expected = [9]
            const replyBytes = rng.int(1, 16) * MiB + rng.int(0, 1000)
            yield* start("huge-payload", replyBytes)
            yield* started
            const reply = yield* ex.sendToJob({ jobId: r.jobId, channel: fixtureFacts.channel, topic: fixtureFacts.hugeTopic, message: Message.make({}), timeout: "20 seconds" })
            const got = reply.payload instanceof Uint8Array ? reply.payload : undefined
            if (got?.length !== replyBytes || got[0] !== 0x78 || got[got.length - 1] !== 0x78) {
              return yield* Effect.fail(new Error(`huge reply: expected ${replyBytes} bytes of 0x78, got ${got?.length}`))
            }
            const sent = crypto.randomBytes(rng.int(1, 12) * MiB)
            const echo = yield* ex.sendToJob({ jobId: r.jobId, channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: Message.make(new Uint8Array(sent)), timeout: "20 seconds" })
            if (!(echo.payload instanceof Uint8Array) || !Buffer.from(echo.payload).equals(sent)) {
              return yield* Effect.fail(new Error(`huge echo of ${sent.length} bytes came back different`))
            }
            if (rng.chance(0.4)) {
              const over = yield* ex.sendToJob({ jobId: r.jobId, channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: Message.make(new Uint8Array(maxFrameBytes + 1)) }).pipe(Effect.either)
              if (over._tag !== "Left" || over.left._tag !== "MessageTooBig") return yield* Effect.fail(new Error(`an over-limit message: expected MessageTooBig, got ${over._tag === "Left" ? over.left._tag : "a reply"}`))
              // the connection survives it
              const small = yield* ex.sendToJob({ jobId: r.jobId, channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: Message.make({ after: "too big" }) })
              if ((small.payload as { after?: string } | undefined)?.after !== "too big") return yield* Effect.fail(new Error("the echo after MessageTooBig failed"))
              r.notes.push("over-limit refused")
            }
            yield* abort
            break
          }
          case "concurrent-requests": {
            r.expected = [9]
            yield* start("echo")
            yield* started
            const count = rng.int(16, 32)
            const payloads = Array.from({ length: count }, (_, i) =>
              i % 2 === 0 ? { i, s: crypto.randomBytes(rng.int(0, 2048)).toString("base64") } : new Uint8Array(crypto.randomBytes(rng.int(0, 65536)))
            )
            const rm2 = yield* newManager()
            const [replies, , dup] = yield* Effect.all(
              [
                Effect.forEach(payloads, (p) => ex.sendToJob({ jobId: r.jobId, channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: Message.make(p) }), { concurrency: "unbounded" }),
                Effect.all([ex.getRunInfo(r.jobId), ex.getErrors(r.jobId), ex.checkStatus(r.jobId), ex.jobs], { concurrency: "unbounded" }),
                // a second startApp of the same id: refused, the first job untouched, its allocation stays the caller's
                ex.startApp({ jobId: r.jobId, args: { workspace }, allocatedResource: rm2.allocation, token: rm2.token, resourceManager: rm2.rm }).pipe(Effect.either)
              ],
              { concurrency: "unbounded" }
            )
            r.managers.push({ rm: rm2.rm, token: rm2.token, frees: 0 })
            if (dup._tag !== "Left" || dup.left._tag !== "JobAlreadyRegistered") return yield* Effect.fail(new Error(`duplicate startApp: expected JobAlreadyRegistered, got ${dup._tag === "Left" ? dup.left._tag : "success"}`))
            payloads.forEach((p, i) => {
              const got = replies[i]!.payload
              const same = p instanceof Uint8Array ? got instanceof Uint8Array && Buffer.from(got).equals(Buffer.from(p)) : JSON.stringify(got) === JSON.stringify(p)
              if (!same) throw new Error(`concurrent request ${i}: the reply is not its own echo`)
            })
            r.notes.push(`${count} concurrent requests`)
            yield* abort
            break
          }
          case "kill-9": {
            yield* start("exit-on-abort")
            yield* sleepMs(rng.int(0, 800))
            const status = yield* ex.getStatus(r.jobId)
            // Started seen before the kill: row 7. Still Starting: row 6, unless Started was already on its way.
            r.expected = status >= 2 ? [1] : [104, 1]
            yield* backend.kill(r.jobId, runtimeDir)
            break
          }
          case "freeze": {
            r.expected = [9]
            if (!backend.freeze || !backend.thaw) return yield* Effect.fail(new Error("freeze is not supported by this backend"))
            yield* start("echo")
            yield* started
            yield* backend.freeze(r.jobId, runtimeDir)
            const timedOut = yield* ex.sendToJob({ jobId: r.jobId, channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: Message.make({ frozen: true }), timeout: "250 millis" }).pipe(Effect.either)
            if (timedOut._tag !== "Left" || timedOut.left._tag !== "RequestTimeout") {
              return yield* Effect.fail(new Error(`a request to a frozen job: expected RequestTimeout, got ${timedOut._tag === "Left" ? timedOut.left._tag : "a reply"}`))
            }
            if (rng.chance(0.5)) {
              yield* backend.thaw(r.jobId, runtimeDir)
              const reply = yield* ex.sendToJob({ jobId: r.jobId, channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: Message.make({ thawed: true }) })
              if ((reply.payload as { thawed?: boolean } | undefined)?.thawed !== true) return yield* Effect.fail(new Error("no echo after thawing"))
              r.notes.push("thawed")
            } else r.notes.push("aborted frozen")
            yield* abort
            break
          }
          case "free-fails":
          case "free-hangs": {
            r.expected = [0]
            r.expectFreeError = true
            const m = yield* newManager()
            if (r.kind === "free-fails") m.rm.failFree()
            else m.rm.hangFree()
            yield* deployAndStart("exit-with", [0], { manager: m })
            break
          }
          case "refused": {
            r.expected = []
            r.registered = false
            const refused = yield* deployAndStart("exit-with", [0], {
              deployedMeta: { study: "deployed" },
              jobMeta: { job_id: r.jobId, study: "forged" }
            }).pipe(Effect.either)
            r.managers[0] = { ...r.managers[0]!, frees: 0 }
            if (refused._tag !== "Left" || refused.left._tag !== "JobMetaMismatch") {
              return yield* Effect.fail(new Error(`a forged meta: expected JobMetaMismatch, got ${refused._tag === "Left" ? refused.left._tag : "success"}`))
            }
            r.startError = refused.left._tag
            if ((yield* ex.getStatus(r.jobId)) !== 0) return yield* Effect.fail(new Error("a refused job has a status"))
            return
          }
        }
        r.outcome = yield* ex.awaitCompletion(r.jobId)
      }).pipe(
        Effect.timeoutFail({ duration: Duration.millis(backend.jobMs), onTimeout: () => new Error(`the driver did not finish within ${backend.jobMs} ms`) }),
        Effect.catchAllCause((cause) =>
          Effect.sync(() => {
            const e = cause._tag === "Fail" ? cause.error : cause
            r.notes.push(`DRIVER FAILED: ${e instanceof Error ? e.message : tagOf(e)}${cause._tag === "Die" ? ` ${String(cause.defect)}` : ""}`)
          })
        )
      )

    yield* Effect.forEach(records, (r, i) => drive(r, jobRngs[i]!), { concurrency: o.concurrency, discard: true })

    // terminal statuses while the history is there
    const statuses = new Map<string, number>()
    for (const r of records) {
      const ex = r.short ? executors.short : executors.main
      statuses.set(r.jobId, yield* ex.getStatus(r.jobId))
    }
    const stillRegistered = [...(yield* executors.main.jobs), ...(yield* executors.short.jobs)].map((j) => j.jobId)
    // close both executors (they abort nothing: every job completed)
    // disconnected: a close that hangs (a broken backend) is reported instead of hanging the test
    const closed = yield* Scope.close(execScope, Exit.void).pipe(Effect.disconnect, Effect.timeout(Duration.seconds(30)), Effect.either)
    for (const f of listeners) yield* Fiber.interrupt(f)

    // ---- the checks ----
    const problems: Array<string> = []
    if (closed._tag === "Left") problems.push("closing the executors did not finish within 30 s")
    if (stillRegistered.length > 0) problems.push(`still registered after every driver finished: ${stillRegistered.join(", ")}`)
    const faults: Record<string, number> = {}
    const races: Record<string, number> = {}
    let outcomesOk = 0
    let freedOnce = 0
    let refusedNeverFreed = 0
    let freeErrors = 0
    let abortedDuringLaunch = 0
    for (const r of records) {
      faults[r.kind] = (faults[r.kind] ?? 0) + 1
      const where = `job ${r.n} ${r.kind} (${r.jobId}${r.notes.length ? `; ${r.notes.join("; ")}` : ""})`
      for (const note of r.notes) if (note.startsWith("DRIVER FAILED")) problems.push(`${where}: ${note}`)
      const events = completed.get(r.jobId) ?? []
      if (r.race === "aborted-during-launch") abortedDuringLaunch++
      if (!r.registered) {
        if (events.length !== 0) problems.push(`${where}: a refused job got ${events.length} Completed`)
      } else if (events.length !== 1) {
        problems.push(`${where}: ${events.length} Completed events (exactly one expected)`)
      } else {
        const event = events[0]!
        const rc = event.outcome.returnCode
        if (!r.expected.includes(rc)) {
          problems.push(`${where}: return code ${rc} (exit ${JSON.stringify(event.outcome.exit)}), the outcome table allows ${r.expected.join(" or ")}`)
        } else {
          outcomesOk++
          if (r.expected.length > 1) races[`${r.kind}→${rc}`] = (races[`${r.kind}→${rc}`] ?? 0) + 1
        }
        if (r.outcome !== undefined && JSON.stringify(r.outcome) !== JSON.stringify(event.outcome)) {
          problems.push(`${where}: awaitCompletion ${JSON.stringify(r.outcome)} differs from Completed ${JSON.stringify(event.outcome)}`)
        }
        const terminal = rc === 0 || rc === 9 ? 3 : 4
        if (statuses.get(r.jobId) !== terminal) problems.push(`${where}: status ${statuses.get(r.jobId)} after return code ${rc}, expected ${terminal}`)
        if (r.expectFreeError !== (event.freeError !== undefined)) {
          problems.push(`${where}: freeError ${JSON.stringify(event.freeError)} (${r.expectFreeError ? "one" : "none"} expected)`)
        }
        if (event.freeError !== undefined) freeErrors++
      }
      for (const m of r.managers) {
        const frees = m.rm.freedTokens().get(m.token) ?? 0
        const other = [...m.rm.freedTokens().keys()].filter((t) => t !== m.token)
        if (frees !== m.frees || other.length > 0) problems.push(`${where}: token ${m.token} freed ${frees} time(s), expected ${m.frees}${other.length ? `; other tokens freed: ${other}` : ""}`)
        else if (m.frees === 1) freedOnce++
        else if (!r.registered) refusedNeverFreed++
      }
    }

    // leaks: live processes/containers of the run, socket directories, pid files
    const leaks: Array<string> = []
    const alive = yield* until("the run's jobs to be gone", Effect.map(backend.alive(prefix), (a) => a.length === 0), 10_000).pipe(
      Effect.flatMap(() => Effect.succeed([] as ReadonlyArray<string>)),
      Effect.catchAll(() => backend.alive(prefix))
    )
    leaks.push(...alive.map((a) => `alive: ${a}`))
    for (const dir of Object.values(runtimeDirs)) {
      for (const sub of ["ch", "pids"]) {
        const d = path.join(dir, sub)
        if (fs.existsSync(d)) leaks.push(...fs.readdirSync(d).map((f) => `left: ${path.join(d, f)}`))
      }
    }

    // heap: back within a bound of its start, after a forced GC
    records.forEach((r) => r.managers.splice(0))
    completed.clear()
    const after = memory()
    const heapDeltaBytes = after.heap - before.heap
    const externalDeltaBytes = after.external - before.external
    if (heapDeltaBytes > backend.heapBoundBytes) problems.push(`heap grew by ${(heapDeltaBytes / MiB).toFixed(1)} MiB (bound ${backend.heapBoundBytes / MiB} MiB)`)
    if (externalDeltaBytes > backend.heapBoundBytes) problems.push(`external memory grew by ${(externalDeltaBytes / MiB).toFixed(1)} MiB (bound ${backend.heapBoundBytes / MiB} MiB)`)

    const faultsInjected = records.filter((r) => r.kind !== "exit-code" || !r.notes.includes("code 0")).length
    const report: ChaosReport = {
      seed,
      jobs: jobCount,
      faults,
      faultsInjected,
      outcomesOk,
      races,
      freedOnce,
      refusedNeverFreed,
      freeErrors,
      abortedDuringLaunch,
      leaks,
      problems,
      heapDeltaBytes,
      externalDeltaBytes,
      ms: Date.now() - began
    }
    const mib = (b: number) => `${(b / MiB).toFixed(1)}MiB`
    console.log(
      `chaos(${backend.name}): seed=${seed} cases=${jobCount} faults=${faultsInjected} leaks=${leaks.length} outcomes ok=${outcomesOk}/${records.filter((r) => r.registered).length}` +
        ` races=${JSON.stringify(races)} abortedDuringLaunch=${abortedDuringLaunch} freedOnce=${freedOnce} refusedNeverFreed=${refusedNeverFreed}` +
        ` freeErrors=${freeErrors} heapDelta=${mib(heapDeltaBytes)} externalDelta=${mib(externalDeltaBytes)}` +
        ` problems=${problems.length} time=${((Date.now() - began) / 1000).toFixed(1)}s`
    )
    console.log(`chaos(${backend.name}): fault kinds ${JSON.stringify(faults)}`)
    return report
  })
