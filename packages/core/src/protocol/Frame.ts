/**
 * Frame: the bytes of the wire protocol, the one codec shared by the parent
 * and the worker runtime (header type, encoder, incremental decoder, payload
 * bodies). It imports only `node:` built-ins (lint enforces it), so the worker
 * bundle stays free of Effect. The bottom of the protocol layer: it imports
 * nothing of ours.
 *
 * Frame: `u32 length (BE; bytes after this field) | u32 header length | header (UTF-8 JSON) | payload`.
 */
import { Buffer } from "node:buffer"

/** Protocol version spoken by this codec. */
export const PROTOCOL_VERSION = 1
/** Largest header accepted (bytes). */
export const MAX_HEADER_BYTES = 64 * 1024
/** Default largest frame (the `length` field's value), 128 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 128 * 1024 * 1024

/** Frame kinds. */
export type FrameKind = "hello" | "hello_ok" | "request" | "reply" | "notify"
/** Payload encodings. */
export type Encoding = "json" | "bytes" | "none"

/** A frame header. */
export interface FrameHeader {
  kind: FrameKind
  id?: number
  channel?: string
  topic?: string
  rc?: string
  enc?: Encoding
  headers?: Record<string, string | number | boolean>
  version?: number
  jobId?: string
  token?: string
  maxFrame?: number
  [key: string]: unknown
}

const kinds = new Set(["hello", "hello_ok", "request", "reply", "notify"])
const encodings = new Set(["json", "bytes", "none"])

/** Encodes a payload: bytes travel raw, `undefined` as none, anything else as JSON text. */
export const encodePayload = (payload: unknown): { enc: Encoding; bytes: Uint8Array } => {
  if (payload === undefined) return { enc: "none", bytes: new Uint8Array(0) }
  if (payload instanceof Uint8Array) return { enc: "bytes", bytes: payload }
  const text = JSON.stringify(payload)
  if (text === undefined) throw new TypeError(`a ${typeof payload} payload cannot be sent`)
  return { enc: "json", bytes: Buffer.from(text, "utf8") }
}

/**
 * As `encodePayload`, but JSON stays text: `encodeFrame` writes it straight into
 * the frame's buffer (one copy fewer for a small frame).
 */
export const encodePayloadBody = (payload: unknown): { enc: Encoding; body: Uint8Array | string } => {
  if (payload === undefined) return { enc: "none", body: EMPTY }
  if (payload instanceof Uint8Array) return { enc: "bytes", body: payload }
  const text = JSON.stringify(payload)
  if (text === undefined) throw new TypeError(`a ${typeof payload} payload cannot be sent`)
  return { enc: "json", body: text }
}

const EMPTY = new Uint8Array(0)

/** Decodes a payload by its encoding; throws on JSON that does not parse. */
export const decodePayload = (enc: Encoding | undefined, bytes: Uint8Array): unknown => {
  switch (enc ?? "none") {
    case "bytes":
      return bytes
    case "json":
      return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"))
    default:
      if (bytes.byteLength !== 0) throw new Error("payload bytes with encoding 'none'")
      return undefined
  }
}

/** The value of a frame's `length` field for a header and payload. */
export const frameLength = (headerBytes: number, payloadBytes: number): number => 4 + headerBytes + payloadBytes

/**
 * Payloads up to this size (bytes) are copied into the frame's one buffer, so a
 * small frame is one socket write: two writes cost two syscalls and wake the
 * peer twice (measured by bench/: about 2× the round trip of one write).
 */
export const SMALL_PAYLOAD_BYTES = 16 * 1024

/**
 * Encodes a frame as chunks: one buffer for a small frame; prefix+header, then
 * the payload as it is for a payload over `SMALL_PAYLOAD_BYTES` (no copy of a
 * large payload). Throws `RangeError` when the header is too big.
 */
export const encodeFrame = (header: FrameHeader, payload?: Uint8Array | string): Array<Uint8Array> => {
  const headerText = JSON.stringify(header)
  const headerBytes = Buffer.byteLength(headerText, "utf8")
  if (headerBytes > MAX_HEADER_BYTES) {
    throw new RangeError(`frame header of ${headerBytes} bytes exceeds ${MAX_HEADER_BYTES}`)
  }
  // a string payload is UTF-8 text: written into the frame when small, else encoded once
  let body: Uint8Array | string | undefined = payload
  let payloadBytes = 0
  if (typeof body === "string") {
    payloadBytes = Buffer.byteLength(body, "utf8")
    if (payloadBytes > SMALL_PAYLOAD_BYTES) body = Buffer.from(body, "utf8")
  } else if (body !== undefined) {
    payloadBytes = body.byteLength
  }
  const inline = payloadBytes > 0 && payloadBytes <= SMALL_PAYLOAD_BYTES
  const head = Buffer.allocUnsafe(8 + headerBytes + (inline ? payloadBytes : 0))
  head.writeUInt32BE(frameLength(headerBytes, payloadBytes), 0)
  head.writeUInt32BE(headerBytes, 4)
  head.write(headerText, 8, "utf8")
  if (inline) {
    if (typeof body === "string") head.write(body, 8 + headerBytes, "utf8")
    else head.set(body!, 8 + headerBytes)
  }
  return payloadBytes > 0 && !inline ? [head, body as Uint8Array] : [head]
}

/** The part of a writable stream `writeFrameChunks` uses (a `net.Socket`, a TLS socket, any `Duplex`). */
export interface FrameSink {
  write(chunk: Uint8Array): boolean
  cork(): void
  uncork(): void
  readonly writableLength: number
  readonly writableHighWaterMark: number
}

/**
 * Writes a frame's chunks to `sink`; returns false when the caller should wait
 * for `drain`, as `write` does. A frame of several chunks (a large payload) is
 * corked around its writes, so a socket sends it with one `writev`: one syscall
 * and one wake-up of the peer, without copying the payload. Its answer is the
 * buffer's state after the `writev`, not while corked (when everything was
 * still buffered): a frame the kernel took at once needs no wait.
 */
export const writeFrameChunks = (sink: FrameSink, chunks: ReadonlyArray<Uint8Array>): boolean => {
  if (chunks.length === 1) return sink.write(chunks[0]!)
  sink.cork()
  for (const chunk of chunks) sink.write(chunk)
  sink.uncork()
  return sink.writableLength < sink.writableHighWaterMark
}

/** The `length` field of a frame encoded by `encodeFrame` (read from its first chunk). */
export const encodedFrameLength = (chunks: ReadonlyArray<Uint8Array>): number => {
  const head = chunks[0]!
  return ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0
}

/** Encodes a frame into one buffer (for tests and small frames). */
export const encodeFrameBuffer = (header: FrameHeader, payload?: Uint8Array | string): Buffer =>
  Buffer.concat(encodeFrame(header, payload))

/** What the decoder emits. */
export type DecodeEvent =
  | { readonly type: "frame"; readonly header: FrameHeader; readonly payload: Buffer }
  | { readonly type: "oversize"; readonly header: FrameHeader; readonly size: number }
  | { readonly type: "error"; readonly reason: string }

/** Header fields that are strings when present. */
const STRING_FIELDS = ["channel", "topic", "rc", "jobId", "token"] as const

/** Parses and checks a header; returns a reason string when it is malformed. */
export const parseHeader = (bytes: Buffer): FrameHeader | string => {
  let value: unknown
  try {
    value = JSON.parse(bytes.toString("utf8"))
  } catch {
    return "frame header is not valid JSON"
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "frame header is not a JSON object"
  const h = value as Record<string, unknown>
  if (typeof h.kind !== "string" || !kinds.has(h.kind)) return `frame header has an unknown kind ${JSON.stringify(h.kind)}`
  if (h.enc !== undefined && (typeof h.enc !== "string" || !encodings.has(h.enc))) {
    return `frame header has an unknown enc ${JSON.stringify(h.enc)}`
  }
  if (h.id !== undefined && (typeof h.id !== "number" || !Number.isSafeInteger(h.id))) return "frame header id is not an integer"
  for (const key of STRING_FIELDS) {
    if (h[key] !== undefined && typeof h[key] !== "string") return `frame header ${key} is not a string`
  }
  if (h.headers !== undefined) {
    if (typeof h.headers !== "object" || h.headers === null || Array.isArray(h.headers)) return "frame header headers is not an object"
    const clean: Record<string, string | number | boolean> = Object.create(null)
    for (const [k, v] of Object.entries(h.headers as Record<string, unknown>)) {
      if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") return `user header ${k} is not a string, number or boolean`
      clean[k] = v
    }
    h.headers = clean
  }
  return h as FrameHeader
}

/**
 * An incremental frame decoder. Feed it chunks; it emits frames, `oversize`
 * events for frames over `maxFrame` (their payload is skipped without being
 * buffered), and at most one `error`, after which it ignores input.
 * It never holds more than one frame (≤ `maxFrame`) plus a header.
 */
export class FrameDecoder {
  private prefix = Buffer.alloc(8)
  private prefixLen = 0
  private frame: Buffer | undefined
  private framePos = 0
  private oversizeSize = 0
  private skipHeader: Buffer | undefined
  private skipHeaderPos = 0
  private skipRemaining = 0
  private failed = false

  /**
   * Largest frame accepted; larger ones become `oversize` events. It may be
   * changed between chunks, or from inside `emit` (it applies to the next frame),
   * e.g. raised once the hello has been checked.
   */
  maxFrame: number

  constructor(maxFrame: number = DEFAULT_MAX_FRAME_BYTES) {
    this.maxFrame = maxFrame
  }

  /** Bytes currently buffered for a partial frame (for tests and accounting). */
  get buffered(): number {
    return this.prefixLen + this.framePos + this.skipHeaderPos
  }

  /** Feeds a chunk; calls `emit` for each event it completes. */
  push(chunk: Uint8Array, emit: (event: DecodeEvent) => void): void {
    let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    while (buf.length > 0 && !this.failed) {
      if (this.skipRemaining > 0) {
        const n = Math.min(this.skipRemaining, buf.length)
        this.skipRemaining -= n
        buf = buf.subarray(n)
        continue
      }
      if (this.skipHeader) {
        const n = Math.min(this.skipHeader.length - this.skipHeaderPos, buf.length)
        buf.copy(this.skipHeader, this.skipHeaderPos, 0, n)
        this.skipHeaderPos += n
        buf = buf.subarray(n)
        if (this.skipHeaderPos === this.skipHeader.length) {
          const header = parseHeader(this.skipHeader)
          this.skipHeader = undefined
          this.skipHeaderPos = 0
          this.skipRemaining = this.pendingSkip
          this.pendingSkip = 0
          if (typeof header === "string") return this.fail(emit, header)
          emit({ type: "oversize", header, size: this.oversizeSize })
        }
        continue
      }
      if (this.frame) {
        const n = Math.min(this.frame.length - this.framePos, buf.length)
        buf.copy(this.frame, this.framePos, 0, n)
        this.framePos += n
        buf = buf.subarray(n)
        if (this.framePos === this.frame.length) {
          const frame = this.frame
          this.frame = undefined
          this.framePos = 0
          const headerLen = frame.readUInt32BE(0)
          const header = parseHeader(frame.subarray(4, 4 + headerLen))
          if (typeof header === "string") return this.fail(emit, header)
          emit({ type: "frame", header, payload: frame.subarray(4 + headerLen) })
        }
        continue
      }
      // reading the 8-byte prefix: length and header length
      const n = Math.min(8 - this.prefixLen, buf.length)
      buf.copy(this.prefix, this.prefixLen, 0, n)
      this.prefixLen += n
      buf = buf.subarray(n)
      if (this.prefixLen < 8) continue
      this.prefixLen = 0
      const length = this.prefix.readUInt32BE(0)
      const headerLen = this.prefix.readUInt32BE(4)
      if (length < 4) return this.fail(emit, `frame length ${length} is shorter than its header length field`)
      if (headerLen === 0) return this.fail(emit, "frame header is empty")
      if (headerLen > MAX_HEADER_BYTES) return this.fail(emit, `frame header of ${headerLen} bytes exceeds ${MAX_HEADER_BYTES}`)
      if (headerLen > length - 4) return this.fail(emit, `frame header length ${headerLen} exceeds the frame length ${length}`)
      if (length > this.maxFrame) {
        this.oversizeSize = length
        this.skipHeader = Buffer.allocUnsafe(headerLen)
        this.skipHeaderPos = 0
        // the payload follows the header; it is skipped once the header is read
        this.pendingSkip = length - 4 - headerLen
        continue
      }
      this.frame = Buffer.allocUnsafe(length)
      this.frame.writeUInt32BE(headerLen, 0)
      this.framePos = 4
    }
  }

  private pendingSkip = 0

  private fail(emit: (event: DecodeEvent) => void, reason: string): void {
    this.failed = true
    this.frame = undefined
    this.skipHeader = undefined
    emit({ type: "error", reason })
  }
}
