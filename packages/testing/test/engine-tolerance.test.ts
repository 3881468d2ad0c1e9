/**
 * The engine around broken backends, through the public API (`makeJobExecutor`
 * on the TestClock, the Promise facade on the live clock with short durations):
 * every failure is reported after its cleanup, no backend call can wedge it, and
 * a rejected `startApp` leaves nothing behind.
 */
import { describe, expect, it } from "@effect/vitest"
import type { ClientExecutorService, ExecutorEvent, JobExecutorOptions, JobLauncher } from "@flexec/core"
import { jobExecutorLayer, LaunchFailed, makeJobExecutor } from "@flexec/core"
import { toPromiseExecutor } from "@flexec/core/promise"
import { Effect, Exit, Fiber, Logger, Option, Queue, Scope, TestClock, TestContext } from "effect"
import type { Duration } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Breakage, InMemoryLauncher, LaunchFailure } from "../src/index.js"
import {
  brokenCall,
  brokenMessage,
  deployJob,
  handleWithout,
  InMemoryJobLauncher,
  launchFailingAfter,
  launchWithoutHandle,
  MockResourceManager,
  mockClient,
  waitHangsAfterTerminate,
  waitUnavailableAfterTerminate
} from "../src/index.js"

const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** Lets real I/O (the in-memory duplex, the worker's promises) make progress. */
const tick = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** Waits on the live clock (without advancing the TestClock) up to `ms` for the fiber to be done. */
const doneWithin = <A, E>(fiber: Fiber.Fiber<A, E>, ms: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    while (Option.isNone(yield* Fiber.poll(fiber))) {
      if (Date.now() > deadline) return false
      yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 1)))
    }
    return true
  })

/**
 * Advances the TestClock in steps until the fiber is done; dies if `max` steps of clock
 * time are not enough (what is left then is real I/O, given up to 10 s of wall clock).
 */
const adjustUntilDone = <A, E>(fiber: Fiber.Fiber<A, E>, step: Duration.DurationInput, max = 400) =>
  Effect.gen(function* () {
    for (let i = 0; i < max; i++) {
      for (let j = 0; j < 3; j++) yield* tick
      if (Option.isSome(yield* Fiber.poll(fiber))) return yield* Fiber.join(fiber)
      yield* TestClock.adjust(step)
    }
    if (yield* doneWithin(fiber, 10_000)) return yield* Fiber.join(fiber)
    return yield* Effect.dieMessage("fiber did not finish")
  })

/** Waits on the live clock (without advancing the TestClock) up to 10 s for `ok()` to hold. */
const waitUntilTrue = (ok: () => boolean) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 10_000
    while (!ok()) {
      if (Date.now() > deadline) return yield* Effect.dieMessage("condition not reached")
      yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 1)))
    }
  })

/** Log lines of the test (the engine names the backend in every fault it logs). */
const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ message }) => {
    lines.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

const timing = { graceMs: 2_000, killTimeoutMs: 1_000, backendSlackMs: 3_000, startTimeoutMs: 60_000 } as const

/** An executor over `launcher` (built from a live in-memory launcher), in the test's scope. */
const setup = (
  breakIt: (launcher: InMemoryLauncher) => JobLauncher,
  options: Partial<JobExecutorOptions> = {}
) =>
  Effect.gen(function* () {
    const workspace = yield* tempDir("flx-tol-ws-")
    const runtimeDir = yield* tempDir("flx-tol-rt-")
    const base = yield* InMemoryJobLauncher.make()
    const launcher = breakIt(base)
    const executor = yield* makeJobExecutor({ client: mockClient(), launcher, runtimeDir, ...timing, ...options })
    const events = yield* executor.subscribe
    const rm = new MockResourceManager()
    return { workspace, runtimeDir, base, launcher, executor, events, rm }
  })

/** An allocation from `rm`, as a scheduler hands it to `startApp`. */
const allocate = (rm: MockResourceManager) =>
  Effect.gen(function* () {
    const { token } = yield* rm.checkResources({})
    const allocatedResource = yield* Effect.orDie(rm.allocateResources({}, token))
    return { token, allocatedResource, resourceManager: rm }
  })

const start = (
  executor: ClientExecutorService,
  workspace: string,
  jobId: string,
  fixture: Parameters<typeof deployJob>[0]["fixture"],
  extra: Record<string, unknown> = {}
) =>
  Effect.gen(function* () {
    const job = yield* deployJob({ workspace, jobId, clientName: "site-1", fixture })
    return yield* executor.startApp({ jobId, args: { workspace, set: job.set }, ...extra })
  })

/** The events already published (no waiting). */
const publishedSoFar = (events: Queue.Dequeue<ExecutorEvent>) => Effect.map(Queue.takeAll(events), (c) => [...c])

describe("a failed launch is reported only after its cleanup", () => {
  it.scoped("LaunchFailed after the real launch: unregistered, freed once, Completed published, job gone; a retry right after works", () =>
    Effect.gen(function* () {
      let broken = true
      const { workspace, executor, events, rm, base } = yield* setup((l) => {
        const failing = launchFailingAfter(l, "200 millis")
        return { ...l, launch: (request) => (broken ? failing.launch(request) : l.launch(request)) }
      })
      const alloc = yield* allocate(rm)
      const starting = yield* Effect.fork(Effect.flip(start(executor, workspace, "job-1", "exit-on-abort", alloc)))
      const error = yield* adjustUntilDone(starting, "50 millis")
      expect(error).toBeInstanceOf(LaunchFailed)
      expect(error.message).toContain(brokenMessage("launch"))
      // at the rejection: nothing left
      expect(yield* executor.jobs).toEqual([])
      expect(rm.freedTokens().get(alloc.token)).toBe(1)
      expect(base.running()).toBe(0)
      const published = yield* publishedSoFar(events)
      expect(published.filter((e) => e._tag === "Completed" && e.jobId === "job-1")).toHaveLength(1)
      // the retry right after is not JobAlreadyRegistered
      broken = false
      const again = yield* allocate(rm)
      yield* start(executor, workspace, "job-1", "exit-on-abort", again)
      expect((yield* executor.jobs).map((j) => j.jobId)).toEqual(["job-1"])
      yield* executor.abortApp("job-1")
      expect(rm.freedTokens().get(again.token)).toBe(1)
      expect(rm.freedTokens().get(alloc.token)).toBe(1)
    }))

  for (const how of ["defect", "undeclared", "throw"] as const satisfies ReadonlyArray<LaunchFailure>) {
    it.scoped(`a launch that fails with ${how === "throw" ? "a synchronous throw" : `a ${how} error`} is LaunchFailed naming the backend`, () =>
      Effect.gen(function* () {
        const { workspace, executor, rm, base } = yield* setup((l) => launchFailingAfter(l, 0, how))
        const alloc = yield* allocate(rm)
        const error = yield* Effect.flip(start(executor, workspace, "job-1", "exit-on-abort", alloc))
        expect(error).toBeInstanceOf(LaunchFailed)
        expect(error.message).toContain(`backend "in-memory"`)
        expect(error.message).toContain(brokenMessage("launch"))
        expect(yield* executor.jobs).toEqual([])
        expect(rm.freedTokens().get(alloc.token)).toBe(1)
        expect(base.running()).toBe(0)
      }))
  }
})

describe("a handle the engine cannot supervise is LaunchFailed", () => {
  const cases: ReadonlyArray<[string, (l: InMemoryLauncher) => JobLauncher, RegExp]> = [
    ["no handle (undefined)", (l) => launchWithoutHandle(l), /returned no handle \(got undefined\)/],
    ["no handle (null)", (l) => launchWithoutHandle(l, null), /returned no handle \(got null\)/],
    ["a handle without wait", (l) => handleWithout(l, ["wait"]), /without wait \(an Effect\)$/],
    ["a handle without terminate", (l) => handleWithout(l, ["terminate"]), /without terminate \(a function\)$/],
    ["a handle without both", (l) => handleWithout(l, ["wait", "terminate"]), /without wait \(an Effect\) and terminate \(a function\)$/]
  ]
  for (const [name, breakIt, says] of cases) {
    it.scoped(`${name}: LaunchFailed naming the backend and what is missing; unregistered, freed, the job stopped`, () =>
      Effect.gen(function* () {
        const { workspace, executor, rm, base, events } = yield* setup(breakIt)
        const alloc = yield* allocate(rm)
        const error = yield* Effect.flip(start(executor, workspace, "job-1", "exit-on-abort", alloc))
        expect(error).toBeInstanceOf(LaunchFailed)
        expect(error.message).toMatch(/backend "in-memory" returned/)
        expect(error.message).toMatch(says)
        expect(yield* executor.jobs).toEqual([])
        expect(rm.freedTokens().get(alloc.token)).toBe(1)
        expect(base.running()).toBe(0)
        expect((yield* publishedSoFar(events)).map((e) => e._tag)).toEqual(["Completed"])
        // nothing to abort, and the outcome is remembered
        yield* executor.abortApp("job-1")
        expect((yield* executor.awaitCompletion("job-1")).returnCode).toBe(104)
      }))
  }
})

describe("every backend call is bounded", () => {
  const breakages: ReadonlyArray<Breakage> = ["hang", "hang-uninterruptibly", "defect", "throw"]
  const does: Record<Breakage, string> = {
    hang: "hangs",
    "hang-uninterruptibly": "hangs uninterruptibly",
    defect: "dies",
    throw: "throws"
  }

  for (const how of breakages) {
    it.scoped(`terminate that ${does[how]}: abortApp returns within kill timeout + slack; 9, lost; logged naming the backend`, () => {
      const logs = captureLogs()
      return Effect.gen(function* () {
        const { workspace, executor, base } = yield* setup((l) => brokenCall(l, "terminate", how))
        yield* start(executor, workspace, "job-1", "never-connect")
        const abort = yield* Effect.fork(executor.abortApp("job-1"))
        yield* adjustUntilDone(abort, "500 millis", Math.ceil((timing.killTimeoutMs * 2 + timing.backendSlackMs * 2) / 500) + 4)
        const outcome = yield* executor.awaitCompletion("job-1")
        expect(outcome).toMatchObject({ returnCode: 9, exit: { lost: true } })
        expect(yield* executor.jobs).toEqual([])
        // the launch scope closed with the outcome: the job is gone even though terminate never worked
        expect(base.running()).toBe(0)
        expect(logs.lines.some((l) => l.includes(`backend "in-memory"`) && l.includes("terminate"))).toBe(true)
      }).pipe(Effect.provide(logs.layer))
    })
  }

  for (const how of breakages) {
    it.scoped(`wait that ${does[how]}: abortApp and close() return (9), or a wait that throws is lost (127)`, () =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const workspace = yield* tempDir("flx-tol-ws-")
        const runtimeDir = yield* tempDir("flx-tol-rt-")
        const base = yield* InMemoryJobLauncher.make()
        const executor = yield* makeJobExecutor({
          client: mockClient(),
          launcher: brokenCall(base, "wait", how),
          runtimeDir,
          ...timing
        }).pipe(Scope.extend(scope))
        yield* start(executor, workspace, "job-1", "ignore-abort")
        yield* start(executor, workspace, "job-2", "ignore-abort")
        const waiter = yield* Effect.fork(executor.awaitCompletion("job-1"))
        if (how === "hang" || how === "hang-uninterruptibly") {
          yield* Effect.fork(executor.abortApp("job-1"))
          expect((yield* adjustUntilDone(waiter, "500 millis", 40)).returnCode).toBe(9)
          const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
          yield* adjustUntilDone(closing, "500 millis", 40)
        } else {
          // a wait that throws: the engine stops the job it cannot watch, and it is lost (127)
          expect(yield* adjustUntilDone(waiter, "500 millis", 40)).toMatchObject({ returnCode: 127, exit: { lost: true } })
          const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
          yield* adjustUntilDone(closing, "500 millis", 40)
        }
        expect(base.running()).toBe(0)
      }))
  }

  it.scoped("a wait that fails BackendUnavailable on every retry after the terminate: abortApp returns at the kill bound, 9", () =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup((l) => waitUnavailableAfterTerminate(l))
      yield* start(executor, workspace, "job-1", "never-connect")
      const abort = yield* Effect.fork(executor.abortApp("job-1"))
      yield* adjustUntilDone(abort, "500 millis", 40)
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9 })
      expect(yield* executor.jobs).toEqual([])
    }))

  it.scoped("a wait that stops answering after the terminate: a last poll that sees the exit gives the real exit", () =>
    Effect.gen(function* () {
      const { workspace, executor, base } = yield* setup((l) => waitHangsAfterTerminate(l))
      yield* start(executor, workspace, "job-1", "never-connect")
      const abort = yield* Effect.fork(executor.abortApp("job-1"))
      yield* adjustUntilDone(abort, "500 millis", 40)
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9, exit: { signal: "SIGTERM", lost: false } })
      expect(base.running()).toBe(0)
    }))

  for (const how of breakages) {
    it.scoped(`a poll that ${does[how]} after a wait that stops answering: still 9, lost`, () =>
      Effect.gen(function* () {
        const { workspace, executor } = yield* setup((l) => brokenCall(waitHangsAfterTerminate(l), "poll", how))
        yield* start(executor, workspace, "job-1", "never-connect")
        const abort = yield* Effect.fork(executor.abortApp("job-1"))
        yield* adjustUntilDone(abort, "500 millis", 40)
        expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9, exit: { lost: true } })
      }))
  }

  it.scoped("a start timeout whose terminate hangs still ends the job: 104", () =>
    Effect.gen(function* () {
      const { workspace, executor, base } = yield* setup((l) => brokenCall(l, "terminate", "hang"), { startTimeoutMs: 10_000 })
      yield* start(executor, workspace, "job-1", "never-connect")
      const waiter = yield* Effect.fork(executor.awaitCompletion("job-1"))
      expect(yield* adjustUntilDone(waiter, "1 second", 40)).toMatchObject({ returnCode: 104, exit: { lost: true } })
      expect(base.running()).toBe(0)
    }))

  for (const how of breakages) {
    it.scoped(`a recover that ${does[how]}: the executor's start fails BackendUnavailable naming the backend, it does not hang`, () =>
      Effect.gen(function* () {
        const runtimeDir = yield* tempDir("flx-tol-rt-")
        const base = yield* InMemoryJobLauncher.make()
        const broken = brokenCall(base, "recover", how)
        const launcher: JobLauncher = { ...broken, capabilities: { ...broken.capabilities, recover: true } }
        const making = yield* Effect.fork(Effect.scoped(Effect.flip(makeJobExecutor({ client: mockClient(), launcher, runtimeDir, ...timing }))))
        const error = yield* adjustUntilDone(making, "5 seconds", 20)
        expect(error).toMatchObject({ _tag: "BackendUnavailable", backend: "in-memory" })
        expect(error.message).toContain("recover")
      }))
  }

  it.scoped("a recovered job whose terminate and wait hang is reaped within the bounds; the executor starts", () =>
    Effect.gen(function* () {
      const runtimeDir = yield* tempDir("flx-tol-rt-")
      const base = yield* InMemoryJobLauncher.make()
      const launcher: JobLauncher = {
        ...base,
        capabilities: { ...base.capabilities, recover: true },
        recover: () =>
          Effect.succeed([
            {
              jobId: "orphan" as never,
              instanceId: "default",
              handle: { jobId: "orphan" as never, poll: Effect.never, wait: Effect.never, terminate: () => Effect.never }
            }
          ])
      }
      const making = yield* Effect.fork(
        Effect.scoped(Effect.flatMap(makeJobExecutor({ client: mockClient(), launcher, runtimeDir, ...timing }), (e) => e.recovered))
      )
      const recovered = yield* adjustUntilDone(making, "1 second", 20)
      expect(recovered.map((r) => [r.jobId, r.action])).toEqual([["orphan", "reaped"]])
    }))

  it.scoped("a launch that ignores the abort's interruption: startApp fails JobAborted once backendSlackMs has passed (9); the job it starts later is stopped by its closed scope", () =>
    Effect.gen(function* () {
      let launched = 0
      const { workspace, executor, base, rm } = yield* setup((l) => ({
        ...l,
        // the real launch after 5 s, and nothing can interrupt it
        launch: (r) => Effect.uninterruptible(Effect.zipRight(Effect.sleep("5 seconds"), Effect.tap(l.launch(r), () => void launched++)))
      }))
      const alloc = yield* allocate(rm)
      const starting = yield* Effect.fork(Effect.flip(start(executor, workspace, "job-1", "exit-on-abort", alloc)))
      for (let i = 0; i < 5; i++) yield* tick
      const abort = yield* Effect.fork(executor.abortApp("job-1"))
      // the abort waits for the interrupted launch backendSlackMs (3 s), not the 5 s it would take
      expect(yield* doneWithin(abort, 200)).toBe(false)
      yield* adjustUntilDone(abort, "500 millis", (timing.backendSlackMs + 1_000) / 500)
      expect((yield* Fiber.join(starting))._tag).toBe("JobAborted")
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9 })
      expect(yield* executor.jobs).toEqual([])
      expect(rm.freedTokens().get(alloc.token)).toBe(1)
      expect(launched).toBe(0)
      // the launch ends after all: its job is stopped as its scope (closed) takes it
      yield* TestClock.adjust("5 seconds")
      yield* waitUntilTrue(() => launched === 1)
      expect(base.running()).toBe(0)
    }))

  for (const how of ["hang", "defect", "throw"] as const) {
    it.scoped(`a validate that ${does[how]}: LaunchFailed naming the backend, nothing registered, nothing launched`, () =>
      Effect.gen(function* () {
        let launches = 0
        const { workspace, executor, rm } = yield* setup((l) =>
          brokenCall({ ...l, launch: (r) => Effect.suspend(() => (launches++, l.launch(r))) }, "validate", how)
        )
        const alloc = yield* allocate(rm)
        const starting = yield* Effect.fork(Effect.flip(start(executor, workspace, "job-1", "exit-on-abort", alloc)))
        const error = yield* adjustUntilDone(starting, "1 second", 20)
        expect(error).toBeInstanceOf(LaunchFailed)
        expect(error.message).toContain(`backend "in-memory": job job-1: validate`)
        expect(launches).toBe(0)
        expect(yield* executor.jobs).toEqual([])
        // refused before registering: the allocation is still the caller's
        expect(rm.freedTokens().get(alloc.token)).toBeUndefined()
      }))
  }
})

describe("a rejected startApp leaves nothing behind (property)", () => {
  type Fault =
    | { readonly kind: "fails"; readonly how: LaunchFailure; readonly afterMs: number }
    | { readonly kind: "no-handle"; readonly value: null | undefined | number }
    | { readonly kind: "without"; readonly members: ReadonlyArray<"wait" | "terminate"> }
    | { readonly kind: "aborted"; readonly afterMs: number }
  const fault: fc.Arbitrary<Fault> = fc.oneof(
    fc.record({
      kind: fc.constant("fails" as const),
      how: fc.constantFrom<LaunchFailure>("LaunchFailed", "defect", "undeclared", "throw"),
      afterMs: fc.integer({ min: 0, max: 3_000 })
    }),
    fc.record({ kind: fc.constant("no-handle" as const), value: fc.constantFrom(null, undefined, 42) }),
    fc.record({
      kind: fc.constant("without" as const),
      members: fc.constantFrom<ReadonlyArray<"wait" | "terminate">>(["wait"], ["terminate"], ["wait", "terminate"])
    }),
    fc.record({ kind: fc.constant("aborted" as const), afterMs: fc.integer({ min: 0, max: 3_000 }) })
  )

  const breakFor = (f: Fault) => (l: InMemoryLauncher): JobLauncher => {
    switch (f.kind) {
      case "fails":
        return launchFailingAfter(l, f.afterMs, f.how)
      case "no-handle":
        return launchWithoutHandle(l, f.value)
      case "without":
        return handleWithout(l, f.members)
      case "aborted":
        // a launch that starts the job, then takes its time: abortApp interrupts it
        return { ...l, launch: (r) => Effect.tap(l.launch(r), () => Effect.sleep("1 hour")) }
    }
  }

  it("after any rejection: jobs() does not list it, each allocation freed exactly once, Completed once, no job runs, a retry is not refused", async () => {
    await fc.assert(
      fc.asyncProperty(fault, fc.boolean(), async (f, withAllocation) => {
        const program = Effect.gen(function* () {
          const { workspace, executor, rm, base, events } = yield* setup(breakFor(f))
          const alloc: { readonly token?: string } = withAllocation ? yield* allocate(rm) : {}
          const starting = yield* Effect.fork(Effect.flip(start(executor, workspace, "job-p", "exit-on-abort", alloc)))
          if (f.kind === "aborted") {
            yield* TestClock.adjust(`${f.afterMs} millis`)
            for (let i = 0; i < 3; i++) yield* tick
            yield* executor.abortApp("job-p")
          }
          const error = yield* adjustUntilDone(starting, "100 millis", 60)
          expect(error._tag).toBe(f.kind === "aborted" ? "JobAborted" : "LaunchFailed")
          expect(yield* executor.jobs).toEqual([])
          if (alloc.token !== undefined) {
            expect(rm.freedTokens().get(alloc.token)).toBe(1)
            expect(rm.callsTo("freeResources")).toHaveLength(1)
          } else {
            expect(rm.callsTo("freeResources")).toHaveLength(0)
          }
          expect(base.running()).toBe(0)
          const completed = (yield* publishedSoFar(events)).filter((e) => e._tag === "Completed" && e.jobId === "job-p")
          expect(completed).toHaveLength(1)
          // a retry right after is refused only as the backend refuses it, never as still registered
          const retry = yield* Effect.fork(Effect.either(start(executor, workspace, "job-p", "exit-on-abort")))
          if (f.kind === "aborted") {
            yield* TestClock.adjust("1 millis")
            yield* executor.abortApp("job-p")
          }
          const again = yield* adjustUntilDone(retry, "100 millis", 60)
          if (again._tag === "Left") expect(again.left._tag).not.toBe("JobAlreadyRegistered")
          yield* executor.abortApp("job-p")
          expect(base.running()).toBe(0)
        })
        await Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(TestContext.TestContext)))
      }),
      { numRuns: 60 }
    )
  })
})

describe("the Promise facade around broken backends (live clock, short durations)", () => {
  const fast = { graceMs: 100, killTimeoutMs: 100, backendSlackMs: 200, startTimeoutMs: 30_000 }
  const make = (launcher: JobLauncher, options: Partial<JobExecutorOptions> = {}) => {
    const runtimeDir = fs.mkdtempSync(path.join(os.tmpdir(), "flx-tol-rt-"))
    return toPromiseExecutor(jobExecutorLayer({ client: mockClient(), launcher, runtimeDir, ...fast, ...options }))
  }
  const deploy = (workspace: string, jobId: string, fixture: Parameters<typeof deployJob>[0]["fixture"]) =>
    Effect.runSync(deployJob({ workspace, jobId, clientName: "site-1", fixture }))

  it("a handle without wait: startApp rejects LaunchFailed after the cleanup; an immediate retry is not JobAlreadyRegistered", async () => {
    const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "flx-tol-ws-"))
    const base = InMemoryJobLauncher.unsafeMake()
    const executor = await make(handleWithout(base, ["wait"]))
    try {
      const rm = new MockResourceManager()
      const alloc = await Effect.runPromise(allocate(rm))
      const job = deploy(workspace, "job-1", "exit-on-abort")
      const first = await executor.startApp({ jobId: "job-1", args: { workspace, set: job.set }, ...alloc }).catch((e: unknown) => e)
      expect(first).toBeInstanceOf(LaunchFailed)
      expect((first as LaunchFailed).message).toContain("without wait")
      expect(await executor.jobs()).toEqual([])
      expect(rm.freedTokens().get(alloc.token)).toBe(1)
      expect(base.running()).toBe(0)
      const again = await executor.startApp({ jobId: "job-1", args: { workspace, set: job.set } }).catch((e: unknown) => e)
      expect(again).toBeInstanceOf(LaunchFailed)
    } finally {
      await executor.close()
      fs.rmSync(workspace, { recursive: true, force: true })
    }
  })

  it("terminate that hangs: abortApp and close() return; the outcome is 9, lost", async () => {
    const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "flx-tol-ws-"))
    const base = InMemoryJobLauncher.unsafeMake()
    const executor = await make(brokenCall(base, "terminate", "hang-uninterruptibly"))
    let closed = false
    try {
      for (const id of ["job-1", "job-2"]) {
        const job = deploy(workspace, id, "never-connect")
        await executor.startApp({ jobId: id, args: { workspace, set: job.set } })
      }
      await executor.abortApp("job-1")
      expect(await executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9, exit: { lost: true } })
      const outcome = executor.awaitCompletion("job-2")
      await executor.close()
      closed = true
      expect(await outcome).toMatchObject({ returnCode: 9, exit: { lost: true } })
      expect(base.running()).toBe(0)
    } finally {
      if (!closed) await executor.close()
      fs.rmSync(workspace, { recursive: true, force: true })
    }
  })

  it("wait that throws: the job is terminated and completes as lost (127); close() returns", async () => {
    const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "flx-tol-ws-"))
    const base = InMemoryJobLauncher.unsafeMake()
    // the job survives SIGTERM (SIGKILL comes 5 s later), so the engine's last poll sees it running: lost
    const executor = await make(brokenCall(base, "wait", "throw"), { killTimeoutMs: 5_000 })
    try {
      const job = deploy(workspace, "job-1", "ignore-abort")
      await executor.startApp({ jobId: "job-1", args: { workspace, set: job.set } })
      expect(await executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 127, exit: { lost: true } })
      expect(base.running()).toBe(0)
    } finally {
      await executor.close()
      fs.rmSync(workspace, { recursive: true, force: true })
    }
  })
})
