/**
 * The groups of the conformance suite. Each registers its own vitest `describe`
 * and can run alone: `lifecycleTests(common)`, `messagingTests(common)`, ...
 *
 * @since 0.1.0
 */
import type { Capabilities, ExecutorEvent, JobExit, JobHandle, JobLauncher, LaunchRequest, RecoveredJob } from "@flexec/core"
import { ClientStatus, makeJobExecutor, Message } from "@flexec/core"
import { Deferred, Duration, Effect, Either, Exit, Fiber, Option, Scope, Stream } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "../internal/vitest.js"
import { fixtureFacts } from "../fixtures.js"
import { MockResourceManager, mockClient } from "../mocks.js"
import type { ConformanceContext, ConformanceOptions, Harness, HarnessOptions, LauncherContext } from "./harness.js"
import { buildLauncher, makeContext, pollUntil, processesOfJob, runTest, SUITE_BACKEND_SLACK_MS, testRunLabel, vitestTimeout } from "./harness.js"
import type { ConformanceFixture } from "./program.js"
import {
  conformanceEchoFixture,
  conformanceFloodFixture,
  conformanceJobFacts,
  conformanceJobFixture,
  conformanceTopics,
  deployConformanceJob
} from "./program.js"

type Body = (h: Harness) => Effect.Effect<void, unknown, Scope.Scope>

/** The context of a group: an already resolved one, or options to resolve. */
export type GroupInput = ConformanceContext | ConformanceOptions

const contextOf = (input: GroupInput): ConformanceContext => ("runId" in input ? input : makeContext(input))

/** A test's failure names the promise it checks (its title) before the detail. */
const namingPromise = (name: string) => (error: unknown): never => {
  const e = error instanceof Error ? error : new Error(String(error))
  const [first = "", ...rest] = String(e.message).split("\n")
  const named = new Error([`broken promise "${name}": ${first}`, ...rest].join("\n"), { cause: error })
  named.stack = `${named.message}\n${(e.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l)).join("\n")}`
  throw named
}

const test = (common: ConformanceContext, name: string, body: Body, options?: HarnessOptions) =>
  it(name, () => runTest(common, (h) => Effect.scoped(body(h)), options).catch(namingPromise(name)), vitestTimeout(common))

/** Registers `name`, or `it.skip` naming the missing (or, on this host, unavailable) capability. */
const testWith = (
  common: ConformanceContext,
  caps: Capabilities,
  capability: keyof Capabilities | ReadonlyArray<keyof Capabilities>,
  name: string,
  body: Body,
  options?: HarnessOptions
) => {
  const needed = typeof capability === "string" ? [capability] : capability
  const missing = needed.find((c) => caps[c] !== true)
  if (missing !== undefined) return it.skip(`${name} [skipped: capabilities.${missing}=${String(caps[missing] ?? false)}]`, () => undefined)
  const unavailable = needed.find((c) => common.unavailable[c] !== undefined)
  if (unavailable !== undefined) {
    return it.skip(`${name} [skipped: capabilities.${unavailable} unavailable on this host: ${common.unavailable[unavailable]}]`, () => undefined)
  }
  return test(common, name, body, options)
}

/** Fails with `message` (naming what broke) unless `effect` succeeds within `ms`. */
const within = <A, E, R>(ms: number, message: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Error, R> =>
  Effect.timeoutFail(effect, { duration: Duration.millis(ms), onTimeout: () => new Error(`${message} (waited ${ms} ms)`) })

/** `awaitCompletion`, bounded: a backend whose wait never resolves fails here, naming it. */
const completion = (h: Harness, jobId: string, ms = h.common.timeouts.eventMs) =>
  within(ms, `the completion of ${jobId} was not reported: the handle's wait did not resolve after the job ended`, h.executor.awaitCompletion(jobId))

/** Fails with `message` when `ok` is false (a plain assertion whose message names the promise's detail). */
const check = (ok: boolean, message: string): Effect.Effect<void, Error> => (ok ? Effect.void : Effect.fail(new Error(message)))

const exitOf = (code: number | null, signal: string | null, lost = false): JobExit => ({ code, signal, oomKilled: false, lost })

/**
 * The truthful outcomes of a job killed behind the backend's back: lost (no
 * record of its end), or the death a scheduler really recorded (a signal, or a
 * non-zero code). Never a clean exit: code 0 without a signal is fabricated.
 */
const isTruthfulDeath = (exit: JobExit): boolean =>
  exit.lost
    ? exit.code === null && exit.signal === null
    : exit.signal !== null ? exit.code === null : exit.code !== null && exit.code !== 0
const show = (value: unknown) => JSON.stringify(value)

/** The request the launcher got for `jobId` (the suite records it). */
const requestOf = (h: Harness, jobId: string): LaunchRequest => {
  const request = h.requests.get(jobId)
  if (request === undefined) throw new Error(`suite: no launch request recorded for ${jobId}`)
  return request
}

/** The handle the launcher returned for `jobId`. */
const handleOf = (h: Harness, jobId: string): JobHandle => {
  const handle = h.handles.get(jobId)
  if (handle === undefined) throw new Error(`suite: no handle recorded for ${jobId}`)
  return handle
}

/** Polls until no OS process of `jobId` is left, failing with `what` and the pids. */
const treeGone = (h: Harness, jobId: string, what: string) =>
  pollUntil(what, () => processesOfJob(jobId).length === 0, h.common.timeouts.processGoneMs).pipe(
    Effect.mapError(() => new Error(`${what}: process(es) ${processesOfJob(jobId).join(", ")} of the job still run ${h.common.timeouts.processGoneMs} ms after its completion`))
  )

/** Sends a `conformance-job` topic and returns the reply's payload. */
const ask = (h: Harness, jobId: string, topic: string, timeout?: number) =>
  echo(h, jobId, {}, topic, timeout).pipe(Effect.map((m) => m.payload))

const jobFile = (h: Harness, jobId: string, name: string) => path.join(h.workspace, jobId, name)

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
        const outcome = yield* completion(h, jobId)
        expect(outcome).toEqual({ jobId, returnCode: 0, reason: undefined, exit: { code: 0, signal: null, oomKilled: false, lost: false } })
        yield* completedOf(h, jobId)
        expect(eventsOf(h, jobId)).toEqual(["Launched", "Started", "Stopped", "Completed"])
        expect(yield* h.executor.checkStatus(jobId)).toBe("stopped")
        expect(yield* completion(h, jobId)).toEqual(outcome)
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
        yield* completion(h, jobId)
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
        // a scheduler's job may still be queued (it never ran): only a job that ran can die of a signal
        const ran = caps.processes !== true || processesOfJob(jobId).length > 0
        yield* h.executor.abortApp(jobId)
        expect((yield* h.executor.jobs).length).toBe(0)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        // slow-start has no SIGTERM handler: terminate while Starting ends it with SIGTERM (SIGKILL if its
        // backend's kill came first); a job cancelled before it ran has no signal, and no clean exit either
        if (caps.signals) {
          const truthful = ran ? [exitOf(null, "SIGTERM"), exitOf(null, "SIGKILL")] : [exitOf(null, "SIGTERM"), exitOf(null, "SIGKILL"), exitOf(null, null)]
          expect(truthful, `the exit record of a job terminated while Starting (${ran ? "its process ran" : "no process of it ran yet"})`).toContainEqual(outcome.exit)
        }
      }))

    test(common, "abortApp while Started returns after the job ended; again after the exit it is a no-op", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        yield* h.executor.abortApp(jobId)
        expect((yield* h.executor.jobs).length).toBe(0)
        const handle = h.handles.get(jobId)!
        expect(Option.isSome(yield* handle.poll), "the backend saw the exit when abortApp returned").toBe(true)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        // the echo job exits 0 on the abort message (or dies of the SIGTERM if the grace period ran out first)
        expect([exitOf(0, null), exitOf(null, "SIGTERM")], "the exit record of a job aborted while Started").toContainEqual(outcome.exit)
        yield* h.executor.abortApp(jobId)
        const done = yield* h.start("exit-with", [0])
        yield* completion(h, done)
        yield* h.executor.abortApp(done)
        expect((yield* completion(h, done)).exit, "the exit record of a job that exited 0").toEqual(exitOf(0, null))
      }))

    test(common, "a worker that ignores abort is terminated after the grace period", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("ignore-abort")
        yield* h.waitEvent("Started", jobId)
        yield* h.executor.abortApp(jobId)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        if (caps.signals) expect(outcome.exit, "killed by SIGKILL, code and signal apart").toEqual(exitOf(null, "SIGKILL"))
      }))

    test(common, "terminate({ killAfter }) escalates on time: SIGTERM first, alive until just before killAfter, dead by killAfter + slack", (h) =>
      Effect.gen(function* () {
        const t = common.timeouts
        const jobId = yield* h.start(conformanceJobFixture, ["stubborn"])
        yield* h.waitEvent("Started", jobId)
        const handle = handleOf(h, jobId)
        const marker = jobFile(h, jobId, conformanceJobFacts.sigtermMarker)
        // alive until (killAfter - guard) is required; dead by (killAfter + slack)
        const guard = Math.min(500, Math.floor(t.killAfterMs / 4))
        const t0 = Date.now()
        yield* within(t.eventMs, "terminate() did not return (it must return once the kill is sent)", handle.terminate({ killAfter: Duration.millis(t.killAfterMs) }))
        let deadAt: number | undefined
        while (deadAt === undefined && Date.now() - t0 < t.killAfterMs - guard) {
          if (Option.isSome(yield* handle.poll)) deadAt = Date.now() - t0
          else yield* Effect.sleep(Duration.millis(20))
        }
        yield* check(
          deadAt === undefined,
          `the job, which ignores SIGTERM, was dead ${deadAt} ms after terminate({ killAfter: ${t.killAfterMs} ms }): killed before killAfter`
        )
        if (caps.signals) {
          yield* check(fs.existsSync(marker), `the job saw no SIGTERM within ${t.killAfterMs - guard} ms of terminate (no ${conformanceJobFacts.sigtermMarker}): SIGTERM must come first`)
        }
        const exit = yield* within(
          Math.max(1, t.killAfterMs + t.killSlackMs - (Date.now() - t0)),
          `the job that ignores SIGTERM was still alive ${t.killAfterMs + t.killSlackMs} ms after terminate({ killAfter: ${t.killAfterMs} ms }): no escalation to SIGKILL by killAfter`,
          handle.wait
        )
        if (caps.signals) expect(exit, "the escalated job's exit record").toEqual(exitOf(null, "SIGKILL"))
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
      h.start(fixture, args).pipe(Effect.flatMap((jobId) => completion(h, jobId)))

    test(common, "abort while Starting and while Started: 9", (h) =>
      Effect.gen(function* () {
        const starting = yield* h.start("slow-start", [60_000])
        const started = yield* startedEcho(h)
        yield* Effect.all([h.executor.abortApp(starting), h.executor.abortApp(started)], { concurrency: 2 })
        expect((yield* completion(h, starting)).returnCode).toBe(9)
        expect((yield* completion(h, started)).returnCode).toBe(9)
      }))

    test(
      common,
      "no Started within the start timeout: killed, 104",
      (h) =>
        Effect.gen(function* () {
          const outcome = yield* outcomeOf(h, "never-connect")
          expect(outcome).toMatchObject({ returnCode: 104, reason: "infrastructure error" })
          expect(yield* h.executor.checkStatus(outcome.jobId)).toBe("exception")
          // never-connect does not handle SIGTERM: the start timeout's terminate kills it with it
          if (caps.signals) expect(outcome.exit, "the start timeout's exit record").toEqual(exitOf(null, "SIGTERM"))
        }),
      { executorOptions: { startTimeoutMs: common.timeouts.shortStartTimeoutMs } }
    )

    test(common, "exit 0 → 0; exit 101–104 → that code; other codes → 1 with the raw code kept", (h) =>
      Effect.gen(function* () {
        const codes = [0, 101, 102, 103, 104, 7]
        const outcomes = yield* Effect.forEach(codes, (code) => outcomeOf(h, "exit-with", code), { concurrency: "unbounded" })
        expect(outcomes.map((o) => o.returnCode)).toEqual([0, 101, 102, 103, 104, 1])
        expect(outcomes.map((o) => o.exit), "the exit records, exactly").toEqual(codes.map((code) => exitOf(code, null)))
        const statuses = yield* Effect.forEach(outcomes, (o) => h.executor.checkStatus(o.jobId))
        expect(statuses).toEqual(["stopped", "exception", "exception", "exception", "exception", "exception"])
      }))

    test(common, "a crash after Started → 1; a crash while Starting → 104", (h) =>
      Effect.gen(function* () {
        const later = yield* outcomeOf(h, "crash-later", 10)
        expect(later, "a crash after Started").toEqual({ jobId: later.jobId, returnCode: 1, reason: later.reason, exit: exitOf(1, null) })
        const early = yield* outcomeOf(h, "crash-at-start")
        expect(early, "a crash while Starting").toEqual({ jobId: early.jobId, returnCode: 104, reason: early.reason, exit: exitOf(1, null) })
      }))

    test(common, "the rc file stands for the exit code", (h) =>
      Effect.gen(function* () {
        const rc0 = yield* outcomeOf(h, "write-rc", 0)
        expect(rc0.returnCode).toBe(0)
        // the rc file stands for the code in the outcome; the exit record keeps what happened
        expect(rc0.exit, "the exit record of write-rc (it exits 1)").toEqual(exitOf(1, null))
        expect((yield* outcomeOf(h, "write-rc", 102)).returnCode).toBe(102)
      }))

    testWith(common, caps, "signals", "a job killed by SIGKILL: exactly { code: null, signal: SIGKILL, oomKilled: false, lost: false }", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("ignore-abort")
        yield* h.waitEvent("Started", jobId)
        yield* h.executor.abortApp(jobId)
        const outcome = yield* completion(h, jobId)
        expect(outcome.exit, "the exit record of a SIGKILL death").toEqual(exitOf(null, "SIGKILL"))
      }))

    testWith(common, caps, "signals", "a job dead of SIGTERM: exactly { code: null, signal: SIGTERM, oomKilled: false, lost: false }", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        // conformance-echo has no SIGTERM handler: SIGTERM's default action ends it, long before the kill
        yield* handleOf(h, jobId).terminate({ killAfter: Duration.millis(common.timeouts.eventMs * 3) })
        const outcome = yield* completion(h, jobId)
        expect(outcome.exit, "the exit record of a SIGTERM death").toEqual(exitOf(null, "SIGTERM"))
      }))

    testWith(common, caps, "memoryLimit", "a job over its memory limit is killed or cannot allocate", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("allocate-until-oom", [1024], { meta: { resource_spec: { [mockClient().clientName]: { memory: "256Mi" } } } })
        const outcome = yield* completion(h, jobId, common.timeouts.testMs)
        yield* check(eventsOf(h, jobId).includes("Started"), `the job limited to 256Mi never started (${show(outcome)}): a claimed memoryLimit must run it`)
        yield* check(
          outcome.exit.code !== fixtureFacts.exitCodes.oomCap && outcome.returnCode !== 0,
          `a job limited to 256Mi allocated 1 GiB and ended ${show(outcome.exit)}: capabilities.memoryLimit is claimed, no limit holds`
        )
      }))

    testWith(common, caps, "oomDetection", "an OOM-killed job: exit.oomKilled, outcome 1", (h) =>
      Effect.gen(function* () {
        const outcome = yield* h
          .start("allocate-until-oom", [4096], { meta: { resource_spec: { [mockClient().clientName]: { memory: "256Mi" } } } })
          .pipe(Effect.flatMap((jobId) => completion(h, jobId)))
        expect(outcome.exit.oomKilled, `exit ${show(outcome.exit)}`).toBe(true)
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
          const outcome = yield* completion(h, jobId)
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
        yield* completion(h, ok)
        yield* completion(h, crash)
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
            const outcome = yield* completion(h, jobId)
            expect(outcome.returnCode).not.toBe(0)
          } else {
            // the backend reports a command that cannot run as an exit: a crash while Starting
            expect((yield* completion(h, jobId)).returnCode).toBe(104)
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
        yield* Effect.all([h.executor.abortApp(jobId), h.executor.abortApp(jobId), completion(h, jobId)], {
          concurrency: "unbounded"
        })
        expect([0, 9]).toContain((yield* completion(h, jobId)).returnCode)
        expect(rm.freedTokens()).toEqual(new Map([[a.token, 1]]))
        const empty = new MockResourceManager()
        const e = yield* h.start("exit-with", [0], { allocatedResource: {}, token: "empty", resourceManager: empty })
        yield* completion(h, e)
        expect(empty.callsTo("freeResources")).toHaveLength(0)
      }))
  })
}

/** Isolation and cleanup: concurrent jobs do not mix, and nothing is left behind. */
export const isolationTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("isolation", () => {
    test(common, "5 concurrent jobs each get only their own replies and their own job id", (h) =>
      Effect.gen(function* () {
        const jobIds = yield* Effect.forEach(
          [1, 2, 3, 4, 5],
          () => h.start(conformanceJobFixture).pipe(Effect.tap((jobId) => h.waitEvent("Started", jobId))),
          { concurrency: "unbounded" }
        )
        const replies = yield* Effect.forEach(
          jobIds.flatMap((jobId) => [0, 1, 2, 3].map((n) => ({ jobId, n }))),
          ({ jobId, n }) => echo(h, jobId, { jobId, n }).pipe(Effect.map((m) => ({ jobId, n, payload: m.payload }))),
          { concurrency: "unbounded" }
        )
        for (const r of replies) expect(r.payload).toEqual({ jobId: r.jobId, n: r.n })
        // what each job got: its own id (its channel's URL may be the same path in each container)
        const envs = yield* Effect.forEach(jobIds, (jobId) => ask(h, jobId, conformanceJobFacts.topics.env).pipe(Effect.map((p) => (p as { env: Record<string, string> }).env)))
        expect(envs.map((e) => e.FLEXEC_JOB_ID), "each job's own FLEXEC_JOB_ID").toEqual(jobIds)
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

/** Logs: every line reaches `handle.logs` (capability logs) and the job log file; output never blocks a job. */
export const logsTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "logs", (caps) => {
    /** Starts conformance-job, subscribes to its logs, makes it print its lines and exit; returns what was seen. */
    const printed = (h: Harness) =>
      Effect.gen(function* () {
        const jobId = yield* h.start(conformanceJobFixture)
        yield* h.waitEvent("Started", jobId)
        const handle = handleOf(h, jobId)
        yield* check(handle.logs !== undefined, "capabilities.logs is true but the handle has no logs")
        const lines: Array<{ readonly stream: string; readonly line: string }> = []
        let ended = false
        yield* Stream.runForEach(handle.logs!, (l) => Effect.sync(() => void lines.push({ stream: l.stream, line: l.line }))).pipe(
          Effect.ensuring(Effect.sync(() => void (ended = true))),
          Effect.forkScoped
        )
        // the subscription is live once a line the job logs after it shows up
        yield* pollUntil(
          "a line of the job on handle.logs",
          () => ask(h, jobId, conformanceJobFacts.topics.hello).pipe(Effect.map(() => lines.some((l) => l.line.startsWith("conformance-job: hello")))),
          common.timeouts.eventMs
        ).pipe(Effect.mapError(() => new Error(`no line the job logged reached handle.logs within ${common.timeouts.eventMs} ms`)))
        yield* ask(h, jobId, conformanceJobFacts.topics.print)
        const exit = yield* within(common.timeouts.eventMs, "the job did not exit after printing", handleOf(h, jobId).wait)
        expect(exit, "the printing job's exit").toEqual(exitOf(0, null))
        return { jobId, lines, ended: () => ended }
      })

    testWith(common, caps, "logs", "handle.logs holds every line with its stream label, the last one without a newline too, and ends after the exit", (h) =>
      Effect.gen(function* () {
        const { ended, lines } = yield* printed(h)
        yield* pollUntil("the logs stream to end", ended, common.timeouts.logsEndMs).pipe(
          Effect.mapError(() => new Error(`the logs stream did not end within ${common.timeouts.logsEndMs} ms after the job exited`))
        )
        for (const want of conformanceJobFacts.printed) {
          const got = lines.find((l) => l.line === want.line)
          yield* check(got !== undefined, `the line ${show(want.line)} (${want.stream}) is missing from handle.logs (got ${show(lines.slice(-6))})`)
          yield* check(got!.stream === want.stream, `the line ${show(want.line)} is labelled ${got!.stream}, not ${want.stream}`)
        }
      }))

    testWith(common, caps, "logs", "paths.logFile holds the job's output, the last line too", (h) =>
      Effect.gen(function* () {
        const { jobId } = yield* printed(h)
        yield* completion(h, jobId)
        const file = requestOf(h, jobId).paths.logFile
        const want = conformanceJobFacts.printed.map((p) => p.line)
        const read = () => [file, `${file}.1`, `${file}.2`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, "utf8")).join("\n")
        yield* pollUntil("the job log to hold the output", () => want.every((l) => read().includes(l)), common.timeouts.logsEndMs).pipe(
          Effect.mapError(() => new Error(`${file} lacks ${show(want.filter((l) => !read().includes(l)))}: the job's output must go to paths.logFile`))
        )
      }))

    test(common, "a job that writes more than 1 MiB of output and ends normally exits (its output is drained)", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start(conformanceFloodFixture)
        const outcome = yield* within(
          common.timeouts.eventMs,
          "a job that wrote 1.5 MiB did not end: its output is not drained (a full pipe blocks it)",
          h.executor.awaitCompletion(jobId)
        )
        expect(outcome.exit, "the writing job's exit").toEqual(exitOf(0, null))
      }))
  })
}

/** The whole tree (capability processes): no process of a job outlives it, however its leader ended. */
export const treeTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "tree", (caps) => {
    /** Starts conformance-job with a SIGTERM-ignoring child; checks the suite sees both processes. */
    const withChild = (h: Harness, flags: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const jobId = yield* h.start(conformanceJobFixture, ["child", ...flags])
        yield* h.waitEvent("Started", jobId)
        yield* h.until("the job's child to write its pid", () => fs.existsSync(jobFile(h, jobId, conformanceJobFacts.childPidFile)))
        // the leak check has something to find: the leader and its child
        yield* pollUntil("the job's leader and child as OS processes", () => processesOfJob(jobId).length >= 2, common.timeouts.eventMs).pipe(
          Effect.mapError(() => new Error(`suite: expected the job's leader and its child among /proc, found ${show(processesOfJob(jobId))}`))
        )
        return jobId
      })

    testWith(common, caps, "processes", "a cooperative abort where the leader exits first leaves no process of the job", (h) =>
      Effect.gen(function* () {
        const jobId = yield* withChild(h, [])
        yield* h.executor.abortApp(jobId)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        yield* treeGone(h, jobId, "whole tree (the leader exited on abort, its SIGTERM-ignoring child was left)")
      }))

    testWith(common, caps, "processes", "terminate of a SIGTERM-ignoring leader leaves no process of the job", (h) =>
      Effect.gen(function* () {
        const jobId = yield* withChild(h, ["stubborn"])
        yield* h.executor.abortApp(jobId)
        const outcome = yield* completion(h, jobId)
        expect(outcome.returnCode).toBe(9)
        yield* treeGone(h, jobId, "whole tree (leader and child ignore SIGTERM: SIGKILL must reach both)")
      }))

    testWith(common, caps, "processes", "a normal exit of the leader leaves no process of the job", (h) =>
      Effect.gen(function* () {
        const jobId = yield* withChild(h, [])
        yield* ask(h, jobId, conformanceJobFacts.topics.exit)
        const outcome = yield* completion(h, jobId)
        expect(outcome.exit, "the leader's exit").toEqual(exitOf(0, null))
        yield* treeGone(h, jobId, "whole tree (the leader exited 0, its SIGTERM-ignoring child was left)")
      }))
  })
}

/** The handle's contract after the exit: wait again, poll, terminate again. */
export const handleTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("handle", () => {
    test(common, "after the exit: wait resolves again (same exit), poll is Some of it at once, terminate() twice succeeds", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("exit-with", [0])
        const outcome = yield* completion(h, jobId)
        const handle = handleOf(h, jobId)
        const bound = 2_000
        const first = yield* within(bound, "handle.wait after the exit did not resolve", handle.wait)
        const polled = yield* within(bound, "handle.poll after the exit did not return", handle.poll)
        yield* check(Option.isSome(polled), "handle.poll is None right after handle.wait resolved: poll must see the exit wait saw")
        expect(Option.getOrThrow(polled), "poll's exit").toEqual(first)
        expect(first, "wait's exit equals the outcome's").toEqual(outcome.exit)
        yield* within(bound, "terminate() after the exit did not return", handle.terminate())
        yield* within(bound, "a second terminate() after the exit did not return", handle.terminate({ killAfter: Duration.millis(0) }))
        const again = yield* within(bound, "handle.wait after terminate() did not resolve", handle.wait)
        expect(again, "wait again: the same exit").toEqual(first)
      }))

    test(common, "terminate() twice on a running job: one exit, both calls return", (h) =>
      Effect.gen(function* () {
        const jobId = yield* startedEcho(h)
        const handle = handleOf(h, jobId)
        yield* within(2_000, "terminate() did not return", handle.terminate())
        yield* within(2_000, "a second terminate() did not return", handle.terminate())
        const exit = yield* within(common.timeouts.eventMs, "the terminated job's wait did not resolve", handle.wait)
        expect(yield* within(2_000, "wait again", handle.wait)).toEqual(exit)
      }))
  })
}

/** What the job really got: its environment, its working directory, its GPUs. */
export const environmentTests = (input: GroupInput): void => {
  const common = contextOf(input)
  const siteVar = "CONFORMANCE_SITE_VARIABLE"
  /** The documented additions any backend may make to the request's env. */
  const additions = new Set(["CUDA_VISIBLE_DEVICES", "NODE_PATH", "NODE_OPTIONS", ...common.jobEnvAdditions.filter((n) => !n.endsWith("*"))])
  /** Prefixes of `jobEnvAdditions` entries ending in `*` (a scheduler's `SLURM_*`). */
  const prefixes = common.jobEnvAdditions.filter((n) => n.endsWith("*")).map((n) => n.slice(0, -1))
  const isAddition = (k: string): boolean => additions.has(k) || prefixes.some((p) => p.length > 0 && k.startsWith(p))
  /** Keys whose value a backend may translate for the job's filesystem (a container's paths), or replace with its image's. */
  const translated = new Set(["FLEXEC_PARENT_URL", "FLEXEC_WORKSPACE", "FLEXEC_JOB_DIR", "FLEXEC_STARTUP_DIR", "FLEXEC_WORKER_MODULE", "NODE_PATH", "PATH", "HOME", "TMPDIR", "NODE_OPTIONS"])
  const mayDrop = new Set(["PATH", "HOME", "TMPDIR"])

  interface Reported {
    readonly env: Readonly<Record<string, string>>
    readonly cwd: string
    readonly metaJobId: string | null
    readonly argv: ReadonlyArray<string>
  }
  const reported = (h: Harness, jobId: string) => ask(h, jobId, conformanceJobFacts.topics.env).pipe(Effect.map((p) => p as unknown as Reported))

  /** Sets a parent variable for the test's duration. */
  const parentVariable = (name: string, value: string) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const before = process.env[name]
        process.env[name] = value
        return before
      }),
      (before) => Effect.sync(() => (before === undefined ? delete process.env[name] : (process.env[name] = before)))
    )

  withCaps(common, "environment", (caps) => {
    test(
      common,
      "the job's environment is exactly the request's env plus documented additions: no parent variable, FL credentials and site env present",
      (h) =>
        Effect.gen(function* () {
          const canary = `CONFORMANCE_PARENT_CANARY_${common.runId}`
          const canaryValue = `the parent's own ${common.runId}`
          yield* parentVariable(canary, canaryValue)
          const jobId = yield* h.start(conformanceJobFixture)
          yield* h.waitEvent("Started", jobId)
          const { env } = yield* reported(h, jobId)
          const request = requestOf(h, jobId).env
          yield* check(!(canary in env), `the parent's variable ${canary} reached the job: the job's environment must be the request's env, never the parent's`)
          const carrying = Object.keys(env).filter((k) => env[k] === canaryValue).sort()
          yield* check(carrying.length === 0, `the job's ${carrying.join(", ")} carry the parent's variable ${canary}'s value: no addition may copy the parent's environment`)
          const extra = Object.keys(env).filter((k) => !(k in request) && !isAddition(k)).sort()
          yield* check(extra.length === 0, `the job got variables the request's env does not hold (the parent's environment leaks?): ${extra.join(", ")}`)
          const missing = Object.keys(request).filter((k) => !(k in env) && !mayDrop.has(k)).sort()
          yield* check(missing.length === 0, `the job lacks variables of the request's env: ${missing.join(", ")}`)
          const client = mockClient()
          const credentials = { FLEXEC_JOB_AUTH_TOKEN: client.token, FLEXEC_JOB_TOKEN_SIGNATURE: client.tokenSignature, FLEXEC_JOB_SSID: client.ssid }
          for (const [k, v] of Object.entries(credentials)) yield* check(env[k] === v, `the FL credential ${k} did not reach the job (got ${show(env[k])})`)
          const { argv } = yield* reported(h, jobId)
          const inArgv = Object.keys(credentials).filter((k) => argv.some((a) => a.includes(credentials[k as keyof typeof credentials]!)))
          yield* check(inArgv.length === 0, `the FL credentials ${inArgv.join(", ")} are in the job's argv: credentials go through the environment only`)
          yield* check(env[siteVar] === "from-the-site", `the site's env variable ${siteVar} did not reach the job (got ${show(env[siteVar])})`)
          const changed = Object.keys(request).filter((k) => !translated.has(k) && k in env && env[k] !== request[k]).sort()
          yield* check(changed.length === 0, `the job got other values than the request's for: ${changed.join(", ")}`)
        }),
      { executorOptions: { env: { [siteVar]: "from-the-site" } } }
    )

    test(common, "the job runs in its job directory (paths.jobDir)", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start(conformanceJobFixture)
        yield* h.waitEvent("Started", jobId)
        const { cwd, env, metaJobId } = yield* reported(h, jobId)
        const jobDir = requestOf(h, jobId).paths.jobDir
        yield* check(
          (cwd === jobDir || cwd === env.FLEXEC_JOB_DIR) && metaJobId === jobId,
          `the job ran in ${cwd} (its meta.json names ${show(metaJobId)}), not in its job directory ${jobDir}`
        )
      }))

    testWith(common, caps, "gpus", "a job with GPUs sees exactly its allocation in CUDA_VISIBLE_DEVICES; one without sees none of the parent's", (h) =>
      Effect.gen(function* () {
        yield* parentVariable("CUDA_VISIBLE_DEVICES", "7")
        const rm = new MockResourceManager()
        const withGpus = yield* h.start(conformanceJobFixture, [], { allocatedResource: { gpus: ["1", "3"] }, token: "conformance-gpus", resourceManager: rm })
        const without = yield* h.start(conformanceJobFixture)
        yield* h.waitEvent("Started", withGpus)
        yield* h.waitEvent("Started", without)
        const a = (yield* reported(h, withGpus)).env.CUDA_VISIBLE_DEVICES
        const b = (yield* reported(h, without)).env.CUDA_VISIBLE_DEVICES
        yield* check(a === "1,3", `a job allocated GPUs 1 and 3 saw CUDA_VISIBLE_DEVICES=${show(a)}: the allocation must reach it`)
        yield* check(b === undefined || b === "", `a job allocated no GPU saw CUDA_VISIBLE_DEVICES=${show(b)}: the parent's GPUs must not reach it`)
      }))
  })
}

/** A first parent whose scope the test keeps: its jobs outlive it, as processes outlive a parent that died. */
interface Orphan {
  readonly jobId: string
  readonly context: LauncherContext
  /** The first parent's handle (still watching the job, as the OS does). */
  readonly real: JobHandle
  readonly base: Parameters<typeof makeJobExecutor>[0] extends infer O ? Omit<O & object, "launcher"> : never
  /** Ends the orphan as the test's cleanup: its first launcher's scope closes (and the dead parent's socket directory goes). */
  readonly dispose: Effect.Effect<void>
}

/**
 * Starts `fixture` under a first executor of instance `<test instance>-<suffix>`,
 * waits for Started, then drops that executor as a parent that died: it stops
 * watching, its executor closes, and the job keeps running (its socket directory
 * is set aside while the executor closes, so it survives as a dead parent's would).
 */
const orphanOf = (h: Harness, suffix: string, fixture: ConformanceFixture, args: ReadonlyArray<string> = []) =>
  Effect.gen(function* () {
    const common = h.common
    const runtimeDir = path.join(h.runtimeDir, "..", `rt-${suffix}`)
    const instanceId = `${h.instanceId}-${suffix}`
    const context: LauncherContext = { runId: common.runId, instanceId, runtimeDir }
    const jobId = h.newJobId(`orphan-${suffix}`)
    const base = {
      client: mockClient(),
      runtimeDir,
      instanceId,
      graceMs: common.timeouts.graceMs,
      killTimeoutMs: common.timeouts.killTimeoutMs,
      startTimeoutMs: common.timeouts.startTimeoutMs,
      backendSlackMs: SUITE_BACKEND_SLACK_MS,
      ...(common.workerCommand ? { command: common.workerCommand } : {}),
      ...common.executorOptions,
      labels: { ...common.executorOptions.labels, [testRunLabel]: common.runId }
    }
    const detached = yield* Scope.make()
    let channelDir: string | undefined
    const dispose = Effect.suspend(() => {
      if (channelDir !== undefined) fs.rmSync(channelDir, { recursive: true, force: true })
      return Scope.close(detached, Exit.void)
    })
    yield* Effect.addFinalizer(() => dispose)
    const drop = yield* Deferred.make<JobExit>()
    let real: JobHandle | undefined
    const first = yield* buildLauncher(common.makeLauncher, context).pipe(Scope.extend(detached))
    const dropping: JobLauncher = Object.assign(Object.create(first) as JobLauncher, {
      launch: (request: LaunchRequest) =>
        first.launch(request).pipe(
          Scope.extend(detached),
          Effect.map((handle): JobHandle => {
            real = handle
            channelDir = request.channel.dir
            return { jobId: handle.jobId, poll: Effect.succeedNone, wait: Deferred.await(drop), terminate: () => Effect.void }
          })
        )
    })
    const scope1 = yield* Scope.make()
    const e1 = yield* makeJobExecutor({ ...base, launcher: dropping }).pipe(Scope.extend(scope1))
    const job = yield* deployConformanceJob({ workspace: h.workspace, jobId, clientName: mockClient().clientName, fixture, args })
    yield* e1.startApp({ jobId, jobMeta: job.meta, args: { workspace: h.workspace, set: job.set } })
    yield* pollUntil("the orphan to start", () => e1.getStatus(jobId).pipe(Effect.map((s) => s === ClientStatus.Started)), common.timeouts.eventMs)
    const aside = `${channelDir!}.aside`
    fs.renameSync(channelDir!, aside)
    yield* Deferred.succeed(drop, exitOf(null, null, true))
    yield* e1.awaitCompletion(jobId)
    yield* Scope.close(scope1, Exit.void)
    fs.renameSync(aside, channelDir!)
    expect(Option.isNone(yield* real!.poll), "suite: the orphan still runs after its parent dropped it").toBe(true)
    return { jobId, context, real: real!, base, dispose } as Orphan
  })

/** A second launcher of the orphan's instance, and what its `recover` found. */
const recoverWith = (h: Harness, orphan: Pick<Orphan, "context">) =>
  Effect.gen(function* () {
    const launcher = yield* buildLauncher(h.common.makeLauncher, orphan.context)
    const found: Array<RecoveredJob> = []
    const recording: JobLauncher = Object.assign(Object.create(launcher) as JobLauncher, {
      recover: (id: string) =>
        launcher.recover ? launcher.recover(id).pipe(Effect.tap((jobs) => Effect.sync(() => void found.push(...jobs)))) : Effect.succeed([])
    })
    return { launcher: recording, found }
  })

/** Kills every OS process of `jobId` with SIGKILL, behind the backend's back. */
const killBehindTheBack = (jobId: string) =>
  Effect.sync(() => {
    for (const pid of processesOfJob(jobId)) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // gone
      }
    }
  })

/** Recovery (capability recover): what a dead parent left is found, reaped or adopted, and only that. */
export const recoveryTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "recovery", (caps) => {
    testWith(common, caps, "recover", "a SIGTERM-ignoring job left by a dead parent is reaped by the next executor of the instance", (h) =>
      Effect.gen(function* () {
        const orphan = yield* orphanOf(h, "rec", conformanceJobFixture, ["stubborn"])
        const { found, launcher } = yield* recoverWith(h, orphan)
        const scope2 = yield* Scope.make()
        const e2 = yield* makeJobExecutor({ ...orphan.base, launcher, recover: "reap" }).pipe(Scope.extend(scope2))
        yield* check(found.some((j) => j.jobId === orphan.jobId), `recover() did not report the orphan ${orphan.jobId} (found ${show(found.map((j) => j.jobId))})`)
        expect((yield* e2.recovered).map((r) => [r.jobId, r.action])).toContainEqual([orphan.jobId, "reaped"])
        yield* pollUntil("the reaped orphan to be gone", () => orphan.real.poll.pipe(Effect.map(Option.isSome)), common.timeouts.eventMs).pipe(
          Effect.mapError(() => new Error(`the reaped orphan, which ignores SIGTERM, still runs ${common.timeouts.eventMs} ms after recovery: reaping must escalate to SIGKILL`))
        )
        if (caps.processes === true) yield* treeGone(h, orphan.jobId, "recovery (the reaped orphan's processes)")
        yield* Scope.close(scope2, Exit.void)
        yield* orphan.dispose
      }))

    testWith(common, caps, ["recover", "processes"], "a recovered job killed behind the backend's back comes out lost (or as the death its scheduler recorded), not as a clean exit", (h) =>
      Effect.gen(function* () {
        const orphan = yield* orphanOf(h, "lost", conformanceEchoFixture)
        const { found, launcher } = yield* recoverWith(h, orphan)
        const recovered = yield* within(common.timeouts.eventMs, "recover() did not return", launcher.recover!(orphan.context.instanceId))
        const job = recovered.find((j) => j.jobId === orphan.jobId)
        yield* check(job !== undefined, `recover() did not report the live orphan ${orphan.jobId} (found ${show(found.map((j) => j.jobId))})`)
        yield* killBehindTheBack(orphan.jobId)
        const exit = yield* within(common.timeouts.eventMs, "the recovered handle's wait did not resolve after its job was killed", job!.handle.wait)
        // a process backend has no record of it: lost; a scheduler that recorded the kill reports that death
        yield* check(isTruthfulDeath(exit), `a recovered job killed behind the backend's back came out ${show(exit)}: it must come out lost, or as the death really recorded (a signal or a non-zero code), never as a clean exit`)
        yield* orphan.dispose
      }))

    testWith(common, caps, "recover", "recover(A) reports A's orphans and never B's", (h) =>
      Effect.gen(function* () {
        const a = yield* orphanOf(h, "a", conformanceEchoFixture)
        const b = yield* orphanOf(h, "b", conformanceEchoFixture)
        for (const [mine, other] of [[a, b], [b, a]] as const) {
          const { launcher } = yield* recoverWith(h, mine)
          const ids = (yield* within(common.timeouts.eventMs, "recover() did not return", launcher.recover!(mine.context.instanceId))).map((j): string => j.jobId)
          yield* check(!ids.includes(other.jobId), `recover(${mine.context.instanceId}) returned ${other.jobId}, a job of instance ${other.context.instanceId}`)
          yield* check(ids.includes(mine.jobId), `recover(${mine.context.instanceId}) did not return its own orphan ${mine.jobId} (got ${show(ids)})`)
        }
        yield* a.dispose
        yield* b.dispose
      }))

    const staleName = "a stale record whose pid now belongs to an unrelated process is not claimed, and that process survives recovery"
    if (common.staleRecord === undefined) {
      it.skip(`${staleName} [skipped: capabilities.recover=${String(caps.recover)}, capabilities.processes=${String(caps.processes ?? false)}; needs the backend's staleRecord hook (conformanceSuite option)]`, () => undefined)
    } else {
      const hook = common.staleRecord
      testWith(common, caps, ["recover", "processes"], staleName, (h) =>
        Effect.gen(function* () {
          const unrelated = yield* Effect.acquireRelease(
            Effect.sync(() => cp.spawn(process.execPath, ["-e", "setInterval(() => {}, 1 << 30)"], { stdio: "ignore", detached: true, env: { PATH: process.env.PATH ?? "" } })),
            (child) => Effect.sync(() => child.kill("SIGKILL"))
          )
          yield* h.until("the unrelated process to run", () => unrelated.pid !== undefined && fs.existsSync(`/proc/${unrelated.pid}`))
          const context: LauncherContext = { runId: common.runId, instanceId: `${h.instanceId}-stale`, runtimeDir: path.join(h.runtimeDir, "..", "rt-stale") }
          fs.mkdirSync(context.runtimeDir, { recursive: true })
          const jobId = h.newJobId("stale")
          const wrote = hook({ ...context, jobId, pid: unrelated.pid! })
          if (Effect.isEffect(wrote)) yield* wrote
          else if (wrote !== undefined) yield* Effect.promise(() => Promise.resolve(wrote))
          const { found, launcher } = yield* recoverWith(h, { context })
          const scope2 = yield* Scope.make()
          yield* makeJobExecutor({
            client: mockClient(),
            runtimeDir: context.runtimeDir,
            instanceId: context.instanceId,
            graceMs: common.timeouts.graceMs,
            killTimeoutMs: common.timeouts.killTimeoutMs,
            ...common.executorOptions,
            labels: { ...common.executorOptions.labels, [testRunLabel]: common.runId },
            launcher,
            recover: "reap"
          }).pipe(Scope.extend(scope2))
          yield* check(!found.some((j) => j.jobId === jobId), `recover() claimed ${jobId}, whose recorded pid ${unrelated.pid} belongs to an unrelated process`)
          yield* Scope.close(scope2, Exit.void)
          yield* check(unrelated.exitCode === null && unrelated.signalCode === null, `recovery ended the unrelated process ${unrelated.pid} (${unrelated.signalCode ?? unrelated.exitCode}) named by a stale record`)
        }))
    }

    testWith(common, caps, "adopt", "recover: \"adopt\" keeps a dead parent's job: Recovered adopted, sendToJob reaches it, its completion is reported", (h) =>
      Effect.gen(function* () {
        const orphan = yield* orphanOf(h, "adopt", conformanceEchoFixture)
        const { launcher } = yield* recoverWith(h, orphan)
        const scope2 = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope2, Exit.void))
        const e2 = yield* makeJobExecutor({ ...orphan.base, launcher, recover: "adopt" }).pipe(Scope.extend(scope2))
        expect((yield* e2.recovered).map((r) => [r.jobId, r.action]), "the adopting executor's recovery records").toContainEqual([orphan.jobId, "adopted"])
        const payload = { adopted: orphan.jobId }
        const askOnce = e2.sendToJob({ jobId: orphan.jobId, channel: fixtureFacts.channel, topic: conformanceTopics.echo, message: Message.make(payload), timeout: "2 seconds" })
        let reply = yield* Effect.either(askOnce)
        yield* pollUntil("the adopted job to answer", () => (Either.isRight(reply) ? true : Effect.either(askOnce).pipe(Effect.map((r) => ((reply = r), Either.isRight(r))))), common.timeouts.eventMs).pipe(
          Effect.mapError(() => new Error(`the adopted job never answered sendToJob: ${Either.isLeft(reply) ? String(reply.left) : ""}`))
        )
        expect(Either.getOrThrow(reply).payload).toEqual(payload)
        yield* e2.abortApp(orphan.jobId)
        const outcome = yield* within(common.timeouts.eventMs, "the adopted job's completion was not reported", e2.awaitCompletion(orphan.jobId))
        expect(outcome.returnCode).toBe(9)
        yield* pollUntil("the adopted job to be gone", () => orphan.real.poll.pipe(Effect.map(Option.isSome)), common.timeouts.eventMs).pipe(
          Effect.mapError(() => new Error("the adopted job still runs after its abort was reported"))
        )
        yield* Scope.close(scope2, Exit.void)
        yield* orphan.dispose
      }))

    testWith(common, caps, ["adopt", "processes"], "an adopted job that vanishes comes out lost (127) (or as the death its scheduler recorded), not as a clean exit", (h) =>
      Effect.gen(function* () {
        const orphan = yield* orphanOf(h, "vanish", conformanceEchoFixture)
        const { launcher } = yield* recoverWith(h, orphan)
        const scope2 = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope2, Exit.void))
        const e2 = yield* makeJobExecutor({ ...orphan.base, launcher, recover: "adopt" }).pipe(Scope.extend(scope2))
        expect((yield* e2.jobs).map((j) => j.jobId)).toContain(orphan.jobId)
        yield* killBehindTheBack(orphan.jobId)
        const outcome = yield* within(common.timeouts.eventMs, "the vanished adopted job's completion was not reported", e2.awaitCompletion(orphan.jobId))
        yield* check(isTruthfulDeath(outcome.exit), `an adopted job that vanished came out ${show(outcome.exit)}: it must come out lost, or as the death really recorded, never as a clean exit`)
        // lost is the unknown end (127); a recorded death of a started job is an execution error (1)
        expect(outcome.returnCode, `the return code of an adopted job that vanished with ${show(outcome.exit)}`).toBe(outcome.exit.lost ? 127 : 1)
        yield* Scope.close(scope2, Exit.void)
        yield* orphan.dispose
      }))
  })
}

/** Abort during the launch: whenever `abortApp` comes, nothing of the job is left and the allocation is freed once. */
export const launchAbortTests = (input: GroupInput): void => {
  const common = contextOf(input)
  withCaps(common, "launch abort", (caps) => {
    const allocate = (rm: MockResourceManager) =>
      Effect.gen(function* () {
        const { token } = yield* rm.checkResources({})
        const allocation = yield* rm.allocateResources({}, token)
        return { token, allocatedResource: { ...allocation, conformance: true }, resourceManager: rm }
      })
    const running = (h: Harness) => (h.launcher as { readonly running?: () => number }).running?.call(h.launcher) ?? 0

    /** Starts without awaiting, aborts once registered (after `delayMs`), and checks what is left. */
    const abortAt = (h: Harness, delayMs: number, label: string) =>
      Effect.gen(function* () {
        const rm = new MockResourceManager()
        const a = yield* allocate(rm)
        const jobId = h.newJobId(label)
        const start = yield* Effect.fork(h.start(conformanceEchoFixture, [], { ...a, jobId }))
        if (delayMs > 0) yield* Effect.sleep(Duration.millis(delayMs))
        const deadline = Date.now() + common.timeouts.eventMs
        while ((yield* h.executor.checkStatus(jobId)) === "not started" && Date.now() < deadline) yield* Effect.sleep(Duration.millis(1))
        yield* h.executor.abortApp(jobId)
        yield* Fiber.await(start)
        const outcome = yield* completion(h, jobId)
        yield* check([9, 104].includes(outcome.returnCode) || outcome.returnCode === 0, `an abort during the launch ended as ${show(outcome)}`)
        return { jobId, rm, token: a.token }
      })

    const nothingLeft = (h: Harness, jobs: ReadonlyArray<{ jobId: string; rm: MockResourceManager; token: string }>, when: string) =>
      Effect.gen(function* () {
        for (const { jobId } of jobs) {
          if (caps.processes === true) yield* treeGone(h, jobId, `abort during the launch (${when})`)
        }
        yield* pollUntil("the launcher to report no live job", () => running(h) === 0, common.timeouts.processGoneMs).pipe(
          Effect.mapError(() => new Error(`abort during the launch (${when}): the launcher still runs ${running(h)} job(s) after their completion`))
        )
        for (const { rm, token } of jobs) {
          yield* pollUntil("the allocation to be freed", () => (rm.freedTokens().get(token) ?? 0) >= 1, common.timeouts.eventMs).pipe(Effect.ignore)
          const freed = rm.freedTokens().get(token) ?? 0
          yield* check(freed === 1, `abort during the launch (${when}): the allocation was freed ${freed} times, not once`)
        }
      })

    test(common, "abortApp at delays from 0 up to the launch's own duration leaves nothing running and frees once", (h) =>
      Effect.gen(function* () {
        // the launch's own duration: startApp until the launcher returned a handle
        const probe = h.newJobId("measure")
        const t0 = Date.now()
        const measured = yield* Effect.fork(h.start(conformanceEchoFixture, [], { jobId: probe }))
        yield* h.until("the measuring launch to return a handle", () => h.handles.has(probe))
        const launchMs = Math.max(1, Date.now() - t0)
        yield* Fiber.await(measured)
        yield* h.executor.abortApp(probe)
        for (const fraction of [0, 0.25, 0.5, 0.75, 1, 1.5]) {
          const delay = Math.round(launchMs * fraction)
          const job = yield* abortAt(h, delay, `at${Math.round(fraction * 100)}`)
          yield* nothingLeft(h, [job], `abortApp ${delay} ms after startApp, the launch takes ${launchMs} ms`)
        }
      }))

    test(common, "abortApp racing a batch of un-awaited startApp calls leaves nothing running and frees each once", (h) =>
      Effect.gen(function* () {
        const jobs = yield* Effect.forEach([1, 2, 3, 4, 5, 6], (n) => abortAt(h, 0, `batch${n}`), { concurrency: "unbounded" })
        yield* nothingLeft(h, jobs, "a batch of 6 aborted as soon as registered")
      }))
  })
}

/** validate: the launcher checks its own launcher_spec mode. */
export const validateTests = (input: GroupInput): void => {
  const common = contextOf(input)
  describe("validate", () => {
    test(common, "an unknown key under launcher_spec.default.<launcher.name> is refused with InvalidJobMeta naming it; nothing launched", (h) =>
      Effect.gen(function* () {
        const key = "conformance_no_such_key"
        const jobId = h.newJobId("badspec")
        const result = yield* Effect.either(h.start(conformanceEchoFixture, [], { jobId, meta: { launcher_spec: { default: { [h.launcher.name]: { [key]: 1 } } } } }))
        yield* check(
          Either.isLeft(result),
          `a job with launcher_spec.default.${h.launcher.name}.${key} was accepted${h.launcher.validate === undefined ? " (the launcher has no validate)" : ""}: validate must refuse unknown keys`
        )
        const error = (result as Either.Left<unknown, unknown>).left as { readonly _tag?: string; readonly message?: string }
        expect(error._tag, "the refusal's type").toBe("InvalidJobMeta")
        yield* check(String(error.message).includes(key), `the refusal does not name the key ${key}: ${error.message}`)
        expect(h.requests.size, "nothing was launched").toBe(0)
        expect((yield* h.executor.jobs).length).toBe(0)
      }))

    test(common, "a valid launcher_spec for the launcher (an empty mode) is accepted", (h) =>
      Effect.gen(function* () {
        const jobId = h.newJobId("goodspec")
        const result = yield* Effect.either(h.start(conformanceEchoFixture, [], { jobId, meta: { launcher_spec: { default: { [h.launcher.name]: {} } } } }))
        yield* check(Either.isRight(result), `a job with an empty launcher_spec.default.${h.launcher.name} was refused: ${Either.isLeft(result) ? String((result.left as Error).message ?? result.left) : ""}`)
        yield* h.waitEvent("Started", jobId)
        yield* h.executor.abortApp(jobId)
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
  treeTests,
  handleTests,
  environmentTests,
  recoveryTests,
  launchAbortTests,
  validateTests
] as const
