import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as fc from "fast-check"
import { Buffer } from "node:buffer"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import {
  decodePayload,
  DEFAULT_MAX_FRAME_BYTES,
  type DecodeEvent,
  encodedFrameLength,
  encodeFrame,
  encodeFrameBuffer,
  encodePayload,
  FrameDecoder,
  type FrameHeader,
  MAX_HEADER_BYTES,
  SMALL_PAYLOAD_BYTES,
  writeFrameChunks
} from "../src/protocol/Frame.js"
import { duplexPair } from "../src/internal/duplexPair.js"
import * as Message from "../src/Message.js"
import * as Frame from "../src/protocol/MessageFrame.js"

const decodeAll = (chunks: ReadonlyArray<Uint8Array>, maxFrame?: number): Array<DecodeEvent> => {
  const decoder = new FrameDecoder(maxFrame)
  const events: Array<DecodeEvent> = []
  for (const chunk of chunks) decoder.push(chunk, (event) => events.push(event))
  return events
}

/** Events in a comparable form (payloads as arrays of numbers). */
const plain = (events: ReadonlyArray<DecodeEvent>) =>
  events.map((event) =>
    event.type === "frame" ? { type: "frame", header: { ...event.header }, payload: [...event.payload] } : event.type === "oversize" ? { ...event, header: { ...event.header } } : event
  )

const frames: Array<[FrameHeader, Uint8Array | undefined]> = [
  [{ kind: "hello", version: 1, jobId: "job-1", token: "t" }, undefined],
  [{ kind: "request", id: 1, channel: "c", topic: "t", enc: "json" }, Buffer.from('{"a":[1,2,"é"]}')],
  [{ kind: "reply", id: 1, rc: "ok", enc: "bytes" }, new Uint8Array([0, 1, 2, 255, 254])],
  [{ kind: "notify", channel: "admin", topic: "x", enc: "none", headers: { h: 1, s: "v", b: true } }, undefined]
]

describe("codec", () => {
  it("encodes length, header length, header and payload, and does not copy a large payload", () => {
    const payload = new Uint8Array(SMALL_PAYLOAD_BYTES + 1).fill(9)
    const chunks = encodeFrame({ kind: "reply", id: 3, rc: "ok", enc: "bytes" }, payload)
    expect(chunks).toHaveLength(2)
    expect(chunks[1]).toBe(payload)
    const head = Buffer.from(chunks[0]!)
    const header = '{"kind":"reply","id":3,"rc":"ok","enc":"bytes"}'
    expect(head.readUInt32BE(0)).toBe(4 + header.length + payload.byteLength)
    expect(encodedFrameLength(chunks)).toBe(4 + header.length + payload.byteLength)
    expect(head.readUInt32BE(4)).toBe(header.length)
    expect(head.subarray(8).toString()).toBe(header)
  })

  it("encodes a small frame as one buffer (one socket write), byte-identical to the chunked form", () => {
    const header = { kind: "reply" as const, id: 3, rc: "ok", enc: "bytes" as const }
    for (const size of [1, 64, SMALL_PAYLOAD_BYTES]) {
      const payload = new Uint8Array(size).map((_, i) => i % 251)
      const chunks = encodeFrame(header, payload)
      expect(chunks).toHaveLength(1)
      const text = JSON.stringify(header)
      const expected = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), Buffer.from(text), payload])
      expected.writeUInt32BE(4 + text.length + size, 0)
      expected.writeUInt32BE(text.length, 4)
      expect(Buffer.from(chunks[0]!).equals(expected)).toBe(true)
      expect(encodedFrameLength(chunks)).toBe(4 + text.length + size)
    }
  })

  it.live("sends a large frame to a real unix socket as one writev, and the peer reads it whole and byte-exact", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fx-wv-"))
      const sock = path.join(dir, "s.sock")
      const received: Array<Buffer> = []
      let want = Number.POSITIVE_INFINITY
      let arrived: (() => void) | undefined
      const server = net.createServer((peer) =>
        peer.on("data", (chunk: Buffer) => {
          received.push(chunk)
          if (received.reduce((n, b) => n + b.length, 0) >= want) arrived?.()
        })
      )
      yield* Effect.async<void>((resume) => void server.listen(sock, () => resume(Effect.void)))
      const client = net.connect(sock)
      yield* Effect.async<void>((resume) => void client.once("connect", () => resume(Effect.void)))
      // what the socket is asked to do: one vectored write of both chunks, or separate writes
      const calls: Array<string> = []
      const socket = client as unknown as { _writev: (...a: Array<unknown>) => unknown; _write: (...a: Array<unknown>) => unknown }
      const writev = socket._writev.bind(client)
      const write = socket._write.bind(client)
      socket._writev = (chunks: unknown, cb: unknown) => (calls.push(`writev ${(chunks as Array<unknown>).length}`), writev(chunks, cb))
      socket._write = (chunk: unknown, enc: unknown, cb: unknown) => (calls.push("write"), write(chunk, enc, cb))
      const payload = new Uint8Array(64 * 1024).map((_, i) => i % 253)
      const chunks = encodeFrame({ kind: "reply", id: 9, rc: "ok", enc: "bytes" }, payload)
      expect(chunks).toHaveLength(2)
      expect(writeFrameChunks(client, chunks)).toBe(true)
      expect(calls).toEqual(["writev 2"])
      // waits for the peer's data events to add up to the frame (bounded: a lost byte fails here)
      want = encodedFrameLength(chunks) + 4
      yield* Effect.async<void>((resume) => {
        arrived = () => resume(Effect.void)
        if (received.reduce((n, b) => n + b.length, 0) >= want) arrived()
      }).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error(`the peer got ${received.reduce((n, b) => n + b.length, 0)} of ${want} bytes`) }))
      expect(Buffer.concat(received).equals(Buffer.concat(chunks))).toBe(true)
      // a small frame is one buffer, written as it is
      calls.length = 0
      writeFrameChunks(client, encodeFrame({ kind: "reply", id: 10, rc: "ok", enc: "none" }))
      expect(calls).toEqual(["write"])
      client.destroy()
      yield* Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      fs.rmSync(dir, { recursive: true, force: true })
    })
  )

  it("refuses to encode a header over 64 KiB", () => {
    expect(() => encodeFrame({ kind: "notify", channel: "x".repeat(MAX_HEADER_BYTES), topic: "t" })).toThrow(RangeError)
  })

  it("decodes frames merged into one chunk", () => {
    const all = Buffer.concat(frames.map(([h, p]) => encodeFrameBuffer(h, p)))
    const events = decodeAll([all])
    expect(events.map((e) => e.type)).toEqual(["frame", "frame", "frame", "frame"])
    expect(plain(events)).toEqual(frames.map(([header, payload]) => ({ type: "frame", header, payload: [...(payload ?? [])] })))
  })

  it("decodes the same events whatever byte boundary the stream is split at", () => {
    const all = Buffer.concat(frames.map(([h, p]) => encodeFrameBuffer(h, p)))
    const expected = plain(decodeAll([all]))
    for (let i = 0; i <= all.length; i++) {
      expect(plain(decodeAll([all.subarray(0, i), all.subarray(i)]))).toEqual(expected)
    }
    // and one byte at a time
    expect(plain(decodeAll([...all].map((b) => Uint8Array.of(b))))).toEqual(expected)
  })

  it("decodes random frames split at random points (property)", () => {
    const header = fc.record({
      kind: fc.constantFrom("request" as const, "reply" as const, "notify" as const),
      id: fc.nat(),
      topic: fc.string()
    })
    fc.assert(
      fc.property(fc.array(fc.tuple(header, fc.uint8Array({ maxLength: 300 })), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 8 }), (list, cuts) => {
        const all = Buffer.concat(list.map(([h, p]) => encodeFrameBuffer(h, p)))
        const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b)
        const chunks: Array<Uint8Array> = []
        let last = 0
        for (const point of points) {
          chunks.push(all.subarray(last, point))
          last = point
        }
        chunks.push(all.subarray(last))
        const events = decodeAll(chunks)
        expect(plain(events)).toEqual(list.map(([h, p]) => ({ type: "frame", header: h, payload: [...p] })))
      })
    )
  })

  it("skips an oversize frame's payload without buffering it and goes on with the next frame", () => {
    const decoder = new FrameDecoder(1000)
    const events: Array<DecodeEvent> = []
    const big = encodeFrameBuffer({ kind: "request", id: 7, channel: "c", topic: "t", enc: "bytes" }, new Uint8Array(100_000).fill(1))
    const next = encodeFrameBuffer({ kind: "request", id: 8, channel: "c", topic: "t", enc: "none" })
    const all = Buffer.concat([big, next])
    let maxBuffered = 0
    for (let i = 0; i < all.length; i += 997) {
      decoder.push(all.subarray(i, i + 997), (event) => events.push(event))
      maxBuffered = Math.max(maxBuffered, decoder.buffered)
    }
    expect(maxBuffered).toBeLessThan(1000)
    expect(events).toHaveLength(2)
    expect(events[0]).toMatchObject({ type: "oversize", size: big.length - 4, header: { kind: "request", id: 7 } })
    expect(events[1]).toMatchObject({ type: "frame", header: { kind: "request", id: 8 } })
  })

  it("applies a maxFrame raised from inside emit to the rest of the same chunk", () => {
    const decoder = new FrameDecoder(100)
    const events: Array<DecodeEvent> = []
    const all = Buffer.concat([
      encodeFrameBuffer({ kind: "hello", version: 1 }),
      encodeFrameBuffer({ kind: "notify", channel: "c", topic: "t", enc: "bytes" }, new Uint8Array(500))
    ])
    decoder.push(all, (event) => {
      events.push(event)
      decoder.maxFrame = 10_000
    })
    expect(events.map((e) => e.type)).toEqual(["frame", "frame"])
  })

  const malformed: Array<[string, Buffer, RegExp]> = (() => {
    const raw = (length: number, headerLength: number, rest: Buffer = Buffer.alloc(0)) => {
      const b = Buffer.alloc(8)
      b.writeUInt32BE(length, 0)
      b.writeUInt32BE(headerLength, 4)
      return Buffer.concat([b, rest])
    }
    const withHeader = (text: string) => raw(4 + Buffer.byteLength(text), Buffer.byteLength(text), Buffer.from(text))
    return [
      ["header not JSON", withHeader("{nope"), /not valid JSON/],
      ["header not an object", withHeader("[1]"), /not a JSON object/],
      ["unknown kind", withHeader('{"kind":"bye"}'), /unknown kind/],
      ["unknown enc", withHeader('{"kind":"notify","enc":"b64"}'), /unknown enc/],
      ["id not an integer", withHeader('{"kind":"reply","id":1.5}'), /id is not an integer/],
      ["topic not a string", withHeader('{"kind":"notify","topic":3}'), /topic is not a string/],
      ["user header not primitive", withHeader('{"kind":"notify","headers":{"a":{}}}'), /user header a/],
      ["length under 4", raw(3, 0), /shorter/],
      ["empty header", raw(4, 0), /empty/],
      ["header over 64 KiB", raw(200_000, MAX_HEADER_BYTES + 1), /exceeds 65536/],
      ["header longer than the frame", raw(10, 7), /exceeds the frame length/]
    ]
  })()

  for (const [name, bytes, reason] of malformed) {
    it(`reports a malformed frame once and ignores what follows: ${name}`, () => {
      const events = decodeAll([bytes, encodeFrameBuffer({ kind: "notify", channel: "c", topic: "t" })])
      expect(events).toHaveLength(1)
      expect(events[0]!.type).toBe("error")
      expect((events[0] as { reason: string }).reason).toMatch(reason)
    })
  }

  it("gives user headers a null prototype, keeping __proto__ as a plain key", () => {
    const events = decodeAll([encodeFrameBuffer({ kind: "notify", headers: JSON.parse('{"__proto__":"x","a":1}') })])
    const headers = (events[0] as { header: FrameHeader }).header.headers!
    expect(Object.getPrototypeOf(headers)).toBeNull()
    expect(headers.a).toBe(1)
    expect(Object.keys(headers)).toContain("__proto__")
  })

  it("encodes payloads as bytes, JSON or none and decodes them back", () => {
    expect(encodePayload(undefined)).toEqual({ enc: "none", bytes: new Uint8Array(0) })
    const bytes = new Uint8Array([1, 2])
    expect(encodePayload(bytes).bytes).toBe(bytes)
    expect(encodePayload({ a: 1 }).enc).toBe("json")
    expect(decodePayload("json", Buffer.from('{"a":1}'))).toEqual({ a: 1 })
    expect(decodePayload("none", new Uint8Array(0))).toBeUndefined()
    expect(() => decodePayload("none", new Uint8Array(1))).toThrow()
    expect(() => decodePayload("json", Buffer.from("{"))).toThrow()
    expect(DEFAULT_MAX_FRAME_BYTES).toBe(128 * 1024 * 1024)
  })
})

describe("Frame", () => {
  it.effect("encodes a message and decodes it back with null-prototype headers and plain bytes", () =>
    Effect.gen(function* () {
      const message = Message.make(new Uint8Array([1, 2, 3]), { trace: "x", n: 2 })
      const encoded = yield* Frame.encodeMessage({ kind: "request", id: 1, channel: "c", topic: "t" }, message, 1 << 20)
      expect(encoded.header).toMatchObject({ enc: "bytes", headers: { trace: "x", n: 2 } })
      const events = decodeAll(encoded.chunks)
      const event = events[0] as Extract<DecodeEvent, { type: "frame" }>
      expect(event.header.kind).toBe("request")
      const decoded = Either.getOrThrow(Frame.decodeMessage(event.header, event.payload))
      expect(Object.getPrototypeOf(decoded.headers)).toBeNull()
      expect(decoded.payload).toBeInstanceOf(Uint8Array)
      expect(Buffer.isBuffer(decoded.payload)).toBe(false)
      expect([...(decoded.payload as Uint8Array)]).toEqual([1, 2, 3])
      const none = Either.getOrThrow(Frame.decodeMessage({ kind: "reply" }, new Uint8Array(0)))
      expect(none.payload).toBeUndefined()
      expect(Object.getPrototypeOf(none.headers)).toBeNull()
    })
  )

  it.effect("refuses a message whose frame exceeds the limit with MessageTooBig{size,max}", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Frame.encodeMessage({ kind: "request", id: 1, channel: "c", topic: "t" }, Message.make(new Uint8Array(1000)), 500))
      expect(error._tag).toBe("MessageTooBig")
      expect(error).toMatchObject({ max: 500 })
      expect((error as { size: number }).size).toBeGreaterThan(1000)
      const header = yield* Effect.flip(Frame.encodeMessage({ kind: "request", id: 1, channel: "c", topic: "x".repeat(70_000) }, Message.make(undefined), 1 << 30))
      expect(header).toMatchObject({ _tag: "MessageTooBig", max: MAX_HEADER_BYTES })
    })
  )

  it.effect("refuses a Uint8Array nested in JSON (PayloadNotSendable), and non-JSON values", () =>
    Effect.gen(function* () {
      const nested = yield* Effect.flip(
        Frame.encodeMessage({ kind: "request", id: 1, channel: "c", topic: "t" }, Message.make({ data: new Uint8Array(1) } as never), 1 << 20)
      )
      expect(nested._tag).toBe("PayloadNotSendable")
      expect((nested as Frame.PayloadNotSendable).reason).toMatch(/payload\.data is binary/)
      const header = yield* Effect.flip(
        Frame.encodeMessage({ kind: "request", id: 1, channel: "c", topic: "t" }, Message.make(1, { n: NaN }), 1 << 20)
      )
      expect(header).toMatchObject({ _tag: "PayloadNotSendable", reason: expect.stringMatching(/header "n"/) })
      const infinite = yield* Effect.flip(Frame.encodeMessage({ kind: "request", id: 1, channel: "c", topic: "t" }, Message.make(Infinity), 1 << 20))
      expect(infinite._tag).toBe("PayloadNotSendable")
    })
  )

  it("reports a payload that does not match its encoding as MalformedFrame", () => {
    const result = Frame.decodeMessage({ kind: "reply", enc: "json" }, Buffer.from("{"))
    expect(Either.isLeft(result) && result.left._tag).toBe("MalformedFrame")
  })

  it("gives error details as text", () => {
    expect(Frame.payloadText({ kind: "reply", enc: "json" }, Buffer.from('"boom"'))).toBe("boom")
    expect(Frame.payloadText({ kind: "reply", enc: "json" }, Buffer.from('{"a":1}'))).toBe('{"a":1}')
    expect(Frame.payloadText({ kind: "reply", enc: "bytes" }, Buffer.from("raw"))).toBe("raw")
    expect(Frame.payloadText({ kind: "reply", enc: "none" }, new Uint8Array(0))).toBeUndefined()
  })
})

describe("duplexPair", () => {
  it("carries bytes both ways, in order", async () => {
    const [a, b] = duplexPair()
    const got: Array<Buffer> = []
    b.on("data", (chunk: Buffer) => got.push(chunk))
    const echoed = new Promise<Buffer>((resolve) => a.once("data", resolve))
    a.write(Uint8Array.of(1, 2))
    a.write(Buffer.from([3]))
    b.write(Buffer.from("pong"))
    expect((await echoed).toString()).toBe("pong")
    await new Promise<void>((resolve) => setImmediate(resolve))
    expect([...Buffer.concat(got)]).toEqual([1, 2, 3])
  })

  it("holds a writer back until the reader reads (backpressure)", async () => {
    const [a, b] = duplexPair()
    const chunk = Buffer.alloc(64 * 1024)
    let writes = 0
    while (a.write(chunk)) writes++
    expect(writes).toBeLessThan(10)
    const drained = new Promise<void>((resolve) => a.once("drain", resolve))
    let read = 0
    b.on("data", (c: Buffer) => {
      read += c.length
    })
    await drained
    expect(read).toBeGreaterThan(0)
  })

  it("ends the other side on end() and on destroy(), so both close", async () => {
    const [a, b] = duplexPair()
    b.resume()
    const bClosed = new Promise<void>((resolve) => b.once("close", resolve))
    a.resume()
    const aClosed = new Promise<void>((resolve) => a.once("close", resolve))
    a.end()
    await Promise.all([aClosed, bClosed])

    // destroy(): the peer reads what was sent, then its end
    const [c, d] = duplexPair()
    c.write(Buffer.from("last words"))
    c.destroy()
    let text = ""
    d.on("data", (chunk: Buffer) => {
      text += chunk.toString()
    })
    await new Promise<void>((resolve) => d.once("end", resolve))
    expect(text).toBe("last words")

    // a peer that writes (without reading) after the other end is gone gets EPIPE
    const [e, f] = duplexPair()
    const fError = new Promise<NodeJS.ErrnoException>((resolve) => f.once("error", resolve))
    const fClosed = new Promise<void>((resolve) => f.once("close", resolve))
    e.destroy()
    f.write(Buffer.from("late"))
    expect((await fError).code).toBe("EPIPE")
    await fClosed
  })
})
