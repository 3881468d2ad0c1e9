/**
 * The parent side of the channel over real unix sockets (and in-process pairs),
 * driven by a tiny raw job-side client written with the codec.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Option, Scope, Supervisor, TestClock } from "effect"
import { Buffer } from "node:buffer"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { Duplex } from "node:stream"
import {
  type DecodeEvent,
  decodePayload,
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  encodeFrameBuffer,
  encodePayload,
  FrameDecoder,
  type FrameHeader
} from "../src/protocol/Frame.js"
import * as Message from "../src/Message.js"
import type { Payload } from "../src/Message.js"
import { duplexPair } from "../src/internal/duplexPair.js"
import { bindJobChannel, openJobChannel } from "../src/protocol/ChannelServer.js"
import { makeFramedStream } from "../src/protocol/FramedStream.js"
import type { JobChannel, JobChannelOptions, RequestHandler } from "../src/protocol/ChannelServer.js"

const base = fs.mkdtempSync(path.join(os.tmpdir(), "fxp-"))
afterAll(() => fs.rmSync(base, { recursive: true, force: true }))
let dirs = 0
const nextDir = () => path.join(base, `j${++dirs}`)

const JOB = "job-1"
const TOKEN = "s3cret-token"
const MiB = 1024 * 1024

// ---------------------------------------------------------------- raw client

type Frame = { readonly header: FrameHeader; readonly payload: Buffer }

/** The job side, written with the codec only. */
class RawPeer {
  private readonly decoder: FrameDecoder
  private readonly events: Array<DecodeEvent> = []
  private wake: (() => void) | undefined
  closed = false
  readonly closedPromise: Promise<void>

  constructor(
    readonly stream: Duplex,
    maxFrame = DEFAULT_MAX_FRAME_BYTES
  ) {
    this.decoder = new FrameDecoder(maxFrame)
    stream.on("data", (chunk: Buffer) => {
      this.decoder.push(chunk, (event) => this.events.push(event))
      this.wake?.()
    })
    stream.on("error", () => {})
    this.closedPromise = new Promise((resolve) => {
      const done = () => {
        this.closed = true
        this.wake?.()
        resolve()
      }
      stream.once("close", done)
      stream.once("end", done)
    })
  }

  send(header: FrameHeader, payload?: Uint8Array): void {
    for (const chunk of encodeFrame(header, payload)) this.stream.write(chunk)
  }

  sendPayload(header: Omit<FrameHeader, "enc">, payload: Payload): void {
    const { bytes, enc } = encodePayload(payload)
    this.send({ ...header, enc } as FrameHeader, bytes)
  }

  /** The next event; rejects when the connection closes first or after `ms`. */
  async next(ms = 5000): Promise<DecodeEvent> {
    const deadline = Date.now() + ms
    for (;;) {
      const event = this.events.shift()
      if (event) return event
      if (this.closed) throw new Error("closed")
      const left = deadline - Date.now()
      if (left <= 0) throw new Error("timeout")
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          this.wake = undefined
          resolve()
        }
      })
    }
  }

  async nextFrame(ms?: number): Promise<Frame> {
    const event = await this.next(ms)
    if (event.type !== "frame") throw new Error(`expected a frame, got ${JSON.stringify(event)}`)
    return event
  }

  async hello(jobId = JOB, token = TOKEN): Promise<FrameHeader> {
    this.send({ kind: "hello", version: 1, jobId, token })
    return (await this.nextFrame()).header
  }

  /** Waits until the parent closes the connection (deadline `ms`). */
  async waitClosed(ms = 5000): Promise<boolean> {
    const timeout = new Promise<false>((resolve) => setTimeout(() => resolve(false), ms).unref())
    return Promise.race([this.closedPromise.then(() => true as const), timeout])
  }

  destroy(): void {
    this.stream.destroy()
  }
}

const connect = (socketPath: string, maxFrame?: number) =>
  Effect.async<RawPeer>((resume) => {
    const socket = net.connect(socketPath, () => resume(Effect.succeed(new RawPeer(socket, maxFrame))))
    socket.on("error", () => {})
  })

const inProcess = (channel: JobChannel, maxFrame?: number) => Effect.sync(() => new RawPeer(channel.info.connectInProcess(), maxFrame))

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/** Polls `effect` until `done` or the deadline (real sockets: no fixed sleeps). */
const eventually = <A>(effect: Effect.Effect<A>, done: (a: A) => boolean, ms = 5000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    for (;;) {
      const value = yield* effect
      if (done(value)) return value
      if (Date.now() > deadline) return value
      yield* Effect.sleep(Duration.millis(5))
    }
  })

/** A handler from `{ "channel/topic": (message) => effect }`. */
const handlers =
  (map: Record<string, (message: Message.Message) => Effect.Effect<Payload, unknown>>): RequestHandler =>
  ({ channel, message, topic }) =>
    Option.map(Option.fromNullable(map[`${channel}/${topic}`]), (f) => f(message))

const open = (overrides: Partial<JobChannelOptions> = {}) =>
  openJobChannel({ jobId: JOB, token: TOKEN, dir: nextDir(), onRequest: () => Option.none(), ...overrides })

/** Opens a channel and connects a worker that has said hello. */
const connected = (overrides: Partial<JobChannelOptions> = {}, maxFrame?: number) =>
  Effect.gen(function* () {
    const channel = yield* open(overrides)
    const peer = yield* connect(channel.info.socketPath, maxFrame)
    const ok = yield* promise(() => peer.hello())
    expect(ok.kind).toBe("hello_ok")
    yield* channel.awaitConnected
    return { channel, peer }
  })

const request = (channel: JobChannel, payload: Payload, timeout: Duration.DurationInput = "5 seconds", topic = "t") =>
  channel.request({ channel: "c", topic, message: Message.make(payload, { h: "v" }), timeout })

/** Answers the next request with `rc` and `payload`. */
const answer = (peer: RawPeer, rc: string, payload: Payload | ((frame: Frame) => Payload) = undefined) =>
  promise(async () => {
    const frame = await peer.nextFrame()
    expect(frame.header.kind).toBe("request")
    const value = typeof payload === "function" ? payload(frame) : payload
    peer.sendPayload({ kind: "reply", id: frame.header.id!, rc }, value)
    return frame
  })

// ---------------------------------------------------------------- tests

describe("openJobChannel: directory and socket", () => {
  it.live("creates a 0700 directory with the socket and removes both when the scope closes", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const dir = nextDir()
      const channel = yield* Scope.extend(open({ dir }), scope)
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700)
      expect(channel.info.socketPath).toBe(path.join(dir, "ch.sock"))
      expect(channel.info.url).toBe(`unix://${channel.info.socketPath}`)
      expect(channel.info.token).toBe(TOKEN)
      expect(fs.statSync(channel.info.socketPath).isSocket()).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expect(fs.existsSync(dir)).toBe(false)
    })
  )

  it.scopedLive("fails with LaunchFailed when the directory already exists", () =>
    Effect.gen(function* () {
      const dir = nextDir()
      fs.mkdirSync(dir)
      const error = yield* Effect.flip(open({ dir }))
      expect(error._tag).toBe("LaunchFailed")
      expect(error.reason).toContain(dir)
      expect(fs.existsSync(dir)).toBe(true)
    })
  )

  it.live("reuseDir keeps an existing directory, replaces a stale socket, and takes a reconnect", () =>
    Effect.gen(function* () {
      const dir = nextDir()
      // a first parent leaves its directory and socket file behind
      const first = yield* Scope.make()
      const old = yield* Scope.extend(open({ dir }), first)
      const oldPeer = yield* connect(old.info.socketPath)
      yield* promise(() => oldPeer.hello())
      fs.mkdirSync(`${dir}-keep`)
      fs.renameSync(dir, `${dir}-keep/d`) // keep it from being removed
      yield* Scope.close(first, Exit.void)
      fs.renameSync(`${dir}-keep/d`, dir)
      fs.chmodSync(dir, 0o755)
      const inode = fs.statSync(dir).ino
      expect(fs.statSync(path.join(dir, "ch.sock")).isSocket()).toBe(true)
      // without reuseDir: refused; with it: adopted
      expect((yield* Effect.flip(Effect.scoped(open({ dir }))))._tag).toBe("LaunchFailed")
      const second = yield* Scope.make()
      const channel = yield* Scope.extend(open({ dir, reuseDir: true }), second)
      expect(fs.statSync(dir)).toMatchObject({ ino: inode })
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700)
      const peer = yield* connect(channel.info.socketPath)
      expect((yield* promise(() => peer.hello())).kind).toBe("hello_ok")
      yield* Scope.close(second, Exit.void)
      expect(fs.existsSync(dir)).toBe(false)
      // a symlink where the directory goes is not followed
      const target = nextDir()
      fs.mkdirSync(target, { mode: 0o755 })
      const link = nextDir()
      fs.symlinkSync(target, link)
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* open({ dir: link, reuseDir: true })
          expect(fs.lstatSync(link).isDirectory()).toBe(true)
        })
      )
      expect(fs.statSync(target).mode & 0o777).toBe(0o755)
      expect(fs.readdirSync(target)).toEqual([])
    })
  )

  it.scopedLive("refuses a socket path over 107 bytes, naming the path and its length", () =>
    Effect.gen(function* () {
      const dir = path.join(base, "d".repeat(120 - base.length))
      const error = yield* Effect.flip(open({ dir }))
      const socketPath = path.join(dir, "ch.sock")
      expect(error._tag).toBe("LaunchFailed")
      expect(error.reason).toContain(socketPath)
      expect(error.reason).toContain(`${Buffer.byteLength(socketPath)} bytes`)
      expect(fs.existsSync(dir)).toBe(false)
    })
  )

  it.scopedLive.skipIf(process.getuid?.() !== 0)("chowns the directory and the socket to the owner [skipped unless root: chown needs it]", () =>
    Effect.gen(function* () {
      const channel = yield* open({ owner: { uid: 4321, gid: 4322 } })
      for (const p of [channel.info.dir, channel.info.socketPath]) {
        expect(fs.statSync(p)).toMatchObject({ uid: 4321, gid: 4322 })
      }
    })
  )

  it.live("leaves no fiber running after the scope closes", () =>
    Effect.gen(function* () {
      const supervisor = yield* Supervisor.track
      const scope = yield* Scope.make()
      const silent = yield* Effect.gen(function* () {
        const { channel, peer } = yield* connected({ onRequest: handlers({ "c/slow": () => Effect.never }) })
        const second = yield* connect(channel.info.socketPath) // never says hello
        const fiber = yield* Effect.fork(request(channel, 1, "1 minute"))
        yield* answer(peer, "ok", 1)
        yield* Fiber.join(fiber)
        peer.sendPayload({ kind: "request", id: 1, channel: "c", topic: "slow" }, undefined)
        // running in the channel's scope: the live connection's fiber and the slow handler (a
        // connection waiting for its hello has no fiber: a timer and the socket's data handler)
        const running = yield* eventually(supervisor.value, (fibers) => fibers.length >= 2)
        expect(running.length).toBeGreaterThanOrEqual(2)
        expect(second.closed).toBe(false)
        return second
      }).pipe(Scope.extend(scope), Effect.supervised(supervisor))
      yield* Scope.close(scope, Exit.void)
      const alive = yield* supervisor.value
      expect(alive.length).toBe(0)
      // the connection that never said hello is closed with the channel
      yield* promise(() => silent.closedPromise)
      expect(silent.closed).toBe(true)
    })
  )
})

describe("bindJobChannel", () => {
  it.scopedLive("listens before serving: workers that connect and say hello first are answered once serve runs", () =>
    Effect.gen(function* () {
      const bound = yield* bindJobChannel({ jobId: JOB, token: TOKEN, dir: nextDir(), onRequest: () => Option.none() })
      expect(fs.statSync(bound.info.socketPath).isSocket()).toBe(true)
      const overSocket = yield* connect(bound.info.socketPath)
      const inProc = new RawPeer(bound.info.connectInProcess())
      overSocket.send({ kind: "hello", version: 1, jobId: JOB, token: TOKEN })
      inProc.send({ kind: "hello", version: 1, jobId: JOB, token: TOKEN })
      // nothing answers yet: the hellos wait for serve
      const early = yield* Effect.exit(promise(() => overSocket.next(100)))
      expect(Exit.isFailure(early)).toBe(true)
      const channel = yield* bound.serve
      // the first one in is served, the second refused (one live connection per job)
      expect((yield* promise(() => overSocket.next())).type === "frame").toBe(true)
      expect(yield* promise(() => inProc.waitClosed())).toBe(true)
      yield* channel.awaitConnected
      const fiber = yield* Effect.fork(request(channel, "after serve"))
      yield* answer(overSocket, "ok", "yes")
      expect((yield* Fiber.join(fiber)).payload).toBe("yes")
    })
  )
})

describe("makeFramedStream", () => {
  it.scopedLive("a write waits for the reader before it completes (backpressure)", () =>
    Effect.gen(function* () {
      const [near, far] = duplexPair()
      const framed = yield* makeFramedStream(near, { maxFrameBytes: DEFAULT_MAX_FRAME_BYTES })
      const write = yield* Effect.fork(framed.write(encodeFrame({ kind: "notify", channel: "c", topic: "t", enc: "bytes" }, new Uint8Array(4 * MiB))))
      yield* Effect.yieldNow()
      // nobody reads the far end: the write cannot have completed
      expect(Option.isNone(yield* Fiber.poll(write))).toBe(true)
      const peer = new RawPeer(far)
      expect(yield* Fiber.join(write)).toBe(true)
      const frame = yield* promise(() => peer.nextFrame())
      expect(frame.payload.length).toBe(4 * MiB)
      // and after the peer is gone, writes report false
      peer.destroy()
      yield* promise(() => peer.closedPromise)
      expect(yield* eventually(framed.write(encodeFrame({ kind: "notify", channel: "c", topic: "t" })), (ok) => !ok)).toBe(false)
    })
  )
})

describe("handshake", () => {
  it.scopedLive("answers a valid hello with hello_ok { version: 1, maxFrame }", () =>
    Effect.gen(function* () {
      const channel = yield* open({ maxFrameBytes: 1 * MiB })
      expect(yield* channel.isConnected).toBe(false)
      const peer = yield* connect(channel.info.socketPath)
      const ok = yield* promise(() => peer.hello())
      expect(ok).toEqual({ kind: "hello_ok", version: 1, maxFrame: 1 * MiB })
      yield* channel.awaitConnected
      expect(yield* channel.isConnected).toBe(true)
    })
  )

  const refused: Array<[string, (peer: RawPeer) => void]> = [
    ["a wrong token", (p) => p.send({ kind: "hello", version: 1, jobId: JOB, token: "nope" })],
    ["a wrong token of the same length", (p) => p.send({ kind: "hello", version: 1, jobId: JOB, token: "s3cret-tokeN" })],
    ["a wrong job id", (p) => p.send({ kind: "hello", version: 1, jobId: "job-2", token: TOKEN })],
    ["a missing token", (p) => p.send({ kind: "hello", version: 1, jobId: JOB })],
    ["another version", (p) => p.send({ kind: "hello", version: 2, jobId: JOB, token: TOKEN })],
    ["a non-hello first frame", (p) => p.sendPayload({ kind: "request", id: 1, channel: "c", topic: "t" }, {})],
    ["a hello with a payload", (p) => p.send({ kind: "hello", version: 1, jobId: JOB, token: TOKEN, enc: "bytes" }, Uint8Array.of(1))],
    ["a malformed first frame", (p) => p.stream.write(Buffer.from([0, 0, 0, 6, 0, 0, 0, 2, 0x7b, 0x7d]))],
    [
      "an oversize first frame",
      (p) => {
        // a hello whose length field claims 1 MiB: only its prefix and header are sent
        const header = Buffer.from(JSON.stringify({ kind: "hello", version: 1, jobId: JOB, token: TOKEN }))
        const prefix = Buffer.alloc(8)
        prefix.writeUInt32BE(MiB, 0)
        prefix.writeUInt32BE(header.length, 4)
        p.stream.write(Buffer.concat([prefix, header]))
      }
    ]
  ]
  for (const [name, send] of refused) {
    it.scopedLive(`closes a connection whose first frame is ${name}`, () =>
      Effect.gen(function* () {
        const channel = yield* open()
        const peer = yield* connect(channel.info.socketPath)
        send(peer)
        expect(yield* promise(() => peer.waitClosed())).toBe(true)
        expect(yield* channel.isConnected).toBe(false)
        // the channel still takes a valid worker
        const good = yield* connect(channel.info.socketPath)
        expect((yield* promise(() => good.hello())).kind).toBe("hello_ok")
      })
    )
  }

  it.scopedLive("closes a connection that says nothing within helloTimeout", () =>
    Effect.gen(function* () {
      const channel = yield* open({ helloTimeout: "100 millis" })
      const peer = yield* connect(channel.info.socketPath)
      expect(yield* promise(() => peer.waitClosed())).toBe(true)
      const inproc = yield* inProcess(channel)
      expect(yield* promise(() => inproc.waitClosed())).toBe(true)
    })
  )

  it.scoped("the hello timeout runs on the Effect clock (TestClock): nothing closes before it, the silent connection at it", () =>
    Effect.gen(function* () {
      const channel = yield* open({ helloTimeout: "10 seconds" })
      const silent = yield* inProcess(channel)
      yield* TestClock.adjust("9 seconds")
      yield* Effect.yieldNow()
      expect(silent.closed).toBe(false)
      yield* TestClock.adjust("1 second")
      expect(yield* promise(() => silent.waitClosed())).toBe(true)
      // a worker that says hello after that still gets in
      const good = yield* inProcess(channel)
      expect((yield* promise(() => good.hello())).kind).toBe("hello_ok")
    })
  )

  it.scopedLive("live clock: the same hello deadline closes a silent connection, and a later worker still gets in", () =>
    Effect.gen(function* () {
      const channel = yield* open({ helloTimeout: "200 millis" })
      const silent = yield* inProcess(channel)
      expect(yield* promise(() => silent.waitClosed())).toBe(true)
      const good = yield* inProcess(channel)
      expect((yield* promise(() => good.hello())).kind).toBe("hello_ok")
    })
  )

  it.scopedLive("refuses a second hello while a connection is live, and the first keeps working", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      const second = yield* connect(channel.info.socketPath)
      second.send({ kind: "hello", version: 1, jobId: JOB, token: TOKEN })
      expect(yield* promise(() => second.waitClosed())).toBe(true)
      const third = yield* inProcess(channel)
      third.send({ kind: "hello", version: 1, jobId: JOB, token: TOKEN })
      expect(yield* promise(() => third.waitClosed())).toBe(true)
      const fiber = yield* Effect.fork(request(channel, "still there?"))
      yield* answer(peer, "ok", "yes")
      expect((yield* Fiber.join(fiber)).payload).toBe("yes")
    })
  )

  it.scopedLive("accepts a reconnect once the old connection is gone", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      peer.destroy()
      expect(yield* eventually(channel.isConnected, (c) => !c)).toBe(false)
      const again = yield* connect(channel.info.socketPath)
      expect((yield* promise(() => again.hello())).kind).toBe("hello_ok")
      yield* channel.awaitConnected
      const fiber = yield* Effect.fork(request(channel, 1))
      yield* answer(again, "ok", 2)
      expect((yield* Fiber.join(fiber)).payload).toBe(2)
    })
  )

  it.scopedLive("disconnect closes the live connection", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      yield* channel.disconnect
      expect(yield* promise(() => peer.waitClosed())).toBe(true)
      expect(yield* channel.isConnected).toBe(false)
    })
  )
})

describe("parent → job requests", () => {
  it.scopedLive("fails at once with TargetUnreachable when no worker is connected", () =>
    Effect.gen(function* () {
      const channel = yield* open()
      const error = yield* Effect.flip(request(channel, 1, "1 minute"))
      expect(error).toMatchObject({ _tag: "TargetUnreachable", jobId: JOB })
    })
  )

  it.scopedLive("sends a request frame with a fresh id and maps ok replies by encoding", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      const json = yield* Effect.fork(request(channel, { q: [1, "two"] }))
      const frame = yield* answer(peer, "ok", { a: true })
      expect(frame.header).toMatchObject({ kind: "request", channel: "c", topic: "t", enc: "json", headers: { h: "v" } })
      expect(JSON.parse(frame.payload.toString())).toEqual({ q: [1, "two"] })
      const reply = yield* Fiber.join(json)
      expect(reply.payload).toEqual({ a: true })
      expect(Object.getPrototypeOf(reply.headers)).toBeNull()

      const bytes = yield* Effect.fork(request(channel, undefined))
      const second = yield* answer(peer, "ok", Uint8Array.of(1, 2, 3))
      expect(second.header.enc).toBe("none")
      expect(second.header.id).not.toBe(frame.header.id)
      const bytesReply = yield* Fiber.join(bytes)
      expect(bytesReply.payload).toBeInstanceOf(Uint8Array)
      expect([...(bytesReply.payload as Uint8Array)]).toEqual([1, 2, 3])

      const none = yield* Effect.fork(request(channel, Uint8Array.of(7)))
      const third = yield* answer(peer, "ok", undefined)
      expect(third.header.enc).toBe("bytes")
      expect([...third.payload]).toEqual([7])
      expect((yield* Fiber.join(none)).payload).toBeUndefined()
    })
  )

  it.scopedLive("maps invalid_request, msg_too_big and other codes to typed errors", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      const cases: Array<[string, Payload, Record<string, unknown>]> = [
        ["invalid_request", "no handler", { _tag: "InvalidRequest", jobId: JOB, channel: "c", topic: "t" }],
        ["msg_too_big", { size: 10, max: 5 }, { _tag: "MessageTooBig", size: 10, max: 5 }],
        ["process_exception", "boom", { _tag: "RemoteError", jobId: JOB, returnCode: "process_exception", detail: "boom" }],
        ["service_unavailable", undefined, { _tag: "RemoteError", returnCode: "service_unavailable", detail: "service_unavailable" }],
        ["abort_run", Buffer.from("raw text"), { _tag: "RemoteError", returnCode: "abort_run", detail: "raw text" }]
      ]
      for (const [rc, payload, expected] of cases) {
        const fiber = yield* Effect.fork(Effect.flip(request(channel, 1)))
        yield* answer(peer, rc, payload)
        expect(yield* Fiber.join(fiber)).toMatchObject(expected)
      }
      // a msg_too_big reply without details names our own frame and limit
      const fiber = yield* Effect.fork(Effect.flip(request(channel, 1)))
      yield* answer(peer, "msg_too_big")
      expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "MessageTooBig", max: DEFAULT_MAX_FRAME_BYTES })
    })
  )

  it.scopedLive("refuses locally, sending nothing: a message over maxFrameBytes, a Uint8Array nested in JSON", () =>
    Effect.gen(function* () {
      const max = 100_000
      const { channel, peer } = yield* connected({ maxFrameBytes: max })
      const big = yield* Effect.flip(request(channel, new Uint8Array(max)))
      expect(big._tag).toBe("MessageTooBig")
      expect(big).toMatchObject({ max })
      expect((big as { size: number }).size).toBeGreaterThan(max)
      const nested = yield* Effect.flip(request(channel, { blob: new Uint8Array(3) } as never))
      expect(nested).toMatchObject({ _tag: "InvalidRequest", channel: "c", topic: "t" })
      expect((nested as { reason?: string }).reason).toMatch(/payload\.blob is binary/)
      expect(nested.message).toMatch(/not sent/)
      // the next frame the worker sees is the next request
      const fiber = yield* Effect.fork(request(channel, "small", "5 seconds", "after"))
      const frame = yield* answer(peer, "ok")
      expect(frame.header.topic).toBe("after")
      yield* Fiber.join(fiber)
    })
  )

  it.scopedLive("times out with RequestTimeout, drops the late reply, leaves no pending entry", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      const fiber = yield* Effect.fork(Effect.flip(request(channel, 1, "50 millis")))
      const frame = yield* promise(() => peer.nextFrame())
      const error = yield* Fiber.join(fiber)
      expect(error).toMatchObject({ _tag: "RequestTimeout", jobId: JOB, channel: "c", topic: "t", timeout: 50 })
      expect(yield* channel.pendingRequests).toBe(0)
      // the late reply is dropped; the connection goes on
      peer.sendPayload({ kind: "reply", id: frame.header.id!, rc: "ok" }, "late")
      const next = yield* Effect.fork(request(channel, 2))
      yield* answer(peer, "ok", "fresh")
      expect((yield* Fiber.join(next)).payload).toBe("fresh")
      expect(yield* channel.pendingRequests).toBe(0)
    })
  )

  it.scopedLive("an interrupted request: its late reply is dropped with its entry, and the connection goes on", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      const fiber = yield* Effect.fork(request(channel, 1, "1 minute"))
      const frame = yield* promise(() => peer.nextFrame())
      yield* Fiber.interrupt(fiber)
      expect(yield* channel.pendingRequests).toBe(1)
      peer.sendPayload({ kind: "reply", id: frame.header.id!, rc: "ok" }, "late")
      const next = yield* Effect.fork(request(channel, 2))
      yield* answer(peer, "ok", "fresh")
      expect((yield* Fiber.join(next)).payload).toBe("fresh")
      expect(yield* channel.pendingRequests).toBe(0)
    })
  )

  it.scoped("TestClock: the same request path times out at its deadline on the Effect clock, not before", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      const fiber = yield* Effect.fork(Effect.flip(request(channel, 1, "10 seconds")))
      yield* promise(() => peer.nextFrame())
      yield* TestClock.adjust("9999 millis")
      expect(yield* channel.pendingRequests).toBe(1)
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "RequestTimeout", timeout: 10_000 })
      expect(yield* channel.pendingRequests).toBe(0)
    })
  )

  it.scoped("TestClock: an interrupted request keeps its entry until its deadline, then it is gone (as under the live clock)", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      const fiber = yield* Effect.fork(request(channel, 1, "10 seconds"))
      yield* promise(() => peer.nextFrame())
      yield* Fiber.interrupt(fiber)
      expect(yield* channel.pendingRequests).toBe(1)
      yield* TestClock.adjust("10 seconds")
      expect(yield* channel.pendingRequests).toBe(0)
    })
  )

  it.scopedLive("live clock: an interrupted request's entry goes at its deadline when no reply comes", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      const fiber = yield* Effect.fork(request(channel, 1, "50 millis"))
      yield* promise(() => peer.nextFrame())
      yield* Fiber.interrupt(fiber)
      expect(yield* eventually(channel.pendingRequests, (n) => n === 0)).toBe(0)
    })
  )

  it.scopedLive("fails every pending request with TargetUnreachable at once when the connection drops", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected()
      const fibers = yield* Effect.forEach([1, 2, 3], (n) => Effect.fork(Effect.flip(request(channel, n, "1 minute"))))
      for (let i = 0; i < 3; i++) yield* promise(() => peer.nextFrame())
      expect(yield* channel.pendingRequests).toBe(3)
      peer.destroy()
      // the requests' own timeout is a minute: failing within the deadline below can only be the drop
      for (const fiber of fibers) {
        const failed = yield* Fiber.join(fiber).pipe(
          Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("a pending request was not failed when the connection dropped") })
        )
        expect(failed).toMatchObject({ _tag: "TargetUnreachable", jobId: JOB })
      }
      expect(yield* channel.pendingRequests).toBe(0)
    })
  )

  it.live("fails pending requests with TargetUnreachable when the channel's scope closes", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const { channel, peer } = yield* Scope.extend(connected(), scope)
      const fiber = yield* Effect.fork(Effect.flip(request(channel, 1, "1 minute")))
      yield* promise(() => peer.nextFrame())
      yield* Scope.close(scope, Exit.void)
      expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "TargetUnreachable" })
      expect(yield* promise(() => peer.waitClosed())).toBe(true)
    })
  )

  it.scopedLive("fails a request whose reply is oversize with MessageTooBig and keeps the connection", () =>
    Effect.gen(function* () {
      const max = 100_000
      const { channel, peer } = yield* connected({ maxFrameBytes: max })
      const fiber = yield* Effect.fork(Effect.flip(request(channel, 1)))
      yield* answer(peer, "ok", new Uint8Array(max + 10))
      expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "MessageTooBig", max })
      const next = yield* Effect.fork(request(channel, 2))
      yield* answer(peer, "ok", 3)
      expect((yield* Fiber.join(next)).payload).toBe(3)
    })
  )
})

describe("job → parent requests", () => {
  const onRequest = handlers({
    "admin/notify_job_status": (m) => Effect.succeed({ seen: m.payload ?? null } as Payload),
    "c/echo": (m) => Effect.succeed(m.payload),
    "c/fail": () => Effect.fail(new Error("handler failed: disk full")),
    "c/die": () => Effect.die("kaboom"),
    "c/nested": () => Effect.succeed({ x: new Uint8Array(2) } as never)
  })

  it.scopedLive("serves a request pipelined right after the hello, once hello_ok is out; a refused hello drops it", () =>
    Effect.gen(function* () {
      const seen: Array<unknown> = []
      const counting = handlers({
        "admin/notify_job_status": (m) =>
          Effect.sync(() => {
            seen.push(m.payload)
            return { seen: m.payload ?? null } as Payload
          })
      })
      const channel = yield* open({ onRequest: counting })
      // one write: the hello and the request reach the parent together
      const refused = yield* connect(channel.info.socketPath)
      refused.stream.write(
        Buffer.concat([
          encodeFrameBuffer({ kind: "hello", version: 1, jobId: JOB, token: "wrong-token!" }),
          encodeFrameBuffer({ kind: "request", id: 1, channel: "admin", topic: "notify_job_status", enc: "json" }, '{"status":2}')
        ])
      )
      expect(yield* promise(() => refused.waitClosed())).toBe(true)
      expect(seen).toEqual([])
      const peer = yield* connect(channel.info.socketPath)
      peer.stream.write(
        Buffer.concat([
          encodeFrameBuffer({ kind: "hello", version: 1, jobId: JOB, token: TOKEN }),
          encodeFrameBuffer({ kind: "request", id: 1, channel: "admin", topic: "notify_job_status", enc: "json" }, '{"status":2}')
        ])
      )
      const first = yield* promise(() => peer.nextFrame())
      expect(first.header.kind).toBe("hello_ok")
      const reply = yield* promise(() => peer.nextFrame())
      expect(reply.header).toMatchObject({ kind: "reply", id: 1, rc: "ok" })
      expect(decodePayload(reply.header.enc, reply.payload)).toEqual({ seen: { status: 2 } })
      expect(seen).toEqual([{ status: 2 }])
    })
  )

  it.scopedLive("answers ok with the handler's payload, invalid_request for an unknown topic, process_exception for a failure", () =>
    Effect.gen(function* () {
      const { peer } = yield* connected({ onRequest })
      const ask = (id: number, channel: string, topic: string, payload: Payload) =>
        promise(async () => {
          peer.sendPayload({ kind: "request", id, channel, topic }, payload)
          const frame = await peer.nextFrame()
          expect(frame.header).toMatchObject({ kind: "reply", id })
          return { rc: frame.header.rc, payload: decodePayload(frame.header.enc, frame.payload) }
        })
      expect(yield* ask(1, "admin", "notify_job_status", { status: 2 })).toEqual({ rc: "ok", payload: { seen: { status: 2 } } })
      expect(yield* ask(2, "c", "echo", undefined)).toEqual({ rc: "ok", payload: undefined })
      const bytes = yield* ask(3, "c", "echo", Uint8Array.of(5, 6))
      expect(bytes.rc).toBe("ok")
      expect([...(bytes.payload as Uint8Array)]).toEqual([5, 6])
      const unknown = yield* ask(4, "c", "nope", {})
      expect(unknown.rc).toBe("invalid_request")
      expect(unknown.payload).toMatch(/no handler for c\/nope/)
      expect(yield* ask(5, "c", "fail", {})).toEqual({ rc: "process_exception", payload: "handler failed: disk full" })
      expect(yield* ask(6, "c", "die", {})).toEqual({ rc: "process_exception", payload: "kaboom" })
      const nested = yield* ask(7, "c", "nested", {})
      expect(nested.rc).toBe("process_exception")
      expect(nested.payload).toMatch(/binary/)
      // a request without a topic is refused, and the connection kept
      const noTopic = yield* promise(async () => {
        peer.sendPayload({ kind: "request", id: 8, channel: "c" }, {})
        return (await peer.nextFrame()).header
      })
      expect(noTopic).toMatchObject({ kind: "reply", id: 8, rc: "invalid_request" })
      expect(yield* ask(9, "c", "echo", "still open")).toEqual({ rc: "ok", payload: "still open" })
    })
  )

  it.scopedLive("hands notify frames to the handler and sends no reply", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<Payload>()
      const { peer } = yield* connected({
        onRequest: handlers({
          "admin/note": (m) => Effect.as(Deferred.succeed(seen, m.payload), "ignored"),
          "c/echo": (m) => Effect.succeed(m.payload)
        })
      })
      peer.sendPayload({ kind: "notify", channel: "admin", topic: "note" }, { hi: 1 })
      peer.sendPayload({ kind: "notify", channel: "admin", topic: "unknown" }, { hi: 2 })
      expect(yield* Deferred.await(seen)).toEqual({ hi: 1 })
      peer.sendPayload({ kind: "request", id: 9, channel: "c", topic: "echo" }, "after")
      const frame = yield* promise(() => peer.nextFrame())
      expect(frame.header).toMatchObject({ kind: "reply", id: 9, rc: "ok" })
    })
  )

  it.scopedLive("answers service_unavailable beyond maxConcurrentRequests", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const { peer } = yield* connected({
        maxConcurrentRequests: 2,
        onRequest: handlers({ "c/wait": () => Effect.as(Deferred.await(gate), "done") })
      })
      for (const id of [1, 2, 3]) peer.sendPayload({ kind: "request", id, channel: "c", topic: "wait" }, {})
      const busy = yield* promise(() => peer.nextFrame())
      expect(busy.header).toMatchObject({ kind: "reply", id: 3, rc: "service_unavailable" })
      yield* Deferred.succeed(gate, undefined)
      const replies = [yield* promise(() => peer.nextFrame()), yield* promise(() => peer.nextFrame())]
      expect(replies.map((f) => [f.header.id, f.header.rc]).sort()).toEqual([
        [1, "ok"],
        [2, "ok"]
      ])
      // capacity is back
      peer.sendPayload({ kind: "request", id: 4, channel: "c", topic: "wait" }, {})
      expect((yield* promise(() => peer.nextFrame())).header).toMatchObject({ id: 4, rc: "ok" })
    })
  )

  it.scopedLive("answers an oversize request msg_too_big without reading its payload, and keeps the connection", () =>
    Effect.gen(function* () {
      const max = 100_000
      const { peer } = yield* connected({ maxFrameBytes: max, onRequest })
      peer.sendPayload({ kind: "request", id: 1, channel: "c", topic: "echo" }, new Uint8Array(max * 3).fill(7))
      const reply = yield* promise(() => peer.nextFrame())
      expect(reply.header).toMatchObject({ kind: "reply", id: 1, rc: "msg_too_big", enc: "json" })
      const details = decodePayload(reply.header.enc, reply.payload) as { size: number; max: number }
      expect(details.max).toBe(max)
      expect(details.size).toBeGreaterThan(max * 3)
      peer.sendPayload({ kind: "request", id: 2, channel: "c", topic: "echo" }, "still here")
      const next = yield* promise(() => peer.nextFrame())
      expect(next.header).toMatchObject({ id: 2, rc: "ok" })
      expect(decodePayload(next.header.enc, next.payload)).toBe("still here")
    })
  )

  it.scopedLive("closes only the connection that sent a malformed frame", () =>
    Effect.gen(function* () {
      const one = yield* connected({ onRequest })
      const two = yield* connected({ onRequest })
      const pending = yield* Effect.fork(Effect.flip(request(one.channel, 1, "1 minute")))
      yield* promise(() => one.peer.nextFrame())
      one.peer.stream.write(Buffer.from([0, 0, 0, 9, 0, 0, 0, 5, ...Buffer.from("{oops")]))
      expect(yield* promise(() => one.peer.waitClosed())).toBe(true)
      expect(yield* Fiber.join(pending)).toMatchObject({ _tag: "TargetUnreachable" })
      // the other job's connection is untouched
      two.peer.sendPayload({ kind: "request", id: 1, channel: "c", topic: "echo" }, "ok?")
      expect((yield* promise(() => two.peer.nextFrame())).header).toMatchObject({ id: 1, rc: "ok" })
      // and the first job may reconnect
      yield* eventually(one.channel.isConnected, (c) => !c)
      const again = yield* connect(one.channel.info.socketPath)
      expect((yield* promise(() => again.hello())).kind).toBe("hello_ok")
    })
  )

  it.scopedLive("closes the connection on a frame whose payload does not match its encoding", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected({ onRequest })
      peer.send({ kind: "request", id: 1, channel: "c", topic: "echo", enc: "json" }, Buffer.from("{not json"))
      expect(yield* promise(() => peer.waitClosed())).toBe(true)
      expect(yield* eventually(channel.isConnected, (c) => !c)).toBe(false)
    })
  )
})

describe("large payloads and in-process connections", () => {
  const echo = handlers({ "c/echo": (m) => Effect.succeed(m.payload) })

  const roundTrip = (channel: JobChannel, peer: RawPeer) =>
    Effect.gen(function* () {
      const data = randomBytes(16 * MiB)
      // parent → job, echoed back by the job
      const fiber = yield* Effect.fork(request(channel, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), "30 seconds"))
      const frame = yield* answer(peer, "ok", (f) => f.payload)
      expect(frame.payload.equals(data)).toBe(true)
      const reply = yield* Fiber.join(fiber)
      expect(Buffer.from(reply.payload as Uint8Array).equals(data)).toBe(true)
      // job → parent, echoed by the parent's handler
      peer.sendPayload({ kind: "request", id: 77, channel: "c", topic: "echo" }, data)
      const back = yield* promise(() => peer.nextFrame(30_000))
      expect(back.header).toMatchObject({ id: 77, rc: "ok", enc: "bytes" })
      expect(back.payload.equals(data)).toBe(true)
    })

  it.scopedLive("carries a 16 MiB binary payload byte-exact both ways over a unix socket", () =>
    Effect.gen(function* () {
      const { channel, peer } = yield* connected({ onRequest: echo })
      yield* roundTrip(channel, peer)
    })
  )

  it.scopedLive("speaks the same protocol through connectInProcess (16 MiB both ways too)", () =>
    Effect.gen(function* () {
      const channel = yield* open({ onRequest: echo })
      const peer = yield* inProcess(channel)
      expect(yield* promise(() => peer.hello())).toEqual({ kind: "hello_ok", version: 1, maxFrame: DEFAULT_MAX_FRAME_BYTES })
      yield* channel.awaitConnected
      yield* roundTrip(channel, peer)
      peer.destroy()
      expect(yield* eventually(channel.isConnected, (c) => !c)).toBe(false)
    })
  )
})
