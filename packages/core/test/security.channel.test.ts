/**
 * The job channel as a security boundary (parent side, real unix sockets):
 * only the job speaks as the job, its directory is private, and a job cannot
 * make the parent allocate without bound (frame cap, request cap with
 * backpressure, slow-loris hello timeout). Basic handshake cases are in
 * protocol.test.ts; hostile byte streams in fuzz.socket.test.ts.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Logger, LogLevel, Option } from "effect"
import { Buffer } from "node:buffer"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { type DecodeEvent, encodeFrameBuffer, FrameDecoder, type FrameHeader } from "../src/protocol/Frame.js"
import * as Message from "../src/Message.js"
import { MAX_PENDING_HELLOS, openJobChannel } from "../src/protocol/ChannelServer.js"
import type { JobChannelOptions } from "../src/protocol/ChannelServer.js"
import { badReceiver, retainedMemory } from "./support/memory.js"

const base = fs.mkdtempSync(path.join(os.tmpdir(), "fxs-"))
let n = 0
const counts = { cases: 0, faults: 0, refused: 0, leaks: 0 }
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true })
  console.log(`security: channel cases=${counts.cases} faults-injected=${counts.faults} refused=${counts.refused} leaks=${counts.leaks}`)
})

/** A raw job-side peer written with the codec. */
class Peer {
  readonly events: Array<DecodeEvent> = []
  closed = false
  private readonly decoder = new FrameDecoder()
  constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => this.decoder.push(chunk, (e) => this.events.push(e)))
    socket.on("error", () => {})
    socket.on("close", () => {
      this.closed = true
    })
  }
  send(header: FrameHeader, payload?: Uint8Array) {
    this.socket.write(encodeFrameBuffer(header, payload))
  }
  frames() {
    return this.events.flatMap((e) => (e.type === "frame" ? [e] : []))
  }
}

const connect = (socketPath: string) =>
  Effect.async<Peer>((resume) => {
    const socket = net.connect(socketPath, () => resume(Effect.succeed(new Peer(socket))))
    socket.on("error", () => {})
  })

/** Polls `check` every 10 ms until true; fails after `ms`. */
const until = (what: string, check: () => boolean, ms = 5000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("10 millis")
    }
  })

const open = (overrides: Partial<JobChannelOptions> = {}) =>
  openJobChannel({
    jobId: "job-a",
    token: "token-a-0123456789",
    dir: path.join(base, `c${++n}`),
    helloTimeout: "2 seconds",
    onRequest: () => Option.some(Effect.succeed("from-parent")),
    ...overrides
  })

const quiet = Logger.withMinimumLogLevel(LogLevel.None)

/** 64 MiB of hostile payload, sent as views of one 1 MiB block (the test itself allocates nothing more). */
const HOSTILE_BYTES = 64 * (1 << 20)
const hostileBlock = Buffer.alloc(1 << 20, 0x41)
/** What a receiver may retain after skipping a hostile frame: far below the 64 MiB sent and the claim. */
const RETAINED_LIMIT = 16 * (1 << 20)

/** Writes a request frame whose prefix claims `claim` bytes, then 64 MiB of its payload, waiting for drain. */
const sendHostileFrame = async (socket: net.Socket, id: number, claim: number, bodyBytes?: number): Promise<void> => {
  const header = Buffer.from(JSON.stringify({ kind: "request", id, channel: "c", topic: "t", enc: "bytes" }))
  const prefix = Buffer.alloc(8)
  prefix.writeUInt32BE(claim, 0)
  prefix.writeUInt32BE(header.length, 4)
  const write = (chunk: Buffer) =>
    socket.write(chunk) ? Promise.resolve() : new Promise<void>((resolve) => socket.once("drain", () => resolve()))
  await write(Buffer.concat([prefix, header]))
  const body = bodyBytes ?? (claim === 0xffffffff ? HOSTILE_BYTES : claim - 4 - header.length)
  for (let sent = 0; sent < body; sent += hostileBlock.length) await write(hostileBlock.subarray(0, Math.min(hostileBlock.length, body - sent)))
}

describe("security: who can speak as the job", () => {
  it.scopedLive("refuses no token, a wrong token, another job's token and job id, and a second hello; the real job keeps the channel", () =>
    Effect.gen(function* () {
      const a = yield* open()
      const b = yield* open({ jobId: "job-b", token: "token-b-9876543210" })
      const attempts: Array<Record<string, unknown>> = [
        { jobId: "job-a" },
        { jobId: "job-a", token: "" },
        { jobId: "job-a", token: "token-a-012345678" },
        { jobId: "job-a", token: "token-a-0123456789 " },
        { jobId: "job-a", token: "token-b-9876543210" },
        { jobId: "job-b", token: "token-b-9876543210" },
        { jobId: "job-b", token: "token-a-0123456789" },
        { token: "token-a-0123456789" },
        { jobId: "job-a", token: "token-a-0123456789", version: 2 }
      ]
      for (const attempt of attempts) {
        counts.cases++
        counts.faults++
        const peer = yield* connect(a.info.socketPath)
        peer.send({ kind: "hello", version: 1, ...attempt } as FrameHeader)
        yield* until("the impostor to be closed", () => peer.closed)
        expect(peer.frames()).toEqual([])
        counts.refused++
      }
      expect(yield* a.isConnected).toBe(false)

      // the real job
      const job = yield* connect(a.info.socketPath)
      job.send({ kind: "hello", version: 1, jobId: "job-a", token: "token-a-0123456789" })
      yield* a.awaitConnected
      yield* until("hello_ok", () => job.frames().length === 1)

      // a second hello with the job's own credentials, while the job is connected
      counts.cases++
      counts.faults++
      const copycat = yield* connect(a.info.socketPath)
      copycat.send({ kind: "hello", version: 1, jobId: "job-a", token: "token-a-0123456789" })
      yield* until("the copycat to be closed", () => copycat.closed)
      expect(copycat.frames()).toEqual([])
      counts.refused++

      // the parent's requests still reach the real job only; job B's channel sees nothing
      const reply = Effect.runFork(a.request({ channel: "c", topic: "t", message: Message.make("hi"), timeout: "5 seconds" }))
      yield* until("the request at the job", () => job.frames().length === 2)
      const request = job.frames()[1]!
      expect(request.header.kind).toBe("request")
      job.send({ kind: "reply", id: request.header.id!, rc: "ok", enc: "json" }, Buffer.from('"real"'))
      const answer = yield* reply.await
      expect(answer._tag === "Success" && answer.value.payload).toBe("real")
      expect(yield* b.isConnected).toBe(false)
      expect(yield* Effect.flip(b.request({ channel: "c", topic: "t", message: Message.make("x"), timeout: "1 second" }))).toMatchObject({
        _tag: "TargetUnreachable",
        jobId: "job-b"
      })
    }).pipe(quiet)
  )

  it.scopedLive("each job's socket directory is its own, 0700 and owned by the parent; the socket is 0600", () =>
    Effect.gen(function* () {
      counts.cases++
      const a = yield* open()
      const b = yield* open({ jobId: "job-b", token: "token-b" })
      expect(a.info.dir).not.toBe(b.info.dir)
      for (const channel of [a, b]) {
        const dir = fs.lstatSync(channel.info.dir)
        expect(dir.isDirectory()).toBe(true)
        expect(dir.mode & 0o777).toBe(0o700)
        expect(dir.uid).toBe(process.getuid!())
        const socket = fs.lstatSync(channel.info.socketPath)
        expect(socket.isSocket()).toBe(true)
        expect(socket.mode & 0o777).toBe(0o600)
        expect(fs.readdirSync(channel.info.dir)).toEqual([channel.info.socketName])
      }
    })
  )

  it.scopedLive("refuses to open over a planted directory or symlink (the directory must not exist)", () =>
    Effect.gen(function* () {
      const target = path.join(base, `victim${++n}`)
      fs.mkdirSync(target)
      for (const plant of ["dir", "symlink"] as const) {
        counts.cases++
        counts.faults++
        const dir = path.join(base, `planted-${plant}-${n}`)
        if (plant === "dir") fs.mkdirSync(dir, { mode: 0o777 })
        else fs.symlinkSync(target, dir)
        const error = yield* Effect.flip(open({ dir }))
        expect(error._tag).toBe("LaunchFailed")
        counts.refused++
      }
      expect(fs.readdirSync(target)).toEqual([])
    })
  )
})

describe("security: a job cannot make the parent allocate without bound", () => {
  it.scopedLive("a frame claiming 4 GiB (or 64 MiB) after the hello: msg_too_big, payload skipped, connection kept, nothing near the claim retained", () =>
    Effect.gen(function* () {
      const maxFrameBytes = 1 << 20
      const a = yield* open({ maxFrameBytes })
      const job = yield* connect(a.info.socketPath)
      job.send({ kind: "hello", version: 1, jobId: "job-a", token: "token-a-0123456789" })
      yield* a.awaitConnected
      yield* until("hello_ok", () => job.frames().length === 1)
      // the 64 MiB claim is sent whole, then a request whose reply proves every byte before it was read
      // (it catches a receiver that buffers the payload; one that allocated the claim and freed it at the
      // frame's end would pass it); the 4 GiB claim is sent last, only 64 MiB of it, and measured while the
      // connection is still inside the skip (it catches a receiver that allocates the claim)
      for (const [id, claim] of [[7, 64 * (1 << 20)], [8, 0xffffffff]] as const) {
        counts.cases++
        counts.faults++
        const before = yield* Effect.promise(retainedMemory)
        yield* Effect.promise(() => sendHostileFrame(job.socket, id, claim))
        yield* until(`msg_too_big for ${id}`, () => job.frames().some((f) => f.header.id === id && f.header.rc === "msg_too_big"))
        if (claim !== 0xffffffff) {
          job.send({ kind: "request", id: 100 + id, channel: "c", topic: "t", enc: "none" })
          yield* until(`the reply after ${id}`, () => job.frames().some((f) => f.header.id === 100 + id))
        } else {
          yield* until("the job's writes to drain", () => job.socket.writableLength === 0)
        }
        const growth = (yield* Effect.promise(retainedMemory)).arrayBuffers - before.arrayBuffers
        if (growth >= RETAINED_LIMIT) counts.leaks++
        expect(growth, `the parent retained ${growth} bytes after a frame claiming ${claim}`).toBeLessThan(RETAINED_LIMIT)
      }
      expect(job.closed).toBe(false)
      expect(yield* a.isConnected).toBe(true)
    }).pipe(quiet)
  , 60_000)

  it.live("the retained-memory check catches a receiver that allocates the claimed length or buffers the payload", () =>
    Effect.promise(async () => {
      for (const kind of ["allocates-claimed", "buffers-everything"] as const) {
        const socketPath = path.join(base, `bad-${kind}-${++n}.sock`)
        const receiver = badReceiver(kind, socketPath)
        await receiver.listen()
        const socket = await new Promise<net.Socket>((resolve) => {
          const s = net.connect(socketPath, () => resolve(s))
        })
        const before = await retainedMemory()
        // a 256 MiB claim (not 4 GiB: a host without memory overcommit would refuse the bad receiver's allocation)
        await sendHostileFrame(socket, 9, 256 * (1 << 20), HOSTILE_BYTES)
        const deadline = Date.now() + 10_000
        while (receiver.received() < HOSTILE_BYTES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
        const growth = (await retainedMemory()).arrayBuffers - before.arrayBuffers
        socket.destroy()
        await receiver.close()
        expect(growth, `a receiver that ${kind}`).toBeGreaterThanOrEqual(RETAINED_LIMIT)
      }
    })
  , 60_000)

  it.scopedLive("a flood of requests that never reads its replies is held back (request cap + backpressure), then all are answered", () =>
    Effect.gen(function* () {
      const N = 20_000
      counts.cases++
      counts.faults += N
      const gate = yield* Deferred.make<void>()
      const a = yield* open({ onRequest: () => Option.some(Effect.as(Deferred.await(gate), "done")) })
      const job = yield* connect(a.info.socketPath)
      job.send({ kind: "hello", version: 1, jobId: "job-a", token: "token-a-0123456789" })
      yield* a.awaitConnected
      yield* until("hello_ok", () => job.frames().length === 1)
      job.socket.pause()
      const flood = Buffer.concat(
        Array.from({ length: N }, (_, i) => encodeFrameBuffer({ kind: "request", id: i + 1, channel: "c", topic: "t", enc: "bytes" }, Buffer.alloc(100)))
      )
      const before = (yield* Effect.promise(retainedMemory)).heapUsed
      job.socket.write(flood)
      // the parent stops reading: part of the flood stays queued on the job's side.
      // Retained heap (after a forced collection) is read over a window while the flood is held back.
      let peak = 0
      const deadline = Date.now() + 2000
      while (Date.now() < deadline) {
        peak = Math.max(peak, (yield* Effect.promise(retainedMemory)).heapUsed - before)
        yield* Effect.sleep("50 millis")
      }
      expect(job.socket.writableLength).toBeGreaterThan(0)
      // unbounded queuing costs ~5 KiB of heap per refused request (~100 MB here)
      if (peak > 32 * 1024 * 1024) counts.leaks++
      expect(peak).toBeLessThan(32 * 1024 * 1024)
      // once the job reads, every request gets its answer: ok for 64, service_unavailable for the rest
      yield* Deferred.succeed(gate, undefined)
      job.socket.resume()
      yield* until("all replies", () => job.frames().length === N + 1, 20_000)
      const replies = job.frames().slice(1)
      expect(new Set(replies.map((f) => f.header.id)).size).toBe(N)
      expect(replies.filter((f) => f.header.rc === "ok").length).toBeGreaterThanOrEqual(64)
      expect(replies.every((f) => f.header.rc === "ok" || f.header.rc === "service_unavailable")).toBe(true)
      expect(job.closed).toBe(false)
    }).pipe(quiet)
  , 60_000)

  it.scopedLive("idle connections that never say hello: at most MAX_PENDING_HELLOS are held, the rest closed at once; the job still gets in", () =>
    Effect.gen(function* () {
      const a = yield* open({ helloTimeout: "30 seconds" })
      const idle = yield* Effect.forEach(Array.from({ length: 100 }), () => connect(a.info.socketPath))
      counts.cases++
      counts.faults += idle.length
      yield* until("all but the cap to be closed", () => idle.filter((p) => p.closed).length === idle.length - MAX_PENDING_HELLOS)
      // the held ones free their slots when they go; the job connects
      for (const p of idle) p.socket.destroy()
      yield* until("the held ones to be gone", () => idle.every((p) => p.closed))
      const job = yield* Effect.retry(
        Effect.gen(function* () {
          const peer = yield* connect(a.info.socketPath)
          peer.send({ kind: "hello", version: 1, jobId: "job-a", token: "token-a-0123456789" })
          yield* until("hello_ok or close", () => peer.frames().length === 1 || peer.closed)
          if (peer.closed) return yield* Effect.fail("closed")
          return peer
        }),
        { times: 50 }
      )
      expect(job.frames()[0]!.header.kind).toBe("hello_ok")
      expect(yield* a.isConnected).toBe(true)
      counts.refused += idle.length - MAX_PENDING_HELLOS
    }).pipe(quiet)
  )

  it.scopedLive("slow-loris: hellos dribbled byte by byte are cut off at the hello timeout, never accepted", () =>
    Effect.gen(function* () {
      const a = yield* open({ helloTimeout: "300 millis" })
      const hello = encodeFrameBuffer({ kind: "hello", version: 1, jobId: "job-a", token: "token-a-0123456789" })
      const peers = yield* Effect.forEach(Array.from({ length: MAX_PENDING_HELLOS }), () => connect(a.info.socketPath))
      counts.cases += peers.length
      counts.faults += peers.length
      let sent = 0
      const writer = setInterval(() => {
        if (sent < hello.length) for (const p of peers) if (!p.closed) p.socket.write(hello.subarray(sent, sent + 1))
        sent++
      }, 30)
      yield* until("every dribbler to be closed", () => peers.every((p) => p.closed)).pipe(Effect.ensuring(Effect.sync(() => clearInterval(writer))))
      // each was cut off before it finished its (valid) hello
      expect(sent).toBeLessThan(hello.length)
      expect(peers.every((p) => p.frames().length === 0)).toBe(true)
      expect(yield* a.isConnected).toBe(false)
      counts.refused += peers.length
      // the timed-out ones no longer count against the cap: the job still gets in
      const good = yield* connect(a.info.socketPath)
      good.socket.write(hello)
      yield* until("the job's hello_ok", () => good.frames().some((f) => f.header.kind === "hello_ok"))
    }).pipe(quiet)
  )
})
