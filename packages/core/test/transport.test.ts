/**
 * The transport seam: a job channel listens through the `ChannelTransport` in
 * its context. A second transport (in memory, defined here) plugged in through
 * the tag carries the real worker runtime's hello, its Started report and a
 * request/reply each way; the channel server is the same code for it as for
 * the unix socket, which stays the default when no transport is provided.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Logger, Option, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Duplex } from "node:stream"
import { duplexPair } from "../src/internal/duplexPair.js"
import * as Message from "../src/Message.js"
import { openJobChannel } from "../src/protocol/ChannelServer.js"
import type { IncomingRequest, JobChannelOptions } from "../src/protocol/ChannelServer.js"
import { ChannelTransport } from "../src/protocol/ChannelTransport.js"
import type { ChannelTransportService } from "../src/protocol/Transport.js"
import { encodeFrame, FrameDecoder } from "../src/protocol/Frame.js"
import type { DecodeEvent } from "../src/protocol/Frame.js"
import { runJobWith } from "../src/worker/runtime.js"
import { makeJobExecutor } from "../src/JobExecutor.js"
import { makeMemoryLauncher } from "./support/memoryLauncher.js"
import { deploy, tempDir } from "./support/setup.js"

const base = fs.mkdtempSync(path.join(os.tmpdir(), "fxt-"))
afterAll(() => fs.rmSync(base, { recursive: true, force: true }))
let dirs = 0
const nextDir = () => path.join(base, `j${++dirs}`)

/** Polls `check` every 10 ms until true; dies naming `what` after `ms`. */
const waitFor = (check: () => boolean, what: string, ms = 5000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("10 millis")
    }
  })

const JOB = "job-1"
const TOKEN = "t0ken-of-job-1"

/**
 * A transport with no socket: `listen` registers the channel under a
 * `memory://` URL, and `connect(url)` hands the channel one end of an in-memory
 * stream pair (the job keeps the other), as a network transport hands it an
 * accepted socket.
 */
const memoryTransport = () => {
  const endpoints = new Map<string, (stream: Duplex, peer: string) => void>()
  let peers = 0
  const service: ChannelTransportService = {
    name: "memory",
    check: ({ socketName }) => (socketName === "too-far" ? "the memory transport does not reach too-far" : undefined),
    listen: (options) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const url = `memory://${options.jobId}/${path.basename(options.dir)}`
          endpoints.set(url, options.accept)
          return { url }
        }),
        ({ url }) => Effect.sync(() => endpoints.delete(url))
      )
  }
  const connect = (url: string): Duplex => {
    const accept = endpoints.get(url)
    if (accept === undefined) throw new Error(`nothing listens at ${url}`)
    const [job, parent] = duplexPair()
    accept(parent, `memory peer ${++peers}`)
    return job
  }
  return { service, connect, listening: () => endpoints.size }
}

const options = (overrides: Partial<JobChannelOptions> = {}): JobChannelOptions => ({
  jobId: JOB,
  token: TOKEN,
  dir: nextDir(),
  onRequest: () => Option.none(),
  ...overrides
})

/** The job's environment for the worker runtime, pointed at `url`. */
const jobEnv = (url: string, dir: string): Record<string, string | undefined> => ({
  FLEXEC_PARENT_URL: url,
  FLEXEC_CHANNEL_TOKEN: TOKEN,
  FLEXEC_JOB_ID: JOB,
  FLEXEC_CLIENT_NAME: "site-1",
  FLEXEC_WORKSPACE: dir,
  FLEXEC_JOB_DIR: dir,
  FLEXEC_STARTUP_DIR: dir
})

describe("ChannelTransport: the seam the channel server listens through", () => {
  it.scopedLive("a second transport carries the worker runtime's hello, its Started report and a request/reply each way", () =>
    Effect.gen(function* () {
      const memory = memoryTransport()
      const received: Array<IncomingRequest> = []
      const dir = nextDir()
      const channel = yield* openJobChannel(
        options({
          dir,
          onRequest: (request) => {
            received.push(request)
            if (request.channel === "app" && request.topic === "ask") return Option.some(Effect.succeed({ answer: 42 }))
            return Option.some(Effect.succeed(undefined))
          }
        })
      ).pipe(Effect.provide(ChannelTransport.layer(memory.service)))
      // the job reaches the channel at the transport's address, and no socket was made
      expect(channel.info.url).toBe(`memory://${JOB}/${path.basename(dir)}`)
      expect(fs.readdirSync(dir)).toEqual([])

      let fromParent: unknown
      let answered: unknown
      let echoed: () => void = () => {}
      const echoedOnce = new Promise<void>((resolve) => (echoed = resolve))
      const exits: Array<number> = []
      const done = runJobWith(
        {
          run: async (ctx) => {
            answered = (await ctx.request({ channel: "app", topic: "ask", message: { payload: { question: "?" } } })).payload
            await echoedOnce
            return 7
          },
          handlers: {
            app: {
              echo: (message) => {
                fromParent = message.payload
                echoed()
                return { echoed: message.payload }
              }
            }
          }
        },
        { env: jobEnv(channel.info.url, dir), connect: memory.connect, exit: (code) => exits.push(code), log: () => {} }
      )

      yield* channel.awaitConnected
      // the worker's Started report came through the channel server's handler
      yield* waitFor(() => received.some((r) => r.channel === "admin" && r.topic === "notify_job_status"), "the Started report")
      const reply = yield* channel.request({ channel: "app", topic: "echo", message: Message.make({ n: 1 }), timeout: 5000 })
      expect(reply.payload).toEqual({ echoed: { n: 1 } })
      expect(fromParent).toEqual({ n: 1 })
      yield* waitFor(() => answered !== undefined, "the job's request answered")
      expect(answered).toEqual({ answer: 42 })
      expect(received.find((r) => r.topic === "ask")?.message.payload).toEqual({ question: "?" })

      // the job ends on its own; its Stopped report comes through the same way
      const code = yield* Effect.promise(() => done)
      expect(code).toBe(7)
      expect(exits).toEqual([7])
      expect(received.filter((r) => r.topic === "notify_job_status").map((r) => r.message.payload)).toEqual([{ status: 2 }, { status: 3 }])
    })
  )

  it.scopedLive("the hello admission is the channel server's: a wrong token over the second transport is refused, logged with its peer", () =>
    Effect.gen(function* () {
      const memory = memoryTransport()
      const lines: Array<{ message: unknown; annotations: Record<string, unknown> }> = []
      const logger = Logger.make(({ annotations, message }) => {
        const record: Record<string, unknown> = {}
        for (const [key, value] of annotations) record[key] = value
        lines.push({ message, annotations: record })
      })
      const channel = yield* openJobChannel(options()).pipe(
        Effect.provide(ChannelTransport.layer(memory.service)),
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      const job = memory.connect(channel.info.url)
      const events: Array<DecodeEvent> = []
      const decoder = new FrameDecoder()
      let closed = false
      job.on("data", (chunk: Uint8Array) => decoder.push(chunk, (event) => events.push(event)))
      job.on("close", () => (closed = true))
      job.on("error", () => {})
      for (const chunk of encodeFrame({ kind: "hello", version: 1, jobId: JOB, token: "not-the-token" })) job.write(chunk)
      yield* waitFor(() => closed, "the refused connection closed")
      expect(events).toEqual([])
      expect(yield* channel.isConnected).toBe(false)
      yield* waitFor(() => lines.some((l) => String(l.message).includes("wrong token")), "the refusal's log line")
      const refusal = lines.find((l) => String(l.message).includes("wrong token"))!
      expect(refusal.annotations).toMatchObject({ jobId: JOB, peer: "memory peer 1" })
    })
  )

  it.scopedLive("the transport's check refuses an address before anything is made, and closing the channel closes its listener", () =>
    Effect.gen(function* () {
      const memory = memoryTransport()
      const dir = nextDir()
      const refused = yield* Effect.exit(
        Effect.scoped(openJobChannel(options({ dir, socketName: "too-far" }))).pipe(Effect.provide(ChannelTransport.layer(memory.service)))
      )
      expect(Exit.isFailure(refused)).toBe(true)
      if (Exit.isFailure(refused)) {
        expect(refused.cause).toMatchObject({ error: { _tag: "LaunchFailed", reason: "the memory transport does not reach too-far" } })
      }
      expect(fs.existsSync(dir)).toBe(false)
      expect(memory.listening()).toBe(0)

      const scope = yield* Scope.make()
      yield* openJobChannel(options()).pipe(Effect.provide(ChannelTransport.layer(memory.service)), Scope.extend(scope))
      expect(memory.listening()).toBe(1)
      yield* Scope.close(scope, Exit.void)
      expect(memory.listening()).toBe(0)
    })
  )

  it.scopedLive("without a transport provided, and with ChannelTransport.unix, a channel listens on a unix socket in its directory", () =>
    Effect.gen(function* () {
      for (const provided of [false, true]) {
        const dir = nextDir()
        const open = openJobChannel(options({ dir }))
        const channel = yield* provided ? open.pipe(Effect.provide(ChannelTransport.unix)) : open
        expect(channel.info.socketPath).toBe(path.join(dir, "ch.sock"))
        expect(channel.info.url).toBe(`unix://${path.join(dir, "ch.sock")}`)
        expect(fs.statSync(channel.info.socketPath).isSocket()).toBe(true)
      }
    })
  )

  it.scopedLive("connectInProcess reaches the channel whatever its transport", () =>
    Effect.gen(function* () {
      const memory = memoryTransport()
      const channel = yield* openJobChannel(options()).pipe(Effect.provide(ChannelTransport.layer(memory.service)))
      const job = channel.info.connectInProcess()
      const events: Array<DecodeEvent> = []
      const decoder = new FrameDecoder()
      job.on("data", (chunk: Uint8Array) => decoder.push(chunk, (event) => events.push(event)))
      for (const chunk of encodeFrame({ kind: "hello", version: 1, jobId: JOB, token: TOKEN })) job.write(chunk)
      yield* waitFor(() => events.length > 0, "hello_ok")
      expect(events[0]).toMatchObject({ type: "frame", header: { kind: "hello_ok", version: 1 } })
      yield* channel.awaitConnected
      job.destroy()
    })
  )
})

describe("the executor's transport", () => {
  it.scopedLive("is read once when the executor is made: jobs started from a fiber without it still listen through it", () =>
    Effect.gen(function* () {
      const memory = memoryTransport()
      const urls: Array<string> = []
      const workspace = yield* tempDir("flexec-ws-")
      const runtimeDir = yield* tempDir("flexec-rt-")
      const launcher = makeMemoryLauncher(() => (c) => {
        urls.push(c.request.channel.url)
        c.worker({ run: () => 0 })
      })
      // the transport is provided to the executor's making only
      const executor = yield* makeJobExecutor({ client: { clientName: "site-1" }, launcher, runtimeDir }).pipe(
        Effect.provide(ChannelTransport.layer(memory.service))
      )
      deploy(workspace, "job-1")
      yield* executor.startApp({ jobId: "job-1", args: { workspace } })
      expect(yield* executor.awaitCompletion("job-1")).toMatchObject({ returnCode: 0 })
      expect(urls).toEqual([expect.stringMatching(/^memory:\/\/job-1\//)])
      expect(memory.listening()).toBe(0)
    })
  )
})

describe("the executor option channel", () => {
  it.scoped("an unknown transport is a TypeError when the executor is made, before any instance is taken", () =>
    Effect.gen(function* () {
      const runtimeDir = yield* tempDir("flexec-rt-")
      const made = yield* Effect.exit(
        makeJobExecutor({
          client: { clientName: "site-1" },
          launcher: makeMemoryLauncher(() => () => undefined),
          runtimeDir,
          channel: { transport: "carrier-pigeon" } as never
        })
      )
      expect(Exit.isFailure(made)).toBe(true)
      expect(String(Exit.isFailure(made) ? Cause.squash(made.cause) : "")).toContain('channel.transport must be "unix" or "tcp", not "carrier-pigeon"')
    })
  )
})

describe("the executor option channel over tcp", () => {
  it.scopedLive("tls: true keeps the certificate in <runtimeDir>/channel-tls.pem (0600): a later executor of the instance presents the pin its jobs got", () =>
    Effect.gen(function* () {
      const runtimeDir = yield* tempDir("flexec-rt-")
      const workspace = yield* tempDir("flexec-ws-")
      const pins: Array<string | undefined> = []
      const urls: Array<string> = []
      const launcher = makeMemoryLauncher(() => (c) => {
        pins.push(c.request.env.FLEXEC_CHANNEL_CERT_SHA256)
        urls.push(c.request.channel.url)
        c.worker({ run: () => 0 })
      })
      for (const jobId of ["job-1", "job-2"]) {
        const scope = yield* Scope.make()
        const executor = yield* makeJobExecutor({ client: { clientName: "site-1" }, launcher, runtimeDir, channel: { transport: "tcp", tls: true } }).pipe(
          Scope.extend(scope)
        )
        deploy(workspace, jobId)
        yield* executor.startApp({ jobId, args: { workspace } })
        expect(yield* executor.awaitCompletion(jobId)).toMatchObject({ returnCode: 0 })
        yield* Scope.close(scope, Exit.void)
      }
      expect(urls.every((u) => /^tls:\/\/127\.0\.0\.1:\d+$/.test(u))).toBe(true)
      expect(pins[0]).toMatch(/^[0-9a-f]{64}$/)
      expect(pins[1]).toBe(pins[0])
      expect(fs.statSync(path.join(runtimeDir, "channel-tls.pem")).mode & 0o777).toBe(0o600)
    })
  )

  it.scoped("recover: \"adopt\" over tcp on an ephemeral port is a TypeError, and nothing of the instance is made", () =>
    Effect.gen(function* () {
      const base = yield* tempDir("flexec-rt-")
      const runtimeDir = path.join(base, "instance")
      const made = yield* Effect.exit(
        makeJobExecutor({
          client: { clientName: "site-1" },
          launcher: makeMemoryLauncher(() => () => undefined, { recover: true, adopt: true }),
          runtimeDir,
          recover: "adopt",
          channel: { transport: "tcp", tls: true }
        })
      )
      expect(String(Exit.isFailure(made) ? Cause.squash(made.cause) : "")).toContain('recover: "adopt" needs a fixed port')
      expect(fs.existsSync(runtimeDir)).toBe(false)
    })
  )
})
