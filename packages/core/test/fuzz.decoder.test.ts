/**
 * Fuzzing the pure frame decoder (fast-check): arbitrary and adversarial byte
 * streams, split at arbitrary points. The decoder never throws, never buffers
 * more than one frame of at most `maxFrame` bytes (plus a header of a skipped
 * frame), reports at most one error and nothing after it, and decodes the same
 * events whatever the split. `FLEXEC_FUZZ_LONG=1` multiplies the counts by 50.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { Buffer } from "node:buffer"
import {
  type DecodeEvent,
  encodeFrameBuffer,
  FrameDecoder,
  type FrameHeader,
  MAX_HEADER_BYTES
} from "../src/protocol/Frame.js"
import { retainedMemorySync } from "./support/memory.js"

const LONG = process.env.FLEXEC_FUZZ_LONG === "1"
const scale = (n: number) => (LONG ? n * 50 : n)

const counts = { cases: 0, bytes: 0, errors: 0, oversize: 0, frames: 0, leaks: 0 }
afterAll(() => {
  console.log(
    `fuzz: decoder cases=${counts.cases} bytes=${counts.bytes} frames=${counts.frames} oversize=${counts.oversize} ` +
      `malformed=${counts.errors} leaks=${counts.leaks}${LONG ? " (long)" : ""}`
  )
})

/** Cuts `bytes` at the given points (taken modulo its length). */
const split = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  if (bytes.length === 0) return [bytes]
  const points = [...new Set(cuts.map((c) => c % bytes.length))].sort((a, b) => a - b)
  const out: Array<Uint8Array> = []
  let from = 0
  for (const p of points) {
    out.push(bytes.subarray(from, p))
    from = p
  }
  out.push(bytes.subarray(from))
  return out
}

/** Feeds the chunks and checks the decoder's invariants after every chunk; returns the events. */
const feed = (chunks: ReadonlyArray<Uint8Array>, maxFrame: number): Array<DecodeEvent> => {
  const decoder = new FrameDecoder(maxFrame)
  const events: Array<DecodeEvent> = []
  let errorSeen = false
  for (const chunk of chunks) {
    counts.bytes += chunk.byteLength
    decoder.push(chunk, (event) => {
      // nothing after an error (plain checks: expect() per event is too slow for 100k cases)
      if (errorSeen) throw new Error("an event after the error")
      if (event.type === "error") errorSeen = true
      if (event.type === "frame" && event.payload.byteLength + 4 > maxFrame) throw new Error("a frame over maxFrame")
      if (event.type === "oversize" && event.size <= maxFrame) throw new Error("oversize within maxFrame")
      events.push(event)
    })
    // one partial frame of at most maxFrame, or the header of a skipped one, plus the 8-byte prefix
    const bound = Math.max(maxFrame, MAX_HEADER_BYTES) + 8
    if (decoder.buffered > bound) {
      counts.leaks++
      throw new Error(`buffered ${decoder.buffered} > ${bound}`)
    }
  }
  for (const e of events) {
    if (e.type === "error") counts.errors++
    else if (e.type === "oversize") counts.oversize++
    else counts.frames++
  }
  return events
}

/** Events in a comparable form. */
const plain = (events: ReadonlyArray<DecodeEvent>) =>
  events.map((e) =>
    e.type === "frame"
      ? { t: "frame", h: JSON.stringify(e.header), p: Buffer.from(e.payload).toString("hex") }
      : e.type === "oversize"
        ? { t: "oversize", h: JSON.stringify(e.header), s: e.size }
        : { t: "error", r: e.reason }
  )

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0, 0)
  return b
}

const headerArb: fc.Arbitrary<FrameHeader> = fc.oneof(
  fc.record({ kind: fc.constant("hello" as const), version: fc.integer({ min: 0, max: 2 }), jobId: fc.string(), token: fc.string() }),
  fc.record({
    kind: fc.constantFrom("request" as const, "reply" as const, "notify" as const),
    id: fc.nat(),
    channel: fc.string({ maxLength: 10 }),
    topic: fc.string({ maxLength: 10 }),
    enc: fc.constantFrom("json" as const, "bytes" as const, "none" as const)
  })
)

/** A well-formed frame (possibly over `maxFrame`). */
const frameArb = fc.tuple(headerArb, fc.uint8Array({ maxLength: 600 })).map(([h, p]) => encodeFrameBuffer(h, p))

/** Adversarial pieces: prefixes with hostile lengths, headers that are not JSON objects, raw noise. */
const pieceArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: frameArb },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.oneof(fc.constantFrom(0, 1, 3, 4, 5, 0x7fffffff, 0xffffffff, MAX_HEADER_BYTES + 4, MAX_HEADER_BYTES + 5), fc.nat()),
        fc.oneof(fc.constantFrom(0, 1, MAX_HEADER_BYTES, MAX_HEADER_BYTES + 1, 0xffffffff), fc.nat({ max: 2000 })),
        fc.uint8Array({ maxLength: 64 })
      )
      .map(([len, hlen, rest]) => Buffer.concat([u32(len), u32(hlen), rest]))
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.oneof(fc.json(), fc.string()), fc.uint8Array({ maxLength: 32 }))
      .map(([text, payload]) => {
        const h = Buffer.from(text, "utf8")
        return Buffer.concat([u32(4 + h.length + payload.length), u32(h.length), h, payload])
      })
  }
)

const streamArb = fc.array(pieceArb, { minLength: 1, maxLength: 6 }).map((pieces) => Buffer.concat(pieces))
const maxFrameArb = fc.oneof(fc.constantFrom(12, 64, 4 + MAX_HEADER_BYTES), fc.integer({ min: 8, max: 4096 }))

describe("fuzz: frame decoder", () => {
  it("arbitrary byte streams split at arbitrary points: no throw, bounded buffer, one error at most, split-invariant", () => {
    fc.assert(
      fc.property(streamArb, fc.array(fc.nat(), { maxLength: 12 }), maxFrameArb, (bytes, cuts, maxFrame) => {
        counts.cases++
        const whole = feed([bytes], maxFrame)
        const pieces = feed(split(bytes, cuts), maxFrame)
        const bytewise = cuts.length === 0 && bytes.length <= 128 ? feed([...bytes].map((b) => Uint8Array.of(b)), maxFrame) : undefined
        expect(plain(pieces)).toEqual(plain(whole))
        if (bytewise) expect(plain(bytewise)).toEqual(plain(whole))
      }),
      { numRuns: scale(50_000) }
    )
  }, 120_000 * (LONG ? 50 : 1))

  it("pure noise: never throws and never buffers beyond the bound", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.array(fc.nat(), { maxLength: 8 }), maxFrameArb, (bytes, cuts, maxFrame) => {
        counts.cases++
        feed(split(bytes, cuts), maxFrame)
      }),
      { numRuns: scale(40_000) }
    )
  }, 120_000 * (LONG ? 50 : 1))

  it("well-formed frames split anywhere decode to exactly what was sent", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(headerArb, fc.uint8Array({ maxLength: 300 })), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (list, cuts) => {
          counts.cases++
          const bytes = Buffer.concat(list.map(([h, p]) => encodeFrameBuffer(h, p)))
          const events = feed(split(bytes, cuts), 1 << 20)
          expect(events.map((e) => e.type)).toEqual(list.map(() => "frame"))
          events.forEach((e, i) => {
            if (e.type !== "frame") return
            expect(JSON.stringify(e.header)).toBe(JSON.stringify(list[i]![0]))
            expect(Buffer.from(e.payload).equals(Buffer.from(list[i]![1]))).toBe(true)
          })
        }
      ),
      { numRuns: scale(10_000) }
    )
  }, 120_000 * (LONG ? 50 : 1))

  it("a hostile length does not make it allocate beyond maxFrame (retained arrayBuffers measured after a forced collection)", () => {
    const maxFrame = 1 << 20
    // 64 MiB of payload streamed as views of one 1 MiB buffer: no new allocation by the test
    const block = Buffer.alloc(1 << 20, 0x41)
    const header = Buffer.from(JSON.stringify({ kind: "request", id: 1, channel: "c", topic: "t", enc: "bytes" }))
    const claims = [0xffffffff, 0x80000000, 64 * (1 << 20), maxFrame + 1]
    let worst = 0
    for (const claim of claims) {
      counts.cases++
      const prefix = Buffer.concat([u32(claim), u32(header.length), header])
      const decoder = new FrameDecoder(maxFrame)
      const before = retainedMemorySync().arrayBuffers
      let oversize = 0
      decoder.push(prefix, (e) => {
        if (e.type === "oversize") oversize++
      })
      for (let sent = 0; sent < Math.min(claim, 64 * (1 << 20)); sent += block.length) {
        decoder.push(block, () => {})
        worst = Math.max(worst, decoder.buffered)
      }
      const grown = retainedMemorySync().arrayBuffers - before
      counts.bytes += 64 * (1 << 20)
      expect(oversize).toBe(1)
      // one header buffer at most; nothing near the claimed size
      if (grown > maxFrame) counts.leaks++
      expect(grown).toBeLessThan(maxFrame)
    }
    expect(worst).toBeLessThanOrEqual(header.length + 8)
    // exactly maxFrame: one buffer of maxFrame, no more
    const decoder = new FrameDecoder(maxFrame)
    const before = retainedMemorySync().arrayBuffers
    decoder.push(Buffer.concat([u32(maxFrame), u32(header.length), header]), () => {})
    decoder.push(block.subarray(0, 1000), () => {})
    const grown = retainedMemorySync().arrayBuffers - before
    expect(decoder.buffered).toBe(4 + header.length + 1000)
    expect(grown).toBeLessThanOrEqual(maxFrame + 64 * 1024)
    counts.cases++
  })
})
