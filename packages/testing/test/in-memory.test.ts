import { describe, expect, it } from "@effect/vitest"
import type { ExecutorEvent, JobId, LaunchRequest } from "@flexec/core"
import { makeJobExecutor, Message, openJobChannel } from "@flexec/core"
import { Chunk, Duration, Effect, Exit, Option, Queue, Schedule, Scope, Stream, TestClock } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { FixtureName } from "../src/index.js"
import { deployJob, fixtureArgv, InMemoryJobLauncher, inMemoryCapabilities, MockResourceManager, mockClient } from "../src/index.js"

const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** A launch request for `argv`, with a real job channel (no handlers). */
const request = (argv: ReadonlyArray<string>, set: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const root = yield* tempDir("flx-mem-")
    const jobDir = path.join(root, "job-1")
    fs.mkdirSync(jobDir)
    const channel = yield* openJobChannel({ jobId: "job-1", token: "tok", dir: path.join(root, "ch"), onRequest: () => Option.none() })
    const req: LaunchRequest = {
      jobId: "job-1" as JobId,
      client: mockClient(),
      site: "site-1",
      instanceId: "test",
      meta: {},
      paths: {
        workspace: root,
        jobDir,
        appDir: path.join(jobDir, "app_site-1"),
        startup: path.join(root, "startup"),
        local: path.join(root, "local"),
        logFile: path.join(jobDir, "log.txt"),
        rcFile: path.join(jobDir, "_process_rc.txt"),
        runtimeDir: root
      },
      allocation: {},
      gpus: [],
      commandTemplate: undefined,
      command: argv,
      env: {
        FLEXEC_PARENT_URL: channel.info.url,
        FLEXEC_CHANNEL_TOKEN: "tok",
        FLEXEC_JOB_ID: "job-1",
        FLEXEC_CLIENT_NAME: "site-1",
        FLEXEC_JOB_DIR: jobDir,
        FLEXEC_SET: JSON.stringify(set)
      },
      channel: channel.info,
      set,
      labels: {},
      killTimeout: Duration.seconds(5),
      workerRuntime: { modulePath: "", nodePath: "" }
    }
    return { req, channel, jobDir }
  })

const argv = (name: FixtureName, ...args: Array<string | number>) => fixtureArgv(name, ...args)

describe("InMemoryJobLauncher (direct)", () => {
  it.scoped("declares its capabilities and counts live jobs", () =>
    Effect.gen(function* () {
      const launcher = yield* InMemoryJobLauncher.make()
      expect(launcher.name).toBe("in-memory")
      expect(launcher.capabilities).toEqual(inMemoryCapabilities)
      expect(launcher.capabilities).toMatchObject({ signals: true, oomDetection: false, recover: false, adopt: false, logs: true, processes: false })
      expect(launcher.running()).toBe(0)
    })
  )

  it.scoped("runs a fixture: exit-with reports its code; crash-at-start exits 1", () =>
    Effect.gen(function* () {
      const launcher = yield* InMemoryJobLauncher.make()
      const { req } = yield* request(argv("exit-with", 7))
      const handle = yield* launcher.launch(req)
      expect(yield* handle.wait).toEqual({ code: 7, signal: null, oomKilled: false, lost: false })
      expect(yield* handle.poll).toEqual(Option.some({ code: 7, signal: null, oomKilled: false, lost: false }))
      const crash = yield* request(argv("crash-at-start"))
      const crashed = yield* launcher.launch(crash.req)
      expect((yield* crashed.wait).code).toBe(1)
      expect(launcher.running()).toBe(0)
    })
  )

  it.scoped("takes the fixture from set when the argv names none (the engine's default command)", () =>
    Effect.gen(function* () {
      const launcher = yield* InMemoryJobLauncher.make()
      const { req } = yield* request([process.execPath, "/nowhere/main.js"], { fixture: "exit-with", args: ["4"] })
      expect((yield* (yield* launcher.launch(req)).wait).code).toBe(4)
    })
  )

  it.scoped("refuses process-only fixtures and unnamed programs with LaunchFailed", () =>
    Effect.gen(function* () {
      const launcher = yield* InMemoryJobLauncher.make()
      for (const name of ["spawn-grandchild", "allocate-until-oom"] as const) {
        const { req } = yield* request(argv(name))
        const exit = yield* Effect.exit(launcher.launch(req))
        expect(exit).toEqual(Exit.fail(expect.objectContaining({ _tag: "LaunchFailed", reason: `fixture ${name} needs a real process backend` })))
      }
      const { req } = yield* request([process.execPath, "main.js"])
      const exit = yield* Effect.exit(launcher.launch(req))
      expect(exit).toEqual(Exit.fail(expect.objectContaining({ _tag: "LaunchFailed" })))
      expect(launcher.running()).toBe(0)
    })
  )

  it.scoped("terminate: the default SIGTERM ends a job; logs carry its output", () =>
    Effect.gen(function* () {
      const launcher = yield* InMemoryJobLauncher.make()
      const { req } = yield* request(argv("never-connect"))
      const handle = yield* launcher.launch(req)
      const first = yield* handle.logs!.pipe(Stream.take(1), Stream.runCollect)
      expect(Chunk.toReadonlyArray(first)).toEqual([expect.objectContaining({ stream: "stdout", line: "never-connect: up, not connecting" })])
      expect(launcher.running()).toBe(1)
      yield* handle.terminate({ killAfter: "1 second" })
      expect(yield* handle.wait).toEqual({ code: null, signal: "SIGTERM", oomKilled: false, lost: false })
      expect(launcher.running()).toBe(0)
      // a late subscriber still gets the lines, and the stream ends with the job
      expect(Chunk.size(yield* Stream.runCollect(handle.logs!))).toBe(1)
    })
  )

  it.scoped("terminate: a program that ignores SIGTERM dies by SIGKILL after killAfter", () =>
    Effect.gen(function* () {
      const launcher = yield* InMemoryJobLauncher.make()
      const { req, channel } = yield* request(argv("ignore-abort"))
      const handle = yield* launcher.launch(req)
      yield* channel.awaitConnected
      yield* handle.terminate({ killAfter: "3 seconds" })
      yield* handle.terminate({ killAfter: "3 seconds" }) // idempotent
      yield* handle.logs!.pipe(Stream.filter((l) => l.line.includes("SIGTERM ignored")), Stream.take(1), Stream.runDrain)
      yield* TestClock.adjust("2 seconds")
      expect(Option.isNone(yield* handle.poll)).toBe(true)
      const reply = yield* channel.request({ channel: "test", topic: "echo", message: Message.make("alive"), timeout: "10 seconds" })
      expect(reply.payload).toBe("alive")
      yield* TestClock.adjust("1 second")
      expect(yield* handle.wait).toEqual({ code: null, signal: "SIGKILL", oomKilled: false, lost: false })
      expect(launcher.running()).toBe(0)
    })
  )

  it.scoped("malformed-frame works in memory: the channel closes the connection, the program exits 1", () =>
    Effect.gen(function* () {
      const launcher = yield* InMemoryJobLauncher.make()
      const { req } = yield* request(argv("malformed-frame"))
      const handle = yield* launcher.launch(req)
      expect((yield* handle.wait).code).toBe(1)
    })
  )

  it.scopedLive("closing the launch scope kills the job and disconnects it", () =>
    Effect.gen(function* () {
      const launcher = yield* InMemoryJobLauncher.make()
      const { req, channel } = yield* request(argv("echo"))
      const scope = yield* Scope.make()
      const handle = yield* launcher.launch(req).pipe(Scope.extend(scope))
      yield* channel.awaitConnected
      expect(launcher.running()).toBe(1)
      yield* Scope.close(scope, Exit.void)
      expect(yield* handle.wait).toMatchObject({ code: null, signal: "SIGKILL" })
      expect(launcher.running()).toBe(0)
      // the parent side sees the in-memory connection go (polled, with a deadline)
      yield* channel.isConnected.pipe(
        Effect.flatMap((connected) => (connected ? Effect.fail("still connected") : Effect.void)),
        Effect.retry(Schedule.spaced("10 millis")),
        Effect.timeout("5 seconds")
      )
      expect(yield* channel.isConnected).toBe(false)
    })
  )
})

/** Takes events until one matches. */
const nextEvent = <T extends ExecutorEvent["_tag"]>(events: Queue.Dequeue<ExecutorEvent>, tag: T, jobId: string) =>
  Effect.gen(function* () {
    for (;;) {
      const event = yield* Queue.take(events)
      if (event._tag === tag && event.jobId === jobId) return event as Extract<ExecutorEvent, { _tag: T }>
    }
  })

describe("InMemoryJobLauncher under the engine", () => {
  const setup = Effect.gen(function* () {
    const workspace = yield* tempDir("flx-ws-")
    const runtimeDir = yield* tempDir("flx-rt-")
    const launcher = yield* InMemoryJobLauncher.make()
    const executor = yield* makeJobExecutor({
      client: mockClient(),
      launcher,
      runtimeDir,
      graceMs: 500,
      killTimeoutMs: 300,
      handlers: { parent: { hello: (jobId) => Effect.succeed({ hi: jobId }) } }
    })
    const events = yield* executor.subscribe
    return { workspace, launcher, executor, events }
  })

  it.scopedLive("echo end to end: Started, JSON and bytes echoed, aborted → 9, allocation freed once", () =>
    Effect.gen(function* () {
      const { workspace, launcher, executor, events } = yield* setup
      const rm = new MockResourceManager()
      const { token } = yield* rm.checkResources({})
      const allocation = yield* rm.allocateResources({}, token)
      const job = yield* deployJob({ workspace, jobId: "echo-1", clientName: "site-1", fixture: "echo" })
      yield* executor.startApp({
        jobId: "echo-1",
        jobMeta: job.meta,
        args: { workspace, set: job.set },
        allocatedResource: allocation,
        token,
        resourceManager: rm
      })
      yield* nextEvent(events, "Started", "echo-1")
      expect(launcher.running()).toBe(1)
      const json = yield* executor.sendToJob({ jobId: "echo-1", channel: "test", topic: "echo", message: Message.make({ n: [1, 2] }) })
      expect(json.payload).toEqual({ n: [1, 2] })
      const bytes = yield* executor.sendToJob({ jobId: "echo-1", channel: "test", topic: "echo", message: Message.make(new Uint8Array([9, 8, 7])) })
      expect(bytes.payload).toEqual(new Uint8Array([9, 8, 7]))
      yield* executor.abortApp("echo-1")
      const outcome = yield* executor.awaitCompletion("echo-1")
      expect(outcome).toMatchObject({ returnCode: 9, reason: "aborted", exit: { code: 0, signal: null } })
      expect(rm.freedTokens()).toEqual(new Map([[token, 1]]))
      expect(launcher.running()).toBe(0)
    })
  )

  it.scopedLive("exit codes and the rc file reach the outcome; a job calls the parent", () =>
    Effect.gen(function* () {
      const { workspace, launcher, executor } = yield* setup
      const start = (jobId: string, fixture: FixtureName, ...args: Array<string | number>) =>
        Effect.gen(function* () {
          const job = yield* deployJob({ workspace, jobId, clientName: "site-1", fixture, args })
          yield* executor.startApp({ jobId, jobMeta: job.meta, args: { workspace, set: job.set } })
          return yield* executor.awaitCompletion(jobId)
        })
      expect((yield* start("exit-0", "exit-with", 0)).returnCode).toBe(0)
      expect((yield* start("exit-103", "exit-with", 103)).returnCode).toBe(103)
      expect((yield* start("crash", "crash-later", 10)).returnCode).toBe(1)
      // exits 1 abruptly: only the rc file can make it a success
      expect((yield* start("rc-0", "write-rc", 0)).returnCode).toBe(0)
      expect((yield* start("parent", "call-parent")).returnCode).toBe(0)
      expect(launcher.running()).toBe(0)
    })
  )

  it.scopedLive("getErrors, getRunInfo and abortTask reach the in-memory worker", () =>
    Effect.gen(function* () {
      const { workspace, executor, events } = yield* setup
      for (const [jobId, fixture] of [["errs", "report-errors"], ["tasks", "long-task"]] as const) {
        const job = yield* deployJob({ workspace, jobId, clientName: "site-1", fixture })
        yield* executor.startApp({ jobId, jobMeta: job.meta, args: { workspace, set: job.set } })
        yield* nextEvent(events, "Started", jobId)
      }
      // run() starts just after Started: poll until it has reported
      const errors = yield* executor.getErrors("errs").pipe(
        Effect.filterOrFail((e) => Object.keys(e).length > 0),
        Effect.retry(Schedule.spaced("10 millis")),
        Effect.timeout("5 seconds")
      )
      expect(errors.io?.warning).toMatch(/: disk almost full$/)
      expect(yield* executor.getRunInfo("errs")).toMatchObject({ progress: { round: 3, of: 10 } })
      const tasks = (info: Readonly<Record<string, unknown>>) => info.tasks as { aborted: number } | undefined
      yield* executor.getRunInfo("tasks").pipe(
        Effect.filterOrFail((info) => tasks(info) !== undefined),
        Effect.retry(Schedule.spaced("10 millis")),
        Effect.timeout("5 seconds")
      )
      yield* executor.abortTask("tasks")
      const after = yield* executor.getRunInfo("tasks").pipe(
        Effect.filterOrFail((info) => tasks(info)?.aborted === 1),
        Effect.retry(Schedule.spaced("10 millis")),
        Effect.timeout("5 seconds")
      )
      expect(tasks(after)).toEqual({ aborted: 1 })
      yield* executor.abortApp("errs")
      yield* executor.abortApp("tasks")
    })
  )

  it.scopedLive("abort of a job that ignores it: SIGTERM ignored, SIGKILL after the kill timeout, outcome 9", () =>
    Effect.gen(function* () {
      const { workspace, launcher, executor, events } = yield* setup
      const job = yield* deployJob({ workspace, jobId: "stubborn", clientName: "site-1", fixture: "ignore-abort" })
      yield* executor.startApp({ jobId: "stubborn", jobMeta: job.meta, args: { workspace, set: job.set } })
      yield* nextEvent(events, "Started", "stubborn")
      yield* executor.abortApp("stubborn")
      const outcome = yield* executor.awaitCompletion("stubborn")
      expect(outcome).toMatchObject({ returnCode: 9, exit: { code: null, signal: "SIGKILL" } })
      expect(launcher.running()).toBe(0)
    })
  )
})
