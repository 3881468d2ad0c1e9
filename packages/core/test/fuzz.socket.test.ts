/**
 * Fuzzing the hello handshake and the channel over real unix sockets
 * (fast-check): hostile connections send arbitrary or adversarial byte streams,
 * split into separate writes, to a live job channel while the real job is
 * connected. Each is closed by the parent (no hang, no crash), the parent's
 * buffers stay bounded (arrayBuffers measured), and the job's own connection
 * keeps working: only the offending connection is closed.
 * `FLEXEC_FUZZ_LONG=1` multiplies the counts by 50.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Logger, LogLevel, Option, Scope } from "effect"
import fc from "fast-check"
import { Buffer } from "node:buffer"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { type DecodeEvent, encodeFrameBuffer, FrameDecoder, MAX_HEADER_BYTES } from "../src/protocol/Frame.js"
import * as Message from "../src/Message.js"
import { openJobChannel } from "../src/protocol/ChannelServer.js"
import type { JobChannel } from "../src/protocol/ChannelServer.js"
import { retainedMemory } from "./support/memory.js"

const LONG = process.env.FLEXEC_FUZZ_LONG === "1"
const RUNS = LONG ? 3_125 : 63
/** At most MAX_PENDING_HELLOS (16) connections may wait for their hello at once. */
const PER_RUN = 16
const JOB = "job-fz"
const TOKEN = "fuzz-token-0123456789"
const OTHER_TOKEN = "token-of-another-job"
const MAX_FRAME = 1 << 20

const base = fs.mkdtempSync(path.join(os.tmpdir(), "fxz-"))
const counts = { cases: 0, connections: 0, closedByParent: 0, roundTrips: 0, leaks: 0, peakGrowth: 0 }
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true })
  console.log(
    `fuzz: socket cases=${counts.cases} hostile-connections=${counts.connections} closed-by-parent=${counts.closedByParent} ` +
      `job-round-trips=${counts.roundTrips} peak-arrayBuffers-growth=${(counts.peakGrowth / 1024 / 1024).toFixed(1)}MiB leaks=${counts.leaks}${LONG ? " (long)" : ""}`
  )
})

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0, 0)
  return b
}

/** The real job: says hello, then echoes every request. */
const connectJob = (socketPath: string) =>
  new Promise<net.Socket>((resolve, reject) => {
    const decoder = new FrameDecoder()
    const socket = net.connect(socketPath)
    socket.on("error", reject)
    socket.on("connect", () => socket.write(encodeFrameBuffer({ kind: "hello", version: 1, jobId: JOB, token: TOKEN })))
    socket.on("data", (chunk: Buffer) =>
      decoder.push(chunk, (event: DecodeEvent) => {
        if (event.type !== "frame") return
        if (event.header.kind === "hello_ok") resolve(socket)
        if (event.header.kind === "request") {
          socket.write(encodeFrameBuffer({ kind: "reply", id: event.header.id!, rc: "ok", enc: event.header.enc! }, event.payload))
        }
      })
    )
  })

/** A hostile connection: writes `chunks` one write at a time, resolves true when the parent closes it. */
const hostile = (socketPath: string, chunks: ReadonlyArray<Uint8Array>, deadlineMs: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(socketPath)
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(false)
    }, deadlineMs)
    socket.on("error", () => {})
    socket.on("data", () => {})
    socket.on("close", () => {
      clearTimeout(timer)
      resolve(true)
    })
    socket.on("connect", () => {
      let i = 0
      const step = () => {
        if (i >= chunks.length || socket.destroyed) return
        socket.write(chunks[i++]!, () => setImmediate(step))
      }
      step()
    })
  })

const helloArb = fc
  .record({
    version: fc.constantFrom<unknown>(1, 0, 2, "1", null),
    jobId: fc.constantFrom<unknown>(JOB, "other-job", "", undefined, 7),
    token: fc.constantFrom<unknown>(TOKEN, OTHER_TOKEN, "", TOKEN + "x", TOKEN.slice(0, -1), undefined, 1),
    extra: fc.uint8Array({ maxLength: 8 })
  })
  .map(({ extra, jobId, token, version }) => {
    const header = Buffer.from(JSON.stringify({ kind: "hello", version, jobId, token }))
    // a correct hello here is a second hello while the job is connected: refused as well
    return Buffer.concat([u32(4 + header.length + extra.length), u32(header.length), header, extra])
  })

const pieceArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  helloArb,
  fc.uint8Array({ maxLength: 128 }),
  fc
    .tuple(
      fc.oneof(fc.constantFrom(0, 3, 0xffffffff, MAX_FRAME + 1, 4 + MAX_HEADER_BYTES + 1), fc.nat()),
      fc.oneof(fc.constantFrom(0, MAX_HEADER_BYTES + 1, 0xffffffff), fc.nat({ max: 200 })),
      fc.uint8Array({ maxLength: 64 })
    )
    .map(([len, hlen, rest]) => Buffer.concat([u32(len), u32(hlen), rest])),
  fc
    .tuple(fc.constantFrom("request", "reply", "notify", "hello_ok"), fc.uint8Array({ maxLength: 64 }))
    .map(([kind, payload]) => encodeFrameBuffer({ kind: kind as "request", id: 1, channel: "c", topic: "t", enc: "bytes" }, payload)),
  fc.oneof(fc.json(), fc.string()).map((text) => {
    const h = Buffer.from(text, "utf8")
    return Buffer.concat([u32(4 + h.length), u32(h.length), h])
  })
)

/** A stream cut into writes. */
const streamArb = fc
  .tuple(fc.array(pieceArb, { maxLength: 4 }), fc.array(fc.nat(), { maxLength: 6 }))
  .map(([pieces, cuts]) => {
    const bytes = Buffer.concat(pieces)
    if (bytes.length === 0) return [] as Array<Uint8Array>
    const points = [...new Set(cuts.map((c) => c % bytes.length))].sort((a, b) => a - b)
    const out: Array<Uint8Array> = []
    let from = 0
    for (const p of points) {
      if (p > from) out.push(bytes.subarray(from, p))
      from = p
    }
    out.push(bytes.subarray(from))
    return out
  })

describe("fuzz: hello handshake and channel over real sockets", () => {
  it("closes every hostile connection, stays bounded, and the job's connection keeps working", async () => {
    const scope = await Effect.runPromise(Scope.make())
    try {
      const channel: JobChannel = await Effect.runPromise(
        Scope.extend(
          openJobChannel({
            jobId: JOB,
            token: TOKEN,
            dir: path.join(base, "c"),
            helloTimeout: "150 millis",
            maxFrameBytes: MAX_FRAME,
            onRequest: () => Option.none()
          }),
          scope
        ).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      )
      const job = await connectJob(channel.info.socketPath)
      const baseline = (await retainedMemory()).arrayBuffers
      const roundTrip = async (n: number) => {
        const reply = await Effect.runPromise(
          channel.request({ channel: "c", topic: "t", message: Message.make({ n }), timeout: "5 seconds" })
        )
        expect(reply.payload).toEqual({ n })
        counts.roundTrips++
      }
      await fc.assert(
        fc.asyncProperty(fc.array(streamArb, { minLength: PER_RUN, maxLength: PER_RUN }), async (streams) => {
          counts.cases += streams.length
          counts.connections += streams.length
          const closed = await Promise.all(streams.map((chunks) => hostile(channel.info.socketPath, chunks, 5_000)))
          counts.closedByParent += closed.filter(Boolean).length
          expect(closed.every(Boolean)).toBe(true)
          // the job is still the one connection, and still answers
          expect(await Effect.runPromise(channel.isConnected)).toBe(true)
          await roundTrip(counts.cases)
          const growth = (await retainedMemory()).arrayBuffers - baseline
          counts.peakGrowth = Math.max(counts.peakGrowth, growth)
          // 16 connections, each at most a hello-sized frame (64 KiB) plus socket buffers
          if (growth > 64 * 1024 * 1024) counts.leaks++
          expect(growth).toBeLessThan(64 * 1024 * 1024)
        }),
        { numRuns: RUNS }
      )
      expect(job.destroyed).toBe(false)
      job.destroy()
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, LONG ? 3_600_000 : 60_000)
})
