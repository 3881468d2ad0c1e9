/**
 * Hello: the admission of a connection to a job's channel. The checks of its
 * first frame (protocol version, job id, token compared in constant time), the
 * `hello_ok` frame, and the meeting point of the hello's verdict with the
 * connection set up while it was on its way. Imports `Frame` and
 * `MessageFrame` only.
 *
 * @since 0.1.0
 */
import type { Buffer } from "node:buffer"
import { createHash, timingSafeEqual } from "node:crypto"
import * as codec from "./Frame.js"
import * as Frame from "./MessageFrame.js"

/** The SHA-256 of a token (what the hello's token is compared with). */
export const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

/** The token check, in constant time whatever the lengths (both sides hashed first). */
const tokenMatches = (given: unknown, expected: () => Buffer): boolean =>
  typeof given === "string" && timingSafeEqual(digest(given), expected())

/** Why a first event is not a valid hello for this job, or `undefined` when it is one. */
export const helloProblem = (event: codec.DecodeEvent, jobId: string, tokenDigest: () => Buffer): string | undefined => {
  if (event.type === "error") return `malformed first frame: ${event.reason}`
  if (event.type === "oversize") return `oversize first frame (${event.size} bytes)`
  const header = event.header
  if (header.kind !== "hello") return `first frame is ${header.kind}, not hello`
  if (header.version !== codec.PROTOCOL_VERSION) return `unsupported protocol version ${JSON.stringify(header.version)}`
  if (event.payload.byteLength !== 0) return "hello carries a payload"
  // compare the token first, in constant time, whatever the job id
  const tokenOk = tokenMatches(header.token, tokenDigest)
  if (header.jobId !== jobId) return `hello names job ${JSON.stringify(header.jobId)}`
  if (!tokenOk) return "wrong token"
  return undefined
}

/**
 * The meeting point of a connection's hello (decided in the socket's data
 * handler) and its connection (set up by its fiber): whichever comes second
 * goes on. Admitted: `goLive` runs synchronously, then the fiber is told.
 */
export class Admission {
  private verdict: boolean | undefined
  private onAdmit: (() => void) | undefined
  private tell: ((admitted: boolean) => void) | undefined

  /** The hello's verdict (once; later calls are ignored). */
  decide(admitted: boolean): void {
    if (this.verdict !== undefined) return
    this.verdict = admitted
    if (this.tell === undefined) return
    if (admitted) this.onAdmit?.()
    this.tell(admitted)
  }

  /** The connection is ready: `goLive` when admitted, `tell` the verdict (now, or when it comes). */
  ready(goLive: () => void, tell: (admitted: boolean) => void): void {
    if (this.verdict !== undefined) {
      if (this.verdict) goLive()
      return tell(this.verdict)
    }
    this.onAdmit = goLive
    this.tell = tell
  }
}

/** `hello_ok` frames by frame limit (the same for every channel of an executor: made once). */
const helloOkFrames = new Map<number, ReturnType<typeof Frame.encodeHeaderFrame>>()
export const helloOkFrame = (maxFrameBytes: number): ReturnType<typeof Frame.encodeHeaderFrame> => {
  let frame = helloOkFrames.get(maxFrameBytes)
  if (frame === undefined) {
    frame = Frame.encodeHeaderFrame({ kind: "hello_ok", version: codec.PROTOCOL_VERSION, maxFrame: maxFrameBytes }, undefined, maxFrameBytes)
    if (helloOkFrames.size < 16) helloOkFrames.set(maxFrameBytes, frame)
  }
  return frame
}

