/**
 * The groups of the conformance suite. Each registers its own vitest `describe`
 * and can run alone: `lifecycleTests(common)`, `messagingTests(common)`, ...
 *
 * @since 0.1.0
 */
import type { Capabilities, ExecutorEvent, JobExit, JobHandle, JobLauncher, RecoveredJob } from "@flexec/core"
import { ClientStatus, makeJobExecutor, Message } from "@flexec/core"
import { Deferred, Effect, Exit, Option, Scope, Stream } from "effect"
import * as path from "node:path"
import { describe, expect, it } from "../internal/vitest.js"
import { fixtureFacts } from "../fixtures.js"
import { MockResourceManager, mockClient } from "../mocks.js"
import type { ConformanceContext, ConformanceOptions, Harness, HarnessOptions } from "./harness.js"
import { buildLauncher, makeContext, pollUntil, processesOfRun, runTest, testRunLabel, vitestTimeout } from "./harness.js"
import { conformanceEchoFixture, conformanceTopics, deployConformanceJob } from "./program.js"

type Body = (h: Harness) => Effect.Effect<void, unknown, Scope.Scope>

/** The context of a group: an already resolved one, or options to resolve. */
export type GroupInput = ConformanceContext | ConformanceOptions

const contextOf = (input: GroupInput): ConformanceContext => ("runId" in input ? input : makeContext(input))

const test = (common: ConformanceContext, name: string, body: Body, options?: HarnessOptions) =>
  it(name, () => runTest(common, body, options), vitestTimeout(common))

/** Registers `name`, or `it.skip` naming the missing capability. */
const testWith = (
  common: ConformanceContext,
  caps: Capabilities,
  capability: keyof Capabilities,
  name: string,
  body: Body,
  options?: HarnessOptions
) =>
  caps[capability] === true
    ? test(common, name, body, options)
    : it.skip(`${name} [skipped: capabilities.${capability}=${String(caps[capability] ?? false)}]`, () => undefined)

const eventsOf = (h: Harness, jobId: string): ReadonlyArray<ExecutorEvent["_tag"]> =>
  h.seen.filter((e) => e.jobId === jobId).map((e) => e._tag)

const completedOf = (h: Harness, jobId: string) =>
  h.waitEvent("Completed", jobId).pipe(Effect.map((e) => (e as Extract<ExecutorEvent, { _tag: "Completed" }>).outcome))

const bytesOf = (n: number): Uint8Array => {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + 7) & 0xff
  return out
}

const sameBytes = (a: unknown, b: Uint8Array): boolean =>
  a instanceof Uint8Array && a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b)) === 0

const startedEcho = (h: Harness) =>
  Effect.gen(function* () {
    const jobId = yield* h.start(conformanceEchoFixture)
    yield* h.waitEvent("Started", jobId)
    return jobId
  })

const echo = (h: Harness, jobId: string, payload: Message.Payload, topic: string = conformanceTopics.echo, timeout?: number) =>
  h.executor.sendToJob({
    jobId,
    channel: fixtureFacts.channel,
    topic,
    message: Message.make(payload),
    ...(timeout === undefined ? {} : { timeout: `${timeout} millis` as const })
  })

const withCaps = (common: ConformanceContext, name: string, register: (caps: Capabilities) => void) =>
  describe(name, async () => {
    register(await common.capabilities())
  })

// ---------------------------------------------------------------------------------------------

/** Lifecycle: statuses, events, history, awaitCompletion, a refused second start. */
export const lifecycleTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("lifecycle", () => {
    test(common, "Starting → Started → Stopped → unregistered; the terminal status stays in the history", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("exit-on-abort")
        expect([ClientStatus.Starting, ClientStatus.Started]).toContain(yield* h.executor.getStatus(jobId))
        expect((yield* h.executor.jobs).map((j) => j.jobId)).toContain(jobId)
        yield* h.waitEvent("Started", jobId)
        expect(yield* h.executor.checkStatus(jobId)).toBe("started")
        yield* h.executor.abortApp(jobId)
        expect((yield* h.executor.jobs).map((j) => j.jobId)).not.toContain(jobId)
        expect(yield* h.executor.checkStatus(jobId)).toBe("stopped")
        expect(yield* h.executor.getStatus(jobId)).toBe(ClientStatus.Stopped)
        yield* h.waitEvent("Completed", jobId)
        expect(eventsOf(h, jobId)).toEqual(["Launched", "Started", "Stopped", "Completed"])
      }))

    test(common, "a job that exits 0: outcome 0, events Launched, Started, Stopped, Completed (one), history kept", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("exit-with", [0])
        const outcome = yield* h.executor.awaitCompletion(jobId)
        expect(outcome).toEqual({ jobId, returnCode: 0, reason: undefined, exit: { code: 0, signal: null, oomKilled: false, lost: false } })
        yield* completedOf(h, jobId)
        expect(eventsOf(h, jobId)).toEqual(["Launched", "Started", "Stopped", "Completed"])
        expect(yield* h.executor.checkStatus(jobId)).toBe("stopped")
        expect(yield* h.executor.awaitCompletion(jobId)).toEqual(outcome)
        expect(yield* h.executor.checkStatus(`${jobId}-unknown`)).toBe("not started")
        expect((yield* Effect.flip(h.executor.awaitCompletion(`${jobId}-unknown`)))._tag).toBe("JobNotFound")
      }))

    test(common, "a second startApp for a registered id is refused and launches nothing", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        const again = yield* Effect.flip(h.start(conformanceEchoFixture, [], { jobId }))
        expect((again as { _tag?: string })._tag).toBe("JobAlreadyRegistered")
        expect(h.requests.size).toBe(1)
        expect(yield* h.executor.checkStatus(jobId)).toBe("started")
        yield* h.executor.abortApp(jobId)
        expect(h.seen.filter((e) => e._tag === "Completed" && e.jobId === jobId)).toHaveLength(1)
      }))
  })
}

/** Messaging: echo of JSON and bytes, timeouts and the error replies. */
export const messagingTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("messaging", () => {
    test(common, "echo of JSON and of 1 B, 64 KiB and 16 MiB byte-exact", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        const json = { n: [1, 2, 3], s: "ü ✓", nested: { ok: true, nothing: null } }
        expect((yield* echo(h, jobId, json)).payload).toEqual(json)
        for (const size of [1, 64 * 1024, 16 * 1024 * 1024]) {
          const sent = bytesOf(size)
          const reply = yield* echo(h, jobId, sent, conformanceTopics.echo, 15_000)
          expect(sameBytes(reply.payload, sent), `${size} bytes echoed byte-exact`).toBe(true)
        }
      }))

    test(common, "a handler that never replies: RequestTimeout", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        const error = yield* Effect.flip(echo(h, jobId, { x: 1 }, conformanceTopics.stall, 200))
        expect(error._tag).toBe("RequestTimeout")
      }))

    test(common, "unknown topic: InvalidRequest; a handler that throws: RemoteError", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        expect((yield* Effect.flip(echo(h, jobId, {}, "no-such-topic")))._tag).toBe("InvalidRequest")
        expect((yield* Effect.flip(echo(h, jobId, {}, conformanceTopics.fail)))._tag).toBe("RemoteError")
        expect((yield* echo(h, jobId, "still alive")).payload).toBe("still alive")
      }))

    test(common, "a request to an unknown or a finished job: TargetUnreachable", (h) =>
      Effect.gen(function* () {
        expect((yield* Effect.flip(echo(h, h.newJobId("nobody"), {})))._tag).toBe("TargetUnreachable")
        const jobId = yield* h.start("exit-with", [0])
        yield* h.executor.awaitCompletion(jobId)
        expect((yield* Effect.flip(echo(h, jobId, {})))._tag).toBe("TargetUnreachable")
      }))
  })
}

/** Control: abort in every state, terminate after the grace period, abortTask and the built-in queries. */
export const controlTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "control", (caps) => {
    test(common, "abortApp while Starting: outcome 9, abortTask refused while Starting", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("slow-start", [60_000])
        expect(yield* h.executor.getStatus(jobId)).toBe(ClientStatus.Starting)
        expect((yield* Effect.flip(h.executor.abortTask(jobId)))._tag).toBe("TargetUnreachable")
        yield* h.executor.abortApp(jobId)
        expect((yield* h.executor.jobs).length).toBe(0)
        expect((yield* h.executor.awaitCompletion(jobId)).returnCode).toBe(9)
      }))

    test(common, "abortApp while Started returns after the job ended; again after the exit it is a no-op", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        yield* h.executor.abortApp(jobId)
        expect((yield* h.executor.jobs).length).toBe(0)
        const handle = h.handles.get(jobId)!
        expect(Option.isSome(yield* handle.poll), "the backend saw the exit when abortApp returned").toBe(true)
        expect((yield* h.executor.awaitCompletion(jobId)).returnCode).toBe(9)
        yield* h.executor.abortApp(jobId)
        const done = yield* h.start("exit-with", [0])
        yield* h.executor.awaitCompletion(done)
        yield* h.executor.abortApp(done)
        expect((yield* h.executor.awaitCompletion(done)).returnCode).toBe(0)
      }))

    test(common, "a worker that ignores abort is terminated after the grace period", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("ignore-abort")
        yield* h.waitEvent("Started", jobId)
        yield* h.executor.abortApp(jobId)
        const outcome = yield* h.executor.awaitCompletion(jobId)
        expect(outcome.returnCode).toBe(9)
        if (caps.signals) expect(outcome.exit, "killed by SIGKILL, code and signal apart").toMatchObject({ code: null, signal: "SIGKILL" })
      }))

    test(common, "abortTask aborts the current task", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("long-task")
        yield* h.waitEvent("Started", jobId)
        const aborted = h.executor.getRunInfo(jobId).pipe(Effect.map((info) => (info.tasks as { aborted?: number } | undefined)?.aborted))
        yield* h.until("long-task to report its stats", () => aborted.pipe(Effect.map((n) => n === 0)))
        yield* h.executor.abortTask(jobId)
        yield* h.until("the task to be aborted", () => aborted.pipe(Effect.map((n) => n === 1)))
      }))

    test(common, "getRunInfo, getErrors, resetErrors and configureJobLog do what they say", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("report-errors")
        yield* h.waitEvent("Started", jobId)
        yield* h.until("errors to be reported", () => h.executor.getErrors(jobId).pipe(Effect.map((e) => Object.keys(e).length >= 2)))
        const errors = yield* h.executor.getErrors(jobId)
        expect(errors.io?.warning).toMatch(/: disk almost full$/)
        expect(errors.general?.error).toMatch(/: second failure$/)
        expect(yield* h.executor.getRunInfo(jobId)).toMatchObject(fixtureFacts.reportErrors.stats)
        yield* h.executor.resetErrors(jobId)
        expect(yield* h.executor.getErrors(jobId)).toEqual({})
        yield* h.executor.configureJobLog(jobId, { level: "debug" })
        expect((yield* Effect.flip(h.executor.configureJobLog(jobId, { level: "no-such-level" })))._tag).toBe("RemoteError")
      }))
  })
}

/** Outcomes: the outcome table, row by row. */
export const outcomesTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "outcomes", (caps) => {
    const outcomeOf = (h: Harness, fixture: Parameters<Harness["start"]>[0], ...args: Array<string | number>) =>
      h.start(fixture, args).pipe(Effect.flatMap((jobId) => h.executor.awaitCompletion(jobId)))

    test(common, "abort while Starting and while Started: 9", (h) =>
      Effect.gen(function* () {
        const starting = yield* h.start("slow-start", [60_000])
        const started = yield* startedEcho(h)
        yield* Effect.all([h.executor.abortApp(starting), h.executor.abortApp(started)], { concurrency: 2 })
        expect((yield* h.executor.awaitCompletion(starting)).returnCode).toBe(9)
        expect((yield* h.executor.awaitCompletion(started)).returnCode).toBe(9)
      }))

    test(
      common,
      "no Started within the start timeout: killed, 104",
      (h) =>
        Effect.gen(function* () {
          const outcome = yield* outcomeOf(h, "never-connect")
          expect(outcome).toMatchObject({ returnCode: 104, reason: "infrastructure error" })
          expect(yield* h.executor.checkStatus(outcome.jobId)).toBe("exception")
          if (caps.signals) expect(["SIGTERM", "SIGKILL"]).toContain(outcome.exit.signal)
        }),
      { executorOptions: { startTimeoutMs: common.timeouts.shortStartTimeoutMs } }
    )

    test(common, "exit 0 → 0; exit 101–104 → that code; other codes → 1 with the raw code kept", (h) =>
      Effect.gen(function* () {
        const codes = [0, 101, 102, 103, 104, 7]
        const outcomes = yield* Effect.forEach(codes, (code) => outcomeOf(h, "exit-with", code), { concurrency: "unbounded" })
        expect(outcomes.map((o) => o.returnCode)).toEqual([0, 101, 102, 103, 104, 1])
        expect(outcomes.map((o) => o.exit.code)).toEqual(codes)
        expect(outcomes.every((o) => o.exit.signal === null && !o.exit.lost)).toBe(true)
        const statuses = yield* Effect.forEach(outcomes, (o) => h.executor.checkStatus(o.jobId))
        expect(statuses).toEqual(["stopped", "exception", "exception", "exception", "exception", "exception"])
      }))

    test(common, "a crash after Started → 1; a crash while Starting → 104", (h) =>
      Effect.gen(function* () {
        const later = yield* outcomeOf(h, "crash-later", 10)
        expect(later).toMatchObject({ returnCode: 1, exit: { code: 1 } })
        const early = yield* outcomeOf(h, "crash-at-start")
        expect(early).toMatchObject({ returnCode: 104, exit: { code: 1 } })
      }))

    test(common, "the rc file stands for the exit code", (h) =>
      Effect.gen(function* () {
        expect((yield* outcomeOf(h, "write-rc", 0)).returnCode).toBe(0)
        expect((yield* outcomeOf(h, "write-rc", 102)).returnCode).toBe(102)
      }))

    testWith(common, caps, "signals", "a job killed by a signal: the signal kept apart from the code", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("ignore-abort")
        yield* h.waitEvent("Started", jobId)
        yield* h.executor.abortApp(jobId)
        const outcome = yield* h.executor.awaitCompletion(jobId)
        expect(outcome.exit).toMatchObject({ code: null, signal: "SIGKILL" })
      }))

    testWith(common, caps, "oomDetection", "an OOM-killed job: exit.oomKilled, outcome 1", (h) =>
      Effect.gen(function* () {
        const outcome = yield* h
          .start("allocate-until-oom", [4096], { meta: { resource_spec: { [mockClient().clientName]: { memory: "256Mi" } } } })
          .pipe(Effect.flatMap((jobId) => h.executor.awaitCompletion(jobId)))
        expect(outcome.exit.oomKilled).toBe(true)
        expect(outcome.returnCode).toBe(1)
      }))
  })
}

/** Handlers: a job's `ctx.request` reaches the executor's handlers. */
export const handlersTests = (input: GroupInput): void => {
  const common = contextOf(input)
  const calls: Array<string> = []
  describe("handlers", () => {
    test(
      common,
      "a job's ctx.request reaches the executor's handler and gets its reply",
      (h) =>
        Effect.gen(function* () {
          const jobId = yield* h.start("call-parent")
          const outcome = yield* h.executor.awaitCompletion(jobId)
          expect(outcome.returnCode).toBe(0)
          expect(calls).toContain(jobId)
        }),
      {
        executorOptions: {
          handlers: {
            [fixtureFacts.parentChannel]: {
              [fixtureFacts.parentTopic]: (jobId: string) => Effect.sync(() => (calls.push(jobId), { hi: jobId }))
            }
          }
        }
      }
    )
  })
}

/** Resources: the allocation is freed exactly once per job, whatever happens. */
export const resourcesTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("resources", () => {
    const allocate = (rm: MockResourceManager) =>
      Effect.gen(function* () {
        const { token } = yield* rm.checkResources({})
        const allocation = yield* rm.allocateResources({}, token)
        return { token, allocatedResource: allocation, resourceManager: rm }
      })

    test(common, "freed exactly once after a normal exit and after a crash", (h) =>
      Effect.gen(function* () {
        const rm = new MockResourceManager()
        const a = yield* allocate(rm)
        const b = yield* allocate(rm)
        const ok = yield* h.start("exit-with", [0], a)
        const crash = yield* h.start("crash-later", [10], b)
        yield* h.executor.awaitCompletion(ok)
        yield* h.executor.awaitCompletion(crash)
        expect(rm.freedTokens()).toEqual(new Map([[a.token, 1], [b.token, 1]]))
      }))

    test(
      common,
      "freed exactly once when the launch fails",
      (h) =>
        Effect.gen(function* () {
          const rm = new MockResourceManager()
          const a = yield* allocate(rm)
          const jobId = h.newJobId("nolaunch")
          yield* deployConformanceJob({ workspace: h.workspace, jobId, clientName: mockClient().clientName, fixture: "no-such-fixture" as never })
          const started = yield* h.executor
            .startApp({ jobId, args: { workspace: h.workspace, set: { fixture: "no-such-fixture", args: [] } }, ...a })
            .pipe(Effect.exit)
          if (Exit.isFailure(started)) {
            const outcome = yield* h.executor.awaitCompletion(jobId)
            expect(outcome.returnCode).not.toBe(0)
          } else {
            // the backend reports a command that cannot run as an exit: a crash while Starting
            expect((yield* h.executor.awaitCompletion(jobId)).returnCode).toBe(104)
          }
          yield* h.until("the allocation to be freed", () => rm.freedTokens().get(a.token) === 1)
          expect(rm.freedTokens()).toEqual(new Map([[a.token, 1]]))
        }),
      { executorOptions: { command: ["/nonexistent/flexec-conformance-no-such-command", "{appDir}/main.js"] } }
    )

    test(common, "freed exactly once when abort races completion; nothing freed for an empty allocation", (h) =>
      Effect.gen(function* () {
        const rm = new MockResourceManager()
        const a = yield* allocate(rm)
        const jobId = yield* h.start("exit-with", [0], a)
        yield* Effect.all([h.executor.abortApp(jobId), h.executor.abortApp(jobId), h.executor.awaitCompletion(jobId)], {
          concurrency: "unbounded"
        })
        expect([0, 9]).toContain((yield* h.executor.awaitCompletion(jobId)).returnCode)
        expect(rm.freedTokens()).toEqual(new Map([[a.token, 1]]))
        const empty = new MockResourceManager()
        const e = yield* h.start("exit-with", [0], { allocatedResource: {}, token: "empty", resourceManager: empty })
        yield* h.executor.awaitCompletion(e)
        expect(empty.callsTo("freeResources")).toHaveLength(0)
      }))
  })
}

/** Isolation and cleanup: concurrent jobs do not mix, and nothing is left behind. */
export const isolationTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("isolation", () => {
    test(common, "5 concurrent echo jobs each get only their own replies", (h) =>
      Effect.gen(function* () {
        const jobIds = yield* Effect.forEach([1, 2, 3, 4, 5], () => startedEcho(h), { concurrency: "unbounded" })
        const replies = yield* Effect.forEach(
          jobIds.flatMap((jobId) => [0, 1, 2, 3].map((n) => ({ jobId, n }))),
          ({ jobId, n }) => echo(h, jobId, { jobId, n }).pipe(Effect.map((m) => ({ jobId, n, payload: m.payload }))),
          { concurrency: "unbounded" }
        )
        for (const r of replies) expect(r.payload).toEqual({ jobId: r.jobId, n: r.n })
        const requests = [...h.requests.values()]
        expect(new Set(requests.map((r) => r.env.FLEXEC_JOB_ID)).size).toBe(5)
        expect(new Set(requests.map((r) => r.channel.socketPath)).size).toBe(5)
        expect(requests.every((r) => r.labels[testRunLabel] === common.runId)).toBe(true)
      }))

    test(common, "jobs left running when the test ends are aborted and leave nothing behind", (h) =>
      Effect.gen(function* () {
        yield* Effect.forEach([1, 2], () => startedEcho(h), { concurrency: "unbounded" })
        yield* h.start("ignore-abort")
      }))
  })
}

/** Logs (capability logs): a job's output reaches `handle.logs`. */
export const logsTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "logs", (caps) => {
    testWith(common, caps, "logs", "a job's output reaches handle.logs", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("long-task")
        yield* h.waitEvent("Started", jobId)
        const handle = h.handles.get(jobId)!
        expect(handle.logs, "capabilities.logs is true but the handle has no logs").toBeDefined()
        const lines: Array<string> = []
        yield* Stream.runForEach(handle.logs!, (l) => Effect.sync(() => void lines.push(l.line))).pipe(Effect.forkScoped)
        yield* h.until(
          "a line of the job on handle.logs",
          () =>
            h.executor.abortTask(jobId).pipe(
              Effect.ignore,
              Effect.map(() => lines.some((l) => l.includes("long-task: task aborted")))
            ),
          common.timeouts.eventMs
        )
      }))
  })
}

/** Recovery (capability recover): a job a dropped executor left is found and reaped by the next one. */
export const recoveryTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "recovery", (caps) => {
    testWith(common, caps, "recover", "a job left by a dropped executor is reaped by the next executor of the instance", (h) =>
      Effect.gen(function* () {
        const runtimeDir = path.join(h.runtimeDir, "..", "rt-rec")
        const instanceId = `${h.instanceId}-rec`
        const context = { runId: common.runId, instanceId, runtimeDir }
        const jobId = h.newJobId("orphan")
        const base = {
          client: mockClient(),
          runtimeDir,
          instanceId,
          graceMs: common.timeouts.graceMs,
          killTimeoutMs: common.timeouts.killTimeoutMs,
          startTimeoutMs: common.timeouts.startTimeoutMs,
          ...(common.workerCommand ? { command: common.workerCommand } : {}),
          labels: { [testRunLabel]: common.runId }
        }
        // The first parent: its jobs live in a scope it does not own (as a process outlives its parent),
        // and it stops watching when told to (the parent died).
        const detached = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(detached, Exit.void))
        const drop = yield* Deferred.make<JobExit>()
        let real: JobHandle | undefined
        const first = yield* buildLauncher(common.makeLauncher, context)
        const dropping: JobLauncher = Object.assign(Object.create(first) as JobLauncher, {
          launch: (request: Parameters<JobLauncher["launch"]>[0]) =>
            first.launch(request).pipe(
              Scope.extend(detached),
              Effect.map((handle): JobHandle => {
                real = handle
                return { jobId: handle.jobId, poll: Effect.succeedNone, wait: Deferred.await(drop), terminate: () => Effect.void }
              })
            )
        })
        const scope1 = yield* Scope.make()
        const e1 = yield* makeJobExecutor({ ...base, launcher: dropping }).pipe(Scope.extend(scope1))
        const job = yield* deployConformanceJob({ workspace: h.workspace, jobId, clientName: mockClient().clientName, fixture: conformanceEchoFixture })
        yield* e1.startApp({ jobId, jobMeta: job.meta, args: { workspace: h.workspace, set: job.set } })
        yield* pollUntil("the orphan to start", () => e1.getStatus(jobId).pipe(Effect.map((s) => s === ClientStatus.Started)), common.timeouts.eventMs)
        yield* Deferred.succeed(drop, { code: null, signal: null, oomKilled: false, lost: true })
        yield* e1.awaitCompletion(jobId)
        yield* Scope.close(scope1, Exit.void)
        expect(Option.isNone(yield* real!.poll), "the orphan still runs after its parent dropped it").toBe(true)
        // The next parent of the instance.
        const second = yield* buildLauncher(common.makeLauncher, context)
        const found: Array<RecoveredJob> = []
        const recording: JobLauncher = Object.assign(Object.create(second) as JobLauncher, {
          recover: (id: string) =>
            second.recover ? second.recover(id).pipe(Effect.tap((jobs) => Effect.sync(() => void found.push(...jobs)))) : Effect.succeed([])
        })
        const scope2 = yield* Scope.make()
        yield* makeJobExecutor({ ...base, launcher: recording, recover: "reap" }).pipe(Scope.extend(scope2))
        expect(found.map((j) => j.jobId), "recover() reports the orphan").toContain(jobId)
        yield* pollUntil("the orphan to be gone", () => real!.poll.pipe(Effect.map(Option.isSome)), common.timeouts.eventMs)
        if (caps.processes === true) {
          yield* pollUntil("the orphan's process to be gone", () => !processesOfRun(jobId).length, common.timeouts.processGoneMs)
        }
        yield* Scope.close(scope2, Exit.void)
      }))
  })
}

/** Every group, in order. */
export const allGroups = [
  lifecycleTests,
  messagingTests,
  controlTests,
  outcomesTests,
  handlersTests,
  resourcesTests,
  isolationTests,
  logsTests,
  recoveryTests
] as const
