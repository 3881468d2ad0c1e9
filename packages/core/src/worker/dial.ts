/**
 * Dialling the parent: connect, say hello (with the pipelined requests behind
 * it), wait for `hello_ok`, and retry with backoff until a deadline. Internal
 * to the worker runtime.
 */
import { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, MAX_HEADER_BYTES, parseHeader, PROTOCOL_VERSION, writeFrameChunks } from "../protocol/Frame.js"
import { toBuffer } from "./connection.js"
import { isConfigError, messageOf } from "./errors.js"
import type { Timers } from "./timers.js"

/** Up to this many bytes, the hello and the requests pipelined behind it are written as one buffer. */
const EARLY_COALESCE_BYTES = 64 * 1024

/** What dialling the parent needs to know. */
export interface DialOptions {
  readonly url: string
  readonly jobId: string
  readonly token: string
  readonly connect: (url: string) => Duplex
  /** How long to wait for `hello_ok` on one attempt, in ms. */
  readonly helloTimeoutMs: number
  readonly timers: Timers
  readonly log: (line: string) => void
}

/** How a dial reads and changes the link that dials. */
export interface DialHooks {
  /** The link was closed: stop trying (and say nothing more). */
  readonly isClosed: () => boolean
  /** An attempt began on `socket` (closing the link destroys it). */
  readonly attemptStarted: (socket: Duplex) => void
  /** The attempt on `socket` ended, whatever its outcome. */
  readonly attemptEnded: (socket: Duplex) => void
  /** The frames to write right behind the hello. */
  readonly pipelined: () => ReadonlyArray<Uint8Array>
  /**
   * The parent accepted the hello: make the connection live, synchronously (so
   * that no data is missed). `rest` is what arrived behind `hello_ok`.
   */
  readonly install: (socket: Duplex, maxFrame: number, rest: Buffer) => void
}

/**
 * Attempts to connect until one succeeds (`true`) or `deadline` (a
 * `Date.now()` time) passes or the link closes (`false`), backing off from
 * 50 ms to 1 s between attempts. Rejects with a `ConfigError` the connector
 * threw or destroyed the socket with.
 */
export const dial = async (options: DialOptions, hooks: DialHooks, deadline: number): Promise<boolean> => {
  let delay = 50
  while (true) {
    if (hooks.isClosed()) return false
    const remaining = deadline - Date.now()
    if (remaining <= 0) return false
    if (await attempt(options, hooks, Math.min(options.helloTimeoutMs, remaining))) return true
    const wait = Math.min(delay, deadline - Date.now())
    if (wait > 0 && !hooks.isClosed()) await options.timers.sleep(wait)
    delay = Math.min(delay * 2, 1000)
  }
}

/** One connection attempt: connect, hello, wait for hello_ok. Installs the connection on success. */
const attempt = (options: DialOptions, hooks: DialHooks, timeoutMs: number): Promise<boolean> =>
  new Promise<boolean>((resolve, reject) => {
    let socket: Duplex
    try {
      socket = options.connect(options.url)
    } catch (error) {
      if (isConfigError(error)) return reject(error)
      options.log(`flexec worker: cannot connect to ${options.url}: ${messageOf(error)}`)
      return resolve(false)
    }
    hooks.attemptStarted(socket)
    let lastError: string | undefined
    // the connector's refusal (a certificate that is not the pinned one): no retry
    let refusal: Error | undefined
    // a permanent listener: a socket error must never crash the job
    socket.on("error", (error: Error) => {
      lastError = error.message
      if (isConfigError(error)) refusal ??= error
    })
    let buffered: Buffer = Buffer.alloc(0)
    let done = false
    const finish = (installed: boolean, why?: string): void => {
      if (done) return
      done = true
      options.timers.cancel(timer)
      socket.off("data", onData)
      socket.off("end", onGone)
      socket.off("close", onGone)
      hooks.attemptEnded(socket)
      if (!installed) {
        socket.destroy()
        if (refusal !== undefined) return reject(refusal)
        if (why !== undefined && !hooks.isClosed()) options.log(`flexec worker: ${why}`)
      }
      resolve(installed)
    }
    const onGone = (): void =>
      finish(false, lastError === undefined ? undefined : `cannot connect to ${options.url}: ${lastError}`)
    const onData = (chunk: unknown): void => {
      const bytes = toBuffer(chunk)
      buffered = buffered.length === 0 ? bytes : Buffer.concat([buffered, bytes])
      if (buffered.length < 8) return
      const length = buffered.readUInt32BE(0)
      const headerLength = buffered.readUInt32BE(4)
      if (length < 4 || headerLength > length - 4 || length > 4 + MAX_HEADER_BYTES) {
        return finish(false, "the parent's answer to hello is not a valid frame")
      }
      if (buffered.length < 4 + length) return
      const header = parseHeader(buffered.subarray(8, 8 + headerLength))
      if (typeof header === "string") return finish(false, `the parent's answer to hello is malformed: ${header}`)
      if (header.kind !== "hello_ok" || length !== 4 + headerLength) {
        return finish(false, `the parent answered hello with ${JSON.stringify(header.kind)}, not hello_ok`)
      }
      if (header.version !== undefined && header.version !== PROTOCOL_VERSION) {
        return finish(false, `the parent speaks protocol version ${String(header.version)}, not ${PROTOCOL_VERSION}`)
      }
      const maxFrame =
        typeof header.maxFrame === "number" && Number.isSafeInteger(header.maxFrame) && header.maxFrame > 0
          ? header.maxFrame
          : DEFAULT_MAX_FRAME_BYTES
      const rest = buffered.subarray(4 + length)
      finish(true)
      hooks.install(socket, maxFrame, rest)
    }
    const timer = options.timers.after(timeoutMs, () => finish(false, `no hello_ok from the parent within ${timeoutMs} ms`))
    socket.on("data", onData)
    socket.once("end", onGone)
    socket.once("close", onGone)
    try {
      const chunks = encodeFrame({ kind: "hello", version: PROTOCOL_VERSION, jobId: options.jobId, token: options.token })
      // pipelined: the parent reads them once it has accepted the hello
      chunks.push(...hooks.pipelined())
      // small frames go out together: one write, and the parent reads hello and Started at once
      let size = 0
      for (const chunk of chunks) size += chunk.byteLength
      if (chunks.length > 1 && size <= EARLY_COALESCE_BYTES) socket.write(Buffer.concat(chunks, size))
      else writeFrameChunks(socket, chunks)
    } catch (error) {
      finish(false, `cannot send hello: ${messageOf(error)}`)
    }
  })
