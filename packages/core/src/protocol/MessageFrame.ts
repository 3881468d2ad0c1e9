/**
 * A `Message` as a frame and back, over the byte codec (`Frame.ts`), with
 * typed failures: the frame limit as `MessageTooBig`, a payload JSON cannot
 * carry as `PayloadNotSendable`, bytes that do not match their `enc` as
 * `MalformedFrame`. Imports `Frame`, `Message` and `Errors` only.
 *
 * Frame: `u32 length (big-endian; the bytes after this field) | u32 header length |
 * header (UTF-8 JSON object, ≤ 64 KiB) | payload`. See docs/PROTOCOL.md.
 *
 * @since 0.1.0
 */
import { Buffer } from "node:buffer"
import { Data, Either } from "effect"
import { MessageTooBig } from "../Errors.js"
import * as codec from "./Frame.js"
import * as Message from "../Message.js"

/** A frame header (`kind`, `id`, `channel`, `topic`, `rc`, `enc`, `headers`, hello fields). */
export type FrameHeader = codec.FrameHeader

/** Frame kinds: `hello`, `hello_ok`, `request`, `reply`, `notify`. */
export type FrameKind = codec.FrameKind

/** Payload encodings: `json`, `bytes`, `none`. */
export type Encoding = codec.Encoding

/** Protocol version (the `version` of `hello` / `hello_ok`). */
export const PROTOCOL_VERSION = codec.PROTOCOL_VERSION

/** Largest header (64 KiB). */
export const MAX_HEADER_BYTES = codec.MAX_HEADER_BYTES

/** Default largest frame (128 MiB), measured as the frame's `length` field. */
export const DEFAULT_MAX_FRAME_BYTES = codec.DEFAULT_MAX_FRAME_BYTES

/** A frame ready to be written: its chunks in order (the payload is not copied). */
export interface EncodedFrame {
  readonly header: FrameHeader
  readonly chunks: ReadonlyArray<Uint8Array>
  /** The frame's `length` field: 4 + header bytes + payload bytes. */
  readonly size: number
}

/**
 * The payload cannot travel as it is (a `Uint8Array` nested in JSON, a
 * non-finite number, a function, a cycle). Protocol-internal: the channel turns
 * it into `InvalidRequest` (outgoing request) or `process_exception` (a reply).
 */
export class PayloadNotSendable extends Data.TaggedError("PayloadNotSendable")<{ readonly reason: string }> {}

/** A frame that breaks the protocol (its payload does not match its `enc`, a field is missing). */
export class MalformedFrame extends Data.TaggedError("MalformedFrame")<{ readonly reason: string }> {}

/**
 * A message frame's header with its `enc`, as one literal (an object spread
 * costs more than the rest of the encoding of a small frame). Keys in the order
 * of the protocol's examples; absent ones are left out of the JSON.
 */
const withEnc = (fields: Omit<FrameHeader, "enc">, enc: codec.Encoding, headers: FrameHeader["headers"] | undefined): FrameHeader => {
  const header = fields as FrameHeader
  const out: FrameHeader = { kind: header.kind }
  if (header.id !== undefined) out.id = header.id
  if (header.channel !== undefined) out.channel = header.channel
  if (header.topic !== undefined) out.topic = header.topic
  if (header.rc !== undefined) out.rc = header.rc
  if (headers !== undefined) out.headers = headers
  out.enc = enc
  return out as FrameHeader
}

/**
 * Encodes a frame whose payload is `payload`: `enc` is set from the payload
 * (bytes, JSON or none). Fails with `MessageTooBig` when the frame's length would
 * exceed `maxFrameBytes` or the header exceeds 64 KiB (then `size`/`max` are the
 * header's), and with `PayloadNotSendable` when JSON cannot carry the payload.
 */
export const encodePayloadFrame = (
  header: Omit<FrameHeader, "enc">,
  payload: Message.Payload,
  maxFrameBytes: number
): Either.Either<EncodedFrame, MessageTooBig | PayloadNotSendable> => {
  const problem = Message.payloadProblem(payload)
  if (problem !== undefined) return Either.left(new PayloadNotSendable({ reason: problem }))
  let encoded: { enc: codec.Encoding; body: Uint8Array | string }
  try {
    encoded = codec.encodePayloadBody(payload)
  } catch (error) {
    return Either.left(new PayloadNotSendable({ reason: error instanceof Error ? error.message : String(error) }))
  }
  return encodeHeaderFrame(withEnc(header, encoded.enc, (header as FrameHeader).headers), encoded.body, maxFrameBytes)
}

/**
 * Encodes a frame from a header and raw payload bytes (none for `hello` /
 * `hello_ok`). `MessageTooBig` as for `encodePayloadFrame`.
 */
export const encodeHeaderFrame = (
  header: FrameHeader,
  payload: Uint8Array | string | undefined,
  maxFrameBytes: number
): Either.Either<EncodedFrame, MessageTooBig> => {
  let chunks: Array<Uint8Array>
  try {
    chunks = codec.encodeFrame(header, payload)
  } catch (error) {
    if (error instanceof RangeError) {
      const size = Buffer.byteLength(JSON.stringify(header), "utf8")
      return Either.left(new MessageTooBig({ size, max: codec.MAX_HEADER_BYTES }))
    }
    throw error
  }
  const size = codec.encodedFrameLength(chunks)
  if (size > maxFrameBytes) return Either.left(new MessageTooBig({ size, max: maxFrameBytes }))
  return Either.right({ header, chunks, size })
}

/**
 * Encodes a `Message` as a frame with `header` (kind, id, channel, topic, rc):
 * its user headers go to `headers`, its payload by encoding. A header that is a
 * non-finite number fails with `PayloadNotSendable` (JSON would turn it into null).
 */
export const encodeMessage = (
  header: Omit<FrameHeader, "enc" | "headers">,
  message: Message.Message,
  maxFrameBytes: number
): Either.Either<EncodedFrame, MessageTooBig | PayloadNotSendable> => {
  const headers = Message.makeHeaders(message.headers)
  let hasHeaders = false
  for (const key in headers) {
    hasHeaders = true
    const value = headers[key]
    if (typeof value === "number" && !Number.isFinite(value)) {
      return Either.left(new PayloadNotSendable({ reason: `header ${JSON.stringify(key)} is ${value}, not a finite number` }))
    }
  }
  // headers are rare: only then the header object is copied
  return encodePayloadFrame(hasHeaders ? { ...header, headers: { ...headers } } : header, message.payload, maxFrameBytes)
}

/** A plain `Uint8Array` view of the same bytes (no copy). */
const plainBytes = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/**
 * Decodes a received frame's payload by its `enc`: `json` → the JSON value,
 * `bytes` → a `Uint8Array` (a view, not a copy), `none` → `undefined`.
 * Fails with `MalformedFrame` when the bytes do not match the encoding.
 */
export const decodePayload = (header: FrameHeader, payload: Uint8Array): Either.Either<Message.Payload, MalformedFrame> => {
  try {
    const value = codec.decodePayload(header.enc, payload)
    return Either.right(value instanceof Uint8Array ? plainBytes(value) : (value as Message.Payload))
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    return Either.left(new MalformedFrame({ reason: `payload does not decode as ${header.enc ?? "none"}: ${reason}` }))
  }
}

/** Decodes a received frame into a `Message` (null-prototype user headers). */
export const decodeMessage = (header: FrameHeader, payload: Uint8Array): Either.Either<Message.Message, MalformedFrame> =>
  Either.map(decodePayload(header, payload), (value) => ({ headers: Message.makeHeaders(header.headers), payload: value }))

/** The payload of a reply as text, for error details: a JSON string as is, other JSON as JSON text, bytes as UTF-8. */
export const payloadText = (header: FrameHeader, payload: Uint8Array): string | undefined => {
  if (payload.byteLength === 0) return undefined
  const text = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString("utf8")
  if (header.enc === "json") {
    try {
      const value: unknown = JSON.parse(text)
      return typeof value === "string" ? value : text
    } catch {
      return text
    }
  }
  return text
}
