/**
 * One live, authenticated connection of the worker to its parent: writing
 * frames within the parent's limit, and the replies to the parent's requests.
 * Internal to the worker runtime.
 */
import { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import { encodedFrameLength, encodeFrame, encodePayloadBody, type FrameHeader, writeFrameChunks } from "../protocol/Frame.js"
import { ChannelError, messageOf } from "./errors.js"
import { encodeChecked } from "./payload.js"

/** What a request handler answers. `after` runs once the reply is written. */
export interface Answer {
  readonly rc: string
  readonly payload?: unknown
  readonly after?: () => void
}

/** A chunk a socket emitted, as a `Buffer` (without copying bytes). */
export const toBuffer = (chunk: unknown): Buffer =>
  Buffer.isBuffer(chunk)
    ? chunk
    : chunk instanceof Uint8Array
      ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      : Buffer.from(String(chunk), "utf8")

/** One live, authenticated connection. */
export class Conn {
  alive = true
  constructor(
    readonly socket: Duplex,
    readonly maxFrame: number
  ) {}

  /** Writes a frame; throws `ChannelError("msg_too_big")` over the parent's limit. */
  send(header: FrameHeader, payload?: Uint8Array | string): void {
    let chunks: Array<Uint8Array>
    try {
      chunks = encodeFrame(header, payload)
    } catch (error) {
      throw new ChannelError("msg_too_big", messageOf(error))
    }
    const size = encodedFrameLength(chunks)
    if (size > this.maxFrame) {
      throw new ChannelError("msg_too_big", `a frame of ${size} bytes exceeds the parent's limit of ${this.maxFrame} bytes`)
    }
    if (!this.alive) return
    writeFrameChunks(this.socket, chunks)
  }

  /**
   * Replies to the parent's request `id` on this connection (dropped if it is
   * gone). A payload that cannot be sent becomes `process_exception`; a reply
   * over the parent's limit becomes `msg_too_big`.
   */
  reply(id: number, answer: Answer, log: (line: string) => void): void {
    if (!this.alive) return
    let rc = answer.rc
    let encoded: ReturnType<typeof encodePayloadBody>
    try {
      encoded = encodeChecked(answer.payload)
    } catch (error) {
      rc = "process_exception"
      encoded = encodePayloadBody(`the reply cannot be sent: ${messageOf(error)}`)
    }
    try {
      this.send({ kind: "reply", id, rc, enc: encoded.enc }, encoded.body)
    } catch (error) {
      log(`flexec worker: reply ${id}: ${messageOf(error)}`)
      try {
        this.send({ kind: "reply", id, rc: "msg_too_big", enc: "none" })
      } catch {
        // nothing more can be said
      }
    }
  }
}
