import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Option, Queue, Scope, Stream, TestClock } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Message from "../src/Message.js"
import { ClientStatus } from "../src/Status.js"
import type { Allocation, ResourceManager } from "../src/ResourceManager.js"
import { deploy, nextEvent, programs, setup, tempDir } from "./support/setup.js"
import { makeJobExecutor } from "../src/JobExecutor.js"
import { makeMemoryLauncher } from "./support/memoryLauncher.js"

/** Lets real I/O (the in-memory duplex, the worker's promises) make progress. */
const tick = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** Advances the TestClock in steps until the fiber is done. */
const adjustUntilDone = <A, E>(fiber: Fiber.RuntimeFiber<A, E>, step: Duration.DurationInput, max = 200) =>
  Effect.gen(function* () {
    for (let i = 0; i < max; i++) {
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) return yield* Fiber.join(fiber)
      yield* TestClock.adjust(step)
      yield* tick
    }
    return yield* Effect.dieMessage("fiber did not finish")
  })

/** Polls `effect` (letting real I/O run between tries) until `ok`, at most `max` tries. */
const waitFor = <A, E>(effect: Effect.Effect<A, E>, ok: (a: A) => boolean, max = 1000) =>
  Effect.gen(function* () {
    for (let i = 0; i < max; i++) {
      const a = yield* effect
      if (ok(a)) return a
      yield* tick
    }
    return yield* Effect.dieMessage("condition not reached")
  })

/** A resource manager that records frees. */
const recordingManager = (behaviour: "ok" | "fail" | "hang" = "ok") => {
  const frees: Array<{ resources: Allocation; token: string }> = []
  const manager: ResourceManager = {
    checkResources: () => Effect.succeed({ ok: true, token: "t" }),
    cancelResources: () => Effect.void,
    allocateResources: () => Effect.succeed({}),
    freeResources: (resources, token) =>
      Effect.suspend(() => {
        frees.push({ resources, token })
        return behaviour === "fail" ? Effect.die(new Error("free exploded")) : behaviour === "hang" ? Effect.never : Effect.void
      }),
    reportResources: () => Effect.succeed({})
  }
  return { manager, frees }
}

describe("engine: lifecycle", () => {
  it.scoped("Starting → Started → Stopped → unregistered, terminal status kept", () =>
    Effect.gen(function* () {
      const { workspace, executor, events } = yield* setup(() => programs.cooperative)
      deploy(workspace, "job-1")
      expect(yield* executor.checkStatus("job-1")).toBe("not started")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      expect((yield* executor.jobs).map((j) => j.jobId)).toEqual(["job-1"])
      yield* nextEvent(events, "Started", "job-1")
      expect(yield* executor.getStatus("job-1")).toBe(ClientStatus.Started)
      expect(yield* executor.checkStatus("job-1")).toBe("started")
      yield* executor.abortApp("job-1")
      const outcome = yield* executor.awaitCompletion("job-1")
      expect(outcome.returnCode).toBe(9)
      expect(outcome.reason).toBe("aborted")
      expect(yield* executor.jobs).toEqual([])
      expect(yield* executor.checkStatus("job-1")).toBe("stopped")
    }))

  it.scoped("events: Launched, Started, Stopped, Completed, exactly one Completed per job", () =>
    Effect.gen(function* () {
      const { workspace, executor, events } = yield* setup(() => programs.exitWith(0))
      deploy(workspace, "job-1")
      deploy(workspace, "job-2")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* executor.startApp({ jobId: "job-2", args: { workspace } })
      yield* executor.awaitCompletion("job-1")
      yield* executor.awaitCompletion("job-2")
      const all = yield* Queue.takeAll(events)
      for (const jobId of ["job-1", "job-2"]) {
        expect([...all].filter((e) => e.jobId === jobId).map((e) => e._tag)).toEqual(["Launched", "Started", "Stopped", "Completed"])
      }
      expect((yield* executor.awaitCompletion("job-1")).returnCode).toBe(0)
    }))

  it.scoped("logs(jobId) streams the handle's lines while the job is registered, nothing for unknown jobs", () =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup(() => programs.cooperative)
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      const lines = yield* Stream.runCollect(executor.logs("job-1"))
      expect([...lines].map((l) => l.line)).toEqual(["hello from job-1"])
      expect([...(yield* Stream.runCollect(executor.logs("ghost")))]).toEqual([])
      yield* executor.abortApp("job-1")
    }))

  it.scoped("a second startApp for a registered id is refused and launches nothing", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher } = yield* setup(() => programs.cooperative)
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      const again = yield* Effect.flip(executor.startApp({ jobId: "job-1", args: { workspace } }))
      expect(again._tag).toBe("JobAlreadyRegistered")
      expect(launcher.launches).toHaveLength(1)
      yield* executor.abortApp("job-1")
    }))
})

describe("engine: bad input leaves nothing behind", () => {
  it.scoped("invalid ids, missing or drifted meta, BYOC and GPU count are refused before anything is registered", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher } = yield* setup(() => programs.cooperative)
      const { manager, frees } = recordingManager()
      const start = (jobId: string, extra: Record<string, unknown> = {}) =>
        Effect.flip(
          executor.startApp({
            jobId,
            args: { workspace },
            allocatedResource: { gpu: ["0"] },
            token: "tok",
            resourceManager: manager,
            ...extra
          })
        )
      expect((yield* start("../etc")) ._tag).toBe("InvalidJobId")
      expect((yield* start("startup"))._tag).toBe("InvalidJobId")
      expect((yield* start("job-1", { client: { clientName: "bad name" } }))._tag).toBe("InvalidClient")
      const missing = yield* start("job-1")
      expect(missing._tag).toBe("JobMetaMissing")
      expect(missing.message).toContain(path.join(workspace, "job-1", "meta.json"))
      deploy(workspace, "job-2", { scope: "a", resource_spec: { "site-1": { num_of_gpus: 1 } } })
      const drift = yield* start("job-2", { jobMeta: { job_id: "job-2", scope: "b", resource_spec: { "site-1": { num_of_gpus: 1 } } } })
      expect(drift).toMatchObject({ _tag: "JobMetaMismatch", key: "scope" })
      // a START meta naming another job_id drifts from the deployed one: JobMetaMismatch, not InvalidJobMeta
      const otherId = yield* start("job-2", { jobMeta: { job_id: "job-9", scope: "a", resource_spec: { "site-1": { num_of_gpus: 1 } } } })
      expect(otherId).toMatchObject({ _tag: "JobMetaMismatch", jobId: "job-2", key: "job_id" })
      expect(otherId.message).toContain("job_id")
      deploy(workspace, "job-3", { launcher_spec: { default: { process: { command: ["/bin/sh", "-c", "x"] } } } })
      const byoc = yield* start("job-3")
      expect(byoc._tag).toBe("InvalidJobMeta")
      expect(byoc.message).toContain("byoc")
      deploy(workspace, "job-4", { resource_spec: { "site-1": { num_of_gpus: 2 } } })
      const gpus = yield* start("job-4")
      expect(gpus._tag).toBe("InvalidJobMeta")
      expect(gpus.message).toContain("2 GPU")
      fs.mkdirSync(path.join(workspace, "job-5"))
      fs.writeFileSync(path.join(workspace, "job-5", "meta.json"), "{ not json")
      expect((yield* start("job-5"))._tag).toBe("InvalidJobMeta")
      expect(launcher.launches).toHaveLength(0)
      expect(yield* executor.jobs).toEqual([])
      expect(frees).toHaveLength(0)
    }))

  it.scoped("byoc is honoured only from the deployed meta and only with allowByoc", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher } = yield* setup(() => programs.exitWith(0), { allowByoc: true })
      const spec1 = { "site-1": { process: { command: ["{appDir}/run", "x y"] } } }
      deploy(workspace, "job-1", { byoc: true, launcher_spec: spec1 })
      yield* executor.startApp({ jobId: "job-1", args: { workspace }, jobMeta: { job_id: "job-1", launcher_spec: spec1, byoc: false } })
      expect(launcher.launches[0]!.command).toEqual([path.join(workspace, "job-1", "app_site-1", "run"), "x y"])
      expect(launcher.launches[0]!.meta.byoc).toBe(true)
      deploy(workspace, "job-2", { launcher_spec: { "site-1": { process: { command: ["x"] } } } })
      const refused = yield* Effect.flip(
        executor.startApp({ jobId: "job-2", args: { workspace }, jobMeta: { job_id: "job-2", byoc: true, launcher_spec: { "site-1": { process: { command: ["x"] } } } } })
      )
      expect(refused._tag).toBe("InvalidJobMeta")
      yield* executor.awaitCompletion("job-1")
    }))
})

describe("engine: abort", () => {
  it.scoped("abort while Starting terminates at once: 9", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher } = yield* setup(() => programs.neverConnects)
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      expect(yield* executor.getStatus("job-1")).toBe(ClientStatus.Starting)
      yield* executor.abortApp("job-1")
      expect(launcher.terminations).toEqual(["job-1"])
      const outcome = yield* executor.awaitCompletion("job-1")
      expect(outcome).toMatchObject({ returnCode: 9, exit: { signal: "SIGTERM" } })
    }))

  it.scoped("abort while Started sends abort; a cooperative worker exits without terminate", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher, events } = yield* setup(() => programs.cooperative)
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* nextEvent(events, "Started", "job-1")
      yield* executor.abortApp("job-1")
      expect(launcher.terminations).toEqual([])
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9, exit: { code: 0 } })
    }))

  it.scoped("a worker that ignores abort is terminated after the grace period, then killed", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher, events } = yield* setup(() => programs.stubborn, { graceMs: 10_000, killTimeoutMs: 5_000 })
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* nextEvent(events, "Started", "job-1")
      const abort = yield* Effect.fork(executor.abortApp("job-1"))
      yield* tick
      yield* TestClock.adjust("9 seconds")
      yield* tick
      expect(launcher.terminations).toEqual([])
      yield* adjustUntilDone(abort, "1 second")
      expect(launcher.terminations).toEqual(["job-1"])
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9, exit: { signal: "SIGKILL" } })
    }))

  it.scoped("abort is idempotent and a no-op for unknown or finished jobs", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher } = yield* setup(() => programs.neverConnects)
      yield* executor.abortApp("never-seen")
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* Effect.all([executor.abortApp("job-1"), executor.abortApp("job-1"), executor.abortApp("job-1")], { concurrency: "unbounded" })
      yield* executor.abortApp("job-1")
      expect(launcher.terminations).toEqual(["job-1"])
      expect((yield* Effect.flip(executor.abortApp("../x")))._tag).toBe("InvalidJobId")
    }))

  it.scoped("abort during the launch interrupts it: startApp fails JobAborted, the launch scope is cleaned, Completed 9", () =>
    Effect.gen(function* () {
      const closed: Array<string> = []
      const { workspace, executor, launcher } = yield* setup(() => "hang", {}, {}, { onLaunchScopeClosed: (id) => closed.push(id) })
      const { manager, frees } = recordingManager()
      deploy(workspace, "job-1")
      const start = yield* Effect.fork(
        executor.startApp({ jobId: "job-1", args: { workspace }, allocatedResource: { gpu: [] , slots: [1] }, token: "tok", resourceManager: manager })
      )
      while (launcher.launches.length === 0) yield* tick
      yield* executor.abortApp("job-1")
      const exit = yield* Fiber.await(start)
      expect(Exit.isFailure(exit) && Exit.causeOption(exit).pipe(Option.map(String), Option.getOrElse(() => ""))).toContain("JobAborted")
      expect(closed).toEqual(["job-1"])
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9 })
      expect(frees).toEqual([{ resources: { gpu: [], slots: [1] }, token: "tok" }])
    }))

  it.scoped("abort during a launch's uninterruptible acquire: its release has run when the abort returns and Completed is published", () =>
    Effect.gen(function* () {
      const steps: Array<string> = []
      const memory = makeMemoryLauncher(() => "hang")
      // a backend's acquireRelease whose acquire (a spawn, a pid file) takes 200 ms and cannot be interrupted
      const launcher: typeof memory = {
        ...memory,
        launch: (request) =>
          Effect.acquireRelease(
            Effect.zipRight(Effect.sleep("200 millis"), Effect.sync(() => void steps.push("acquired"))),
            () => Effect.sync(() => void steps.push("released"))
          ).pipe(Effect.zipRight(memory.launch(request)))
      }
      const { workspace, executor, events } = yield* setup(() => "hang", { launcher, backendSlackMs: 1_000 })
      deploy(workspace, "job-1")
      const start = yield* Effect.fork(executor.startApp({ jobId: "job-1", args: { workspace } }))
      while ((yield* executor.checkStatus("job-1")) === "not started") yield* tick
      const abort = yield* Effect.fork(executor.abortApp("job-1"))
      const completed = yield* Effect.fork(Effect.map(nextEvent(events, "Completed", "job-1"), () => [...steps]))
      yield* adjustUntilDone(abort, "50 millis", 40)
      // when the abort returns, the acquire has finished and its release has run: nothing of the launch outlives Completed
      expect(steps).toEqual(["acquired", "released"])
      expect(yield* Fiber.join(completed)).toEqual(["acquired", "released"])
      const exit = yield* Fiber.await(start)
      expect(Exit.isFailure(exit) && Exit.causeOption(exit).pipe(Option.map(String), Option.getOrElse(() => ""))).toContain("JobAborted")
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9 })
      expect(yield* executor.jobs).toEqual([])
    }))

  it.scoped("abort during a launch that ignores its interruption: the abort returns after backendSlackMs, Completed 9", () =>
    Effect.gen(function* () {
      const memory = makeMemoryLauncher(() => "hang")
      let launched = 0
      const launcher: typeof memory = {
        ...memory,
        launch: (request) => Effect.uninterruptible(Effect.zipRight(Effect.sleep("10 seconds"), Effect.tap(memory.launch(request), () => void launched++)))
      }
      const { workspace, executor } = yield* setup(() => "hang", { launcher, backendSlackMs: 1_000 })
      deploy(workspace, "job-1")
      const start = yield* Effect.fork(executor.startApp({ jobId: "job-1", args: { workspace } }))
      while ((yield* executor.checkStatus("job-1")) === "not started") yield* tick
      const abort = yield* Effect.fork(executor.abortApp("job-1"))
      yield* TestClock.adjust("900 millis")
      yield* tick
      expect(Option.isNone(yield* Fiber.poll(abort))).toBe(true)
      yield* adjustUntilDone(abort, "100 millis", 20)
      expect(launched).toBe(0)
      expect((yield* Effect.flip(Fiber.join(start)))._tag).toBe("JobAborted")
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 9 })
    }))
})

describe("engine: outcomes", () => {
  const outcomeOf = (program: Parameters<typeof setup>[0], options: Parameters<typeof setup>[1] = {}) =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup(program, options)
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      return yield* executor.awaitCompletion("job-1")
    })

  it.scoped("exit 0 → 0", () => Effect.map(outcomeOf(() => programs.exitWith(0)), (o) => expect(o).toMatchObject({ returnCode: 0, reason: undefined })))
  it.scoped("exit 101–104 → that code", () =>
    Effect.forEach([101, 102, 103, 104], (code) =>
      Effect.map(outcomeOf(() => programs.exitWith(code)), (o) => expect(o.returnCode).toBe(code))
    ))
  it.scoped("any other code after Started → 1, raw code kept", () =>
    Effect.map(outcomeOf(() => programs.exitWith(3)), (o) => expect(o).toMatchObject({ returnCode: 1, exit: { code: 3 } })))
  it.scoped("crash while Starting → 104", () =>
    Effect.map(outcomeOf(() => (c) => c.exit(1)), (o) => expect(o).toMatchObject({ returnCode: 104, exit: { code: 1 } })))
  it.scoped("a signal after Started → 1 with the signal kept", () =>
    Effect.map(
      outcomeOf(() => (c) => {
        c.worker({ run: () => new Promise(() => undefined) })
        setTimeout(() => c.kill("SIGSEGV"), 20)
      }),
      (o) => expect(o).toMatchObject({ returnCode: 1, exit: { code: null, signal: "SIGSEGV" } })
    ))
  it.scoped("lost without an exit record → 127", () =>
    Effect.map(outcomeOf(() => (c) => c.lose()), (o) => expect(o.returnCode).toBe(127)))
  it.scoped("the rc file stands for the exit code, and is consumed", () =>
    Effect.gen(function* () {
      const o = yield* outcomeOf(() => (c) => {
        c.writeRc(0)
        c.exit(1)
      })
      expect(o.returnCode).toBe(0)
    }))
  it.scoped("a stale rc file is deleted before launch", () =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup(() => programs.exitWith(3))
      const jobDir = deploy(workspace, "job-1")
      fs.writeFileSync(path.join(jobDir, "_process_rc.txt"), "0")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      expect((yield* executor.awaitCompletion("job-1")).returnCode).toBe(1)
      expect(fs.existsSync(path.join(jobDir, "_process_rc.txt"))).toBe(false)
    }))
  it.scoped("start timeout kills a job that never reports Started → 104", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher } = yield* setup(() => programs.neverConnects, { startTimeoutMs: 60_000 })
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      const waiter = yield* Effect.fork(executor.awaitCompletion("job-1"))
      const o = yield* adjustUntilDone(waiter, "10 seconds")
      expect(launcher.terminations).toEqual(["job-1"])
      expect(o).toMatchObject({ returnCode: 104, reason: "infrastructure error" })
    }))
  it.scoped("a launch failure → LaunchFailed, Completed 104, allocation freed", () =>
    Effect.gen(function* () {
      const { workspace, executor, events } = yield* setup(() => "fail")
      const { manager, frees } = recordingManager()
      deploy(workspace, "job-1")
      const e = yield* Effect.flip(executor.startApp({ jobId: "job-1", args: { workspace }, allocatedResource: { gpu: [] , x: 1 }, token: "tok", resourceManager: manager }))
      expect(e._tag).toBe("LaunchFailed")
      const completed = yield* nextEvent(events, "Completed", "job-1")
      expect(completed.outcome.returnCode).toBe(104)
      expect(frees).toHaveLength(1)
      expect(yield* executor.jobs).toEqual([])
    }))
})

describe("engine: resources", () => {
  it.scoped("freed exactly once per job with its token; nothing freed for an empty allocation", () =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup(() => programs.exitWith(0))
      const { manager, frees } = recordingManager()
      deploy(workspace, "job-1")
      deploy(workspace, "job-2")
      yield* executor.startApp({ jobId: "job-1", args: { workspace }, allocatedResource: { slots: [1] }, token: "t1", resourceManager: manager })
      yield* executor.startApp({ jobId: "job-2", args: { workspace }, allocatedResource: {}, token: "t2", resourceManager: manager })
      yield* executor.awaitCompletion("job-1")
      yield* executor.awaitCompletion("job-2")
      yield* executor.abortApp("job-1")
      expect(frees).toEqual([{ resources: { slots: [1] }, token: "t1" }])
    }))

  it.scoped("a failing free is recorded as freeError and the job still completes", () =>
    Effect.gen(function* () {
      const { workspace, executor, events } = yield* setup(() => programs.exitWith(0))
      const { manager } = recordingManager("fail")
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace }, allocatedResource: { slots: [1] }, token: "t1", resourceManager: manager })
      const completed = yield* nextEvent(events, "Completed", "job-1")
      expect(completed.freeError).toContain("free exploded")
      expect(yield* executor.jobs).toEqual([])
    }))

  it.scoped("a hanging free times out after the step timeout", () =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup(() => programs.exitWith(0), { completionStepTimeoutMs: 30_000 })
      const { manager } = recordingManager("hang")
      deploy(workspace, "job-1")
      const q = yield* executor.subscribe
      yield* executor.startApp({ jobId: "job-1", args: { workspace }, allocatedResource: { slots: [1] }, token: "t1", resourceManager: manager })
      const completed = yield* adjustUntilDone(yield* Effect.fork(nextEvent(q, "Completed", "job-1")), "5 seconds")
      expect(completed.freeError).toContain("did not return")
    }))

  it.scoped("GPU ids of the allocation reach the launch request, normalized", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher } = yield* setup(() => programs.exitWith(0))
      const { manager } = recordingManager()
      deploy(workspace, "job-1", { resource_spec: { "site-1": { num_of_gpus: 2 } } })
      yield* executor.startApp({ jobId: "job-1", args: { workspace }, allocatedResource: { gpus: { "1": 8, "3": 8 } }, token: "t", resourceManager: manager })
      expect(launcher.launches[0]!.gpus).toEqual(["1", "3"])
      yield* executor.awaitCompletion("job-1")
    }))
})

describe("engine: requests", () => {
  it.scoped("built-in queries, sendToJob, unknown topic, handler error, timeouts, unknown jobs", () =>
    Effect.gen(function* () {
      const { workspace, executor, events } = yield* setup(() => (c) =>
        c.worker({
          run: (ctx) => {
            ctx.reportError("disk full", { group: "io" })
            ctx.setStats("rounds", { done: 2 })
            return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(0)))
          },
          handlers: { test: { echo: (m) => m.payload, fail: () => { throw new Error("boom") }, hang: () => new Promise(() => undefined) } }
        })
      )
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* nextEvent(events, "Started", "job-1")
      // Started is reported just before run: wait until run has set its stats
      yield* waitFor(executor.getRunInfo("job-1"), (info) => "rounds" in info)
      expect(yield* executor.getRunInfo("job-1")).toEqual({ rounds: { done: 2 } })
      const errors = yield* executor.getErrors("job-1")
      expect(errors.io!.error).toMatch(/^\d{4}-\d\d-\d\dT.*: disk full$/)
      yield* executor.resetErrors("job-1")
      expect(yield* executor.getErrors("job-1")).toEqual({})
      yield* executor.configureJobLog("job-1", { level: "debug" })
      expect((yield* Effect.flip(executor.configureJobLog("job-1", { level: "loud" })))._tag).toBe("RemoteError")
      const bytes = new Uint8Array([0, 1, 2, 255])
      const reply = yield* executor.sendToJob({ jobId: "job-1", channel: "test", topic: "echo", message: Message.make(bytes) })
      expect(reply.payload).toEqual(bytes)
      const json = yield* executor.sendToJob({ jobId: "job-1", channel: "test", topic: "echo", message: Message.make({ a: [1, "x"] }) })
      expect(json.payload).toEqual({ a: [1, "x"] })
      expect((yield* Effect.flip(executor.sendToJob({ jobId: "job-1", channel: "test", topic: "nope", message: Message.make() })))._tag).toBe("InvalidRequest")
      const failed = yield* Effect.flip(executor.sendToJob({ jobId: "job-1", channel: "test", topic: "fail", message: Message.make() }))
      expect(failed).toMatchObject({ _tag: "RemoteError", returnCode: "process_exception" })
      expect(failed.message).toContain("boom")
      const slow = yield* Effect.fork(
        Effect.flip(executor.sendToJob({ jobId: "job-1", channel: "test", topic: "hang", message: Message.make(), timeout: "2 seconds" }))
      )
      expect(yield* adjustUntilDone(slow, "1 second")).toMatchObject({ _tag: "RequestTimeout", timeout: 2000 })
      expect((yield* Effect.flip(executor.sendToJob({ jobId: "ghost", channel: "test", topic: "echo", message: Message.make() })))._tag).toBe("TargetUnreachable")
      expect((yield* Effect.flip(executor.getRunInfo("ghost")))._tag).toBe("TargetUnreachable")
      yield* executor.abortApp("job-1")
      expect((yield* Effect.flip(executor.getRunInfo("job-1")))._tag).toBe("TargetUnreachable")
    }))

  it.scoped("a sendToJob to a job still starting waits for its connection within the request's timeout", () =>
    Effect.gen(function* () {
      let connect: (() => void) | undefined
      const { workspace, executor } = yield* setup(() => (c) => {
        connect = () =>
          c.worker({
            run: (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(0))),
            handlers: { test: { echo: (m) => m.payload } }
          })
      })
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      expect(yield* executor.getStatus("job-1")).toBe(ClientStatus.Starting)
      const send = yield* Effect.fork(
        executor.sendToJob({ jobId: "job-1", channel: "test", topic: "echo", message: Message.make({ n: 1 }), timeout: "10 seconds" })
      )
      // 9 s on the clock and still waiting: not TargetUnreachable at once
      yield* TestClock.adjust("9 seconds")
      for (let i = 0; i < 5; i++) yield* tick
      expect(Option.isNone(yield* Fiber.poll(send))).toBe(true)
      connect!()
      const reply = yield* waitFor(Fiber.poll(send), Option.isSome).pipe(Effect.flatMap(() => Fiber.join(send)))
      expect(reply.payload).toEqual({ n: 1 })
      yield* executor.abortApp("job-1")
    }))

  it.scoped("a starting job that does not connect within the request's timeout: RequestTimeout; one that ends meanwhile: TargetUnreachable", () =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup((req) => (req.jobId === "launching" ? "hang" : programs.neverConnects))
      for (const id of ["slow", "ends", "launching"]) deploy(workspace, id)
      yield* executor.startApp({ jobId: "slow", args: { workspace } })
      const slow = yield* Effect.fork(
        Effect.flip(executor.sendToJob({ jobId: "slow", channel: "test", topic: "echo", message: Message.make(), timeout: "3 seconds" }))
      )
      expect(yield* adjustUntilDone(slow, "1 second")).toMatchObject({ _tag: "RequestTimeout", jobId: "slow", topic: "echo", timeout: 3000 })
      // no timeout given: the executor's queryTimeoutMs (5 s)
      const fallback = yield* Effect.fork(
        Effect.flip(executor.sendToJob({ jobId: "slow", channel: "test", topic: "echo", message: Message.make() }))
      )
      expect(yield* adjustUntilDone(fallback, "1 second")).toMatchObject({ _tag: "RequestTimeout", timeout: 5000 })
      // the job ends while the request waits
      yield* executor.startApp({ jobId: "ends", args: { workspace } })
      const ends = yield* Effect.fork(
        Effect.flip(executor.sendToJob({ jobId: "ends", channel: "test", topic: "echo", message: Message.make(), timeout: "30 seconds" }))
      )
      yield* tick
      yield* executor.abortApp("ends")
      expect(yield* adjustUntilDone(ends, "1 second", 5)).toMatchObject({ _tag: "TargetUnreachable", jobId: "ends" })
      // a job still in its launch: waits the same way
      const launching = yield* Effect.fork(executor.startApp({ jobId: "launching", args: { workspace } }))
      yield* waitFor(executor.jobs, (jobs) => jobs.some((j) => j.jobId === "launching"))
      const early = yield* Effect.fork(
        Effect.flip(executor.sendToJob({ jobId: "launching", channel: "test", topic: "echo", message: Message.make(), timeout: "2 seconds" }))
      )
      expect(yield* adjustUntilDone(early, "1 second")).toMatchObject({ _tag: "RequestTimeout", jobId: "launching" })
      yield* executor.abortApp("launching")
      yield* Fiber.await(launching)
      yield* executor.abortApp("slow")
    }))

  it.scoped("abortTask while Starting is TargetUnreachable; after Started the task signal fires", () =>
    Effect.gen(function* () {
      let aborted = 0
      const { workspace, executor, events } = yield* setup((req) =>
        req.jobId === "slow"
          ? programs.neverConnects
          : (c) =>
              c.worker({
                run: (ctx) => {
                  ctx.taskSignal().addEventListener("abort", () => aborted++)
                  ctx.setStats("ready", true)
                  return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(0)))
                }
              })
      )
      deploy(workspace, "slow")
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "slow", args: { workspace } })
      expect((yield* Effect.flip(executor.abortTask("slow")))._tag).toBe("TargetUnreachable")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* nextEvent(events, "Started", "job-1")
      yield* waitFor(executor.getRunInfo("job-1"), (info) => "ready" in info)
      yield* executor.abortTask("job-1")
      expect(aborted).toBe(1)
    }))

  it.scoped("a job's ctx.request reaches the executor's handlers", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const { workspace, executor } = yield* setup(
        () => (c) =>
          c.worker({
            run: async (ctx) => {
              const reply = await ctx.request({ channel: "parent", topic: "hello", message: { payload: { n: 41 } } })
              return (reply.payload as { n: number }).n === 42 ? 0 : 3
            }
          }),
        {
          handlers: {
            parent: {
              hello: (jobId, message) =>
                Effect.sync(() => {
                  seen.push(jobId)
                  return { n: (message.payload as { n: number }).n + 1 }
                })
            }
          }
        }
      )
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      expect((yield* executor.awaitCompletion("job-1")).returnCode).toBe(0)
      expect(seen).toEqual(["job-1"])
    }))
})

describe("engine: supervision", () => {
  it.scoped("while the backend cannot be reached the job stays registered; then it completes", () =>
    Effect.gen(function* () {
      const { workspace, executor, launcher, events } = yield* setup(() => programs.cooperative)
      deploy(workspace, "job-1")
      launcher.failWaits = 3
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* nextEvent(events, "Started", "job-1")
      const waiter = yield* Effect.fork(executor.awaitCompletion("job-1"))
      yield* TestClock.adjust("100 millis")
      yield* tick
      expect((yield* executor.jobs).map((j) => j.jobId)).toEqual(["job-1"])
      const abort = yield* Effect.fork(executor.abortApp("job-1"))
      const outcome = yield* adjustUntilDone(waiter, "1 second")
      yield* Fiber.join(abort)
      expect(launcher.failWaits).toBe(0)
      expect(outcome.returnCode).toBe(9)
    }))

  it.scoped("history is bounded", () =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup(() => programs.exitWith(0), { historySize: 2 })
      for (const id of ["a", "b", "c"]) {
        deploy(workspace, id)
        yield* executor.startApp({ jobId: id, args: { workspace } })
        yield* executor.awaitCompletion(id)
      }
      expect(yield* executor.checkStatus("a")).toBe("not started")
      expect((yield* Effect.flip(executor.awaitCompletion("a")))._tag).toBe("JobNotFound")
      expect(yield* executor.checkStatus("c")).toBe("stopped")
      expect((yield* executor.awaitCompletion("b")).returnCode).toBe(0)
    }))

  it.scoped("status is Exception for a failed job", () =>
    Effect.gen(function* () {
      const { workspace, executor } = yield* setup(() => programs.exitWith(5))
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* executor.awaitCompletion("job-1")
      expect(yield* executor.getStatus("job-1")).toBe(ClientStatus.Exception)
    }))

  it.scoped("closing the executor aborts running jobs and waits for their completion", () =>
    Effect.gen(function* () {
      const workspace = yield* tempDir("flexec-ws-")
      const runtimeDir = yield* tempDir("flexec-rt-")
      const launcher = makeMemoryLauncher(() => programs.neverConnects)
      const outcome = yield* Effect.scoped(
        Effect.gen(function* () {
          const executor = yield* makeJobExecutor({ client: { clientName: "site-1" }, launcher, runtimeDir })
          deploy(workspace, "job-1")
          yield* executor.startApp({ jobId: "job-1", args: { workspace } })
          return yield* Effect.fork(executor.awaitCompletion("job-1"))
        })
      )
      expect(launcher.live()).toBe(0)
      expect((yield* Fiber.join(outcome)).returnCode).toBe(9)
      expect(fs.readdirSync(path.join(runtimeDir, "ch"))).toEqual([])
    }))
})

describe("engine: close", () => {
  it.scoped("close() terminates a Started job that ignores the abort message after the grace period", () =>
    Effect.gen(function* () {
      const workspace = yield* tempDir("flexec-ws-")
      const runtimeDir = yield* tempDir("flexec-rt-")
      const launcher = makeMemoryLauncher(() => programs.stubborn)
      const scope = yield* Scope.make()
      const executor = yield* makeJobExecutor({ client: { clientName: "site-1" }, launcher, runtimeDir, graceMs: 10_000 }).pipe(
        Scope.extend(scope)
      )
      const events = yield* executor.subscribe
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      yield* nextEvent(events, "Started", "job-1")
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* adjustUntilDone(closing, "1 second")
      expect(launcher.terminations).toEqual(["job-1"])
      expect(launcher.live()).toBe(0)
    }))
})

describe("engine: instance and recovery", () => {
  it.scoped("a second executor on a live instance fails InstanceInUse", () =>
    Effect.gen(function* () {
      const { runtimeDir } = yield* setup(() => programs.exitWith(0))
      const second = yield* Effect.flip(
        makeJobExecutor({ client: { clientName: "site-1" }, launcher: makeMemoryLauncher(() => programs.exitWith(0)), runtimeDir })
      )
      expect(second).toMatchObject({ _tag: "InstanceInUse", ownerPid: process.pid })
    }))

  it.scoped("a dead owner's lock is taken over", () =>
    Effect.gen(function* () {
      const runtimeDir = yield* tempDir("flexec-rt-")
      fs.writeFileSync(path.join(runtimeDir, "owner.json"), JSON.stringify({ pid: 999999, startTime: "1", bootId: "x" }))
      yield* makeJobExecutor({ client: { clientName: "site-1" }, launcher: makeMemoryLauncher(() => programs.exitWith(0)), runtimeDir })
      expect(JSON.parse(fs.readFileSync(path.join(runtimeDir, "owner.json"), "utf8")).pid).toBe(process.pid)
    }))

  it.scoped("recovery reaps what the backend reports and publishes Recovered", () =>
    Effect.gen(function* () {
      const runtimeDir = yield* tempDir("flexec-rt-")
      const terminated: Array<string> = []
      const launcher = makeMemoryLauncher(() => programs.exitWith(0))
      launcher.recovered = [
        {
          jobId: "orphan" as never,
          instanceId: "default",
          handle: {
            jobId: "orphan" as never,
            poll: Effect.succeed(Option.none()),
            wait: Effect.succeed({ code: null, signal: "SIGTERM", oomKilled: false, lost: false }),
            terminate: () => Effect.sync(() => void terminated.push("orphan"))
          }
        }
      ]
      const stale = path.join(runtimeDir, "ch", "stale")
      fs.mkdirSync(stale, { recursive: true })
      const executor = yield* makeJobExecutor({ client: { clientName: "site-1" }, launcher, runtimeDir })
      expect(terminated).toEqual(["orphan"])
      expect((yield* executor.recovered).map((r) => [r.jobId, r.action])).toEqual([["orphan", "reaped"]])
      expect(fs.existsSync(stale)).toBe(false)
    }))
})

describe("engine: the job's environment", () => {
  it.scoped("an allowlist plus the site's env and FLEXEC_*; credentials only in the environment", () =>
    Effect.gen(function* () {
      process.env.FLEXEC_TEST_SECRET_OF_PARENT = "nope"
      process.env.SITE_WANTS_THIS = "yes"
      yield* Effect.addFinalizer(() => Effect.sync(() => {
        delete process.env.FLEXEC_TEST_SECRET_OF_PARENT
        delete process.env.SITE_WANTS_THIS
      }))
      const { workspace, executor, launcher } = yield* setup(() => programs.exitWith(0), {
        env: { SITE_VAR: "1" },
        inheritEnv: ["SITE_WANTS_THIS", "CUDA_VISIBLE_DEVICES"],
        client: { clientName: "site-1", token: "secret-token", ssid: "ss" }
      })
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace, set: { lr: 0.1 } } })
      const req = launcher.launches[0]!
      expect(req.env.SITE_VAR).toBe("1")
      expect(req.env.SITE_WANTS_THIS).toBe("yes")
      expect(req.env.FLEXEC_TEST_SECRET_OF_PARENT).toBeUndefined()
      expect(req.env.NODE_EXTRA_CA_CERTS).toBeUndefined()
      expect(req.env.CUDA_VISIBLE_DEVICES).toBeUndefined()
      expect(req.env.FLEXEC_JOB_AUTH_TOKEN).toBe("secret-token")
      expect(req.env.FLEXEC_JOB_SSID).toBe("ss")
      expect(req.env.FLEXEC_JOB_ID).toBe("job-1")
      expect(JSON.parse(req.env.FLEXEC_SET!)).toEqual({ lr: 0.1 })
      expect(req.env.FLEXEC_PARENT_URL).toBe(`unix://${req.channel.socketPath}`)
      expect(req.command.join(" ")).not.toContain("secret-token")
      expect(fs.statSync(req.channel.dir).mode & 0o777).toBe(0o700)
      expect(Buffer.byteLength(req.channel.socketPath)).toBeLessThanOrEqual(107)
      yield* executor.awaitCompletion("job-1")
    }))
})
