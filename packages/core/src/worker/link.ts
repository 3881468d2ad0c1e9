/**
 * The worker's end of the channel: connect, hello, request/reply both ways,
 * and reconnecting when the connection drops. Internal to the worker runtime.
 */
import { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import {
  type DecodeEvent,
  DEFAULT_MAX_FRAME_BYTES,
  decodePayload,
  encodedFrameLength,
  encodeFrame,
  encodePayloadBody,
  FrameDecoder,
  type FrameHeader,
  MAX_HEADER_BYTES,
  parseHeader,
  PROTOCOL_VERSION
} from "../protocol/Frame.js"
import { ChannelError, isConfigError, messageOf } from "./errors.js"
import { cleanHeaders, encodeChecked, receivedHeaders } from "./payload.js"
import type { TimerHandle, Timers } from "./timers.js"
import type { OutgoingMessage, WorkerMessage } from "./types.js"

/** What a request handler answers. `after` runs once the reply is written. */
export interface Answer {
  readonly rc: string
  readonly payload?: unknown
  readonly after?: () => void
}

/** Options of a `ParentLink`. */
export interface LinkOptions {
  readonly url: string
  readonly jobId: string
  readonly token: string
  readonly connect: (url: string) => Duplex
  /** How long to keep trying to (re)connect, in ms. */
  readonly reconnectMs: number
  /** How long to wait for `hello_ok` on one attempt, in ms. */
  readonly helloTimeoutMs: number
  readonly timers: Timers
  readonly log: (line: string) => void
  /** Answers the parent's requests (and notifications, whose answer is dropped). */
  /** Answers a request: at once (replied before the next frame is read) or as a promise. */
  readonly onRequest: (channel: string, topic: string, message: WorkerMessage) => Answer | Promise<Answer>
  /** The connection dropped and could not be re-established within `reconnectMs`. */
  readonly onGiveUp: () => void
}

type State = "init" | "connecting" | "live" | "down" | "failed" | "closed"

/** A request to send right after the next hello, before `hello_ok` (pipelined). */
interface Early {
  readonly id: number
  readonly channel: string
  readonly topic: string
  readonly chunks: ReadonlyArray<Uint8Array>
  readonly resolve: (message: WorkerMessage) => void
  readonly reject: (error: ChannelError) => void
  readonly timer: TimerHandle
}

interface Pending {
  readonly conn: Conn
  readonly channel: string
  readonly topic: string
  readonly resolve: (message: WorkerMessage) => void
  readonly reject: (error: ChannelError) => void
  readonly timer: TimerHandle
}

/** Up to this many bytes, the hello and the requests pipelined behind it are written as one buffer. */
const EARLY_COALESCE_BYTES = 64 * 1024

const toBuffer = (chunk: unknown): Buffer =>
  Buffer.isBuffer(chunk)
    ? chunk
    : chunk instanceof Uint8Array
      ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      : Buffer.from(String(chunk), "utf8")

/** One live, authenticated connection. */
class Conn {
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
    for (const chunk of chunks) this.socket.write(chunk)
  }
}

/** The worker's connection to its parent. */
export class ParentLink {
  private state: State = "init" as State
  private conn: Conn | undefined
  private attemptSocket: Duplex | undefined
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private early: Array<Early> = []
  private waiters: Array<(live: boolean) => void> = []

  constructor(private readonly options: LinkOptions) {}

  /** True while connected. */
  get isLive(): boolean {
    return this.state === "live"
  }

  /**
   * Connects and says hello, retrying for `reconnectMs`. Rejects with a
   * `ConfigError` the connector threw, or `ChannelError("target_unreachable")`.
   */
  async start(): Promise<void> {
    this.state = "connecting"
    const ok = await this.connectLoop(Date.now() + this.options.reconnectMs)
    if (ok) return
    if (!this.isClosed) this.setState("failed")
    this.failEarly("could not connect to the parent")
    throw new ChannelError(
      "target_unreachable",
      `could not connect to the parent at ${this.options.url} within ${this.options.reconnectMs} ms`
    )
  }

  /** Resolves `true` once connected, `false` if the link gave up or closed. */
  whenLive(): Promise<boolean> {
    if (this.state === "live") return Promise.resolve(true)
    if (this.state === "failed" || this.state === "closed") return Promise.resolve(false)
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /**
   * A request sent right after the hello of the next connection attempt,
   * without waiting for `hello_ok` (the parent serves it once it has accepted
   * the hello). Only before the link is first live; an attempt that fails sends
   * it again after the next hello. Saves a round trip on the way to Started.
   */
  requestAfterHello(
    channel: string,
    topic: string,
    message: OutgoingMessage | undefined,
    timeoutMs: number,
    /** Called synchronously when the parent answers (any code), before the next frame is read. */
    onAnswer?: () => void
  ): Promise<WorkerMessage> {
    if (this.state !== "init" && this.state !== "connecting") return this.request(channel, topic, message, timeoutMs)
    let chunks: Array<Uint8Array>
    const id = this.nextId++
    try {
      const encoded = encodeChecked(message?.payload)
      chunks = encodeFrame({ kind: "request", id, channel, topic, enc: encoded.enc, headers: cleanHeaders(message?.headers) }, encoded.body)
    } catch (error) {
      return Promise.reject(new ChannelError("invalid_request", `cannot send ${channel}/${topic}: ${messageOf(error)}`))
    }
    return new Promise<WorkerMessage>((resolveReply, rejectReply) => {
      const resolve = (reply: WorkerMessage): void => {
        onAnswer?.()
        resolveReply(reply)
      }
      // an error reply is an answer too; target_unreachable and timeout are not
      const reject = (error: ChannelError): void => {
        if (error.code !== "target_unreachable" && error.code !== "timeout") onAnswer?.()
        rejectReply(error)
      }
      const timer = this.options.timers.after(timeoutMs, () => {
        // still waiting for a connection, or sent on one and waiting for the reply
        const index = this.early.findIndex((e) => e.id === id)
        if (index >= 0) this.early.splice(index, 1)
        else if (this.pending.get(id)?.timer === timer) this.pending.delete(id)
        else return
        reject(new ChannelError("timeout", `no reply to ${channel}/${topic} within ${timeoutMs} ms`))
      })
      this.early.push({ id, channel, topic, chunks, resolve, reject, timer })
    })
  }

  /** A request to the parent; see `JobContext.request`. */
  request(channel: string, topic: string, message: OutgoingMessage | undefined, timeoutMs: number): Promise<WorkerMessage> {
    const conn = this.conn
    if (conn === undefined || this.state !== "live") {
      return Promise.reject(new ChannelError("target_unreachable", `not connected to the parent (request ${channel}/${topic})`))
    }
    let encoded: ReturnType<typeof encodeChecked>
    try {
      encoded = encodeChecked(message?.payload)
    } catch (error) {
      return Promise.reject(new ChannelError("invalid_request", `cannot send ${channel}/${topic}: ${messageOf(error)}`))
    }
    const id = this.nextId++
    return new Promise<WorkerMessage>((resolve, reject) => {
      const timer = this.options.timers.after(timeoutMs, () => {
        if (this.pending.get(id)?.timer !== timer) return
        this.pending.delete(id)
        reject(new ChannelError("timeout", `no reply to ${channel}/${topic} within ${timeoutMs} ms`))
      })
      this.pending.set(id, { conn, channel, topic, resolve, reject, timer })
      try {
        conn.send(
          { kind: "request", id, channel, topic, enc: encoded.enc, headers: cleanHeaders(message?.headers) },
          encoded.body
        )
      } catch (error) {
        this.pending.delete(id)
        this.options.timers.cancel(timer)
        reject(error instanceof ChannelError ? error : new ChannelError("comm_error", messageOf(error)))
      }
    })
  }

  /**
   * Stops the link for good: fails what is pending, ends the socket once its
   * data is flushed, and resolves when the socket is closed (at most ~2 s).
   */
  async close(): Promise<void> {
    const previous = this.state
    this.setState("closed")
    this.attemptSocket?.destroy()
    const conn = this.conn
    this.conn = undefined
    this.failPending(undefined, "the worker is exiting")
    this.failEarly("the worker is exiting")
    if (conn === undefined || previous !== "live" || !conn.alive) return
    conn.alive = false
    const socket = conn.socket
    await new Promise<void>((resolve) => {
      let done = false
      const finish = (): void => {
        if (done) return
        done = true
        this.options.timers.cancel(timer)
        resolve()
      }
      const timer = this.options.timers.after(2000, () => {
        socket.destroy()
        finish()
      })
      if ((socket as { closed?: boolean }).closed === true) return finish()
      socket.once("close", finish)
      // flush what was written, then close without waiting for the parent's side
      socket.end(() => socket.destroy())
    })
  }

  private get isClosed(): boolean {
    return this.state === "closed"
  }

  private setState(state: State): void {
    this.state = state
    if (state === "live" || state === "failed" || state === "closed") {
      const waiters = this.waiters
      this.waiters = []
      for (const wake of waiters) wake(state === "live")
    }
  }

  private async connectLoop(deadline: number): Promise<boolean> {
    let delay = 50
    while (true) {
      if (this.isClosed) return false
      const remaining = deadline - Date.now()
      if (remaining <= 0) return false
      if (await this.attempt(Math.min(this.options.helloTimeoutMs, remaining))) return true
      const wait = Math.min(delay, deadline - Date.now())
      if (wait > 0 && !this.isClosed) await this.options.timers.sleep(wait)
      delay = Math.min(delay * 2, 1000)
    }
  }

  /** One connection attempt: connect, hello, wait for hello_ok. Installs the connection on success. */
  private attempt(timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      let socket: Duplex
      try {
        socket = this.options.connect(this.options.url)
      } catch (error) {
        if (isConfigError(error)) return reject(error)
        this.options.log(`flexec worker: cannot connect to ${this.options.url}: ${messageOf(error)}`)
        return resolve(false)
      }
      this.attemptSocket = socket
      let lastError: string | undefined
      // a permanent listener: a socket error must never crash the job
      socket.on("error", (error: Error) => {
        lastError = error.message
      })
      let buffered: Buffer = Buffer.alloc(0)
      let done = false
      const finish = (installed: boolean, why?: string): void => {
        if (done) return
        done = true
        this.options.timers.cancel(timer)
        socket.off("data", onData)
        socket.off("end", onGone)
        socket.off("close", onGone)
        if (this.attemptSocket === socket) this.attemptSocket = undefined
        if (!installed) {
          socket.destroy()
          if (why !== undefined && !this.isClosed) this.options.log(`flexec worker: ${why}`)
        }
        resolve(installed)
      }
      const onGone = (): void =>
        finish(false, lastError === undefined ? undefined : `cannot connect to ${this.options.url}: ${lastError}`)
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
        this.install(socket, maxFrame, rest)
      }
      const timer = this.options.timers.after(timeoutMs, () => finish(false, `no hello_ok from the parent within ${timeoutMs} ms`))
      socket.on("data", onData)
      socket.once("end", onGone)
      socket.once("close", onGone)
      try {
        const chunks = encodeFrame({ kind: "hello", version: PROTOCOL_VERSION, jobId: this.options.jobId, token: this.options.token })
        // pipelined: the parent reads them once it has accepted the hello
        for (const early of this.early) chunks.push(...early.chunks)
        // small frames go out together: one write, and the parent reads hello and Started at once
        let size = 0
        for (const chunk of chunks) size += chunk.byteLength
        if (chunks.length > 1 && size <= EARLY_COALESCE_BYTES) socket.write(Buffer.concat(chunks, size))
        else for (const chunk of chunks) socket.write(chunk)
      } catch (error) {
        finish(false, `cannot send hello: ${messageOf(error)}`)
      }
    })
  }

  /** Makes a connection live (synchronously, so that no data is missed). */
  private install(socket: Duplex, maxFrame: number, rest: Buffer): void {
    if (this.state === "closed") {
      socket.destroy()
      return
    }
    const conn = new Conn(socket, maxFrame)
    this.conn = conn
    const decoder = new FrameDecoder(maxFrame)
    const onData = (chunk: unknown): void => {
      if (!conn.alive) return
      decoder.push(toBuffer(chunk), (event) => this.onEvent(conn, event))
    }
    const onGone = (): void => this.lost(conn, "the parent closed the connection")
    // the requests sent with the hello now wait on this connection
    for (const e of this.early.splice(0)) {
      this.pending.set(e.id, { conn, channel: e.channel, topic: e.topic, resolve: e.resolve, reject: e.reject, timer: e.timer })
    }
    socket.on("data", onData)
    socket.once("end", onGone)
    socket.once("close", onGone)
    this.setState("live")
    if (rest.length > 0) onData(rest)
  }

  private lost(conn: Conn, reason: string): void {
    if (!conn.alive) return
    conn.alive = false
    conn.socket.destroy()
    if (this.conn === conn) this.conn = undefined
    this.failPending(conn, `the connection to the parent was lost: ${reason}`)
    if (this.state !== "live") return
    this.state = "down"
    this.options.log(`flexec worker: ${reason}; reconnecting for up to ${this.options.reconnectMs} ms`)
    void this.reconnect()
  }

  private async reconnect(): Promise<void> {
    let ok: boolean
    try {
      ok = await this.connectLoop(Date.now() + this.options.reconnectMs)
    } catch (error) {
      this.options.log(`flexec worker: cannot reconnect: ${messageOf(error)}`)
      ok = false
    }
    if (ok) {
      this.options.log("flexec worker: reconnected to the parent")
      return
    }
    if (this.state === "closed") return
    this.setState("failed")
    this.options.onGiveUp()
  }

  private failEarly(reason: string): void {
    for (const e of this.early.splice(0)) {
      this.options.timers.cancel(e.timer)
      e.reject(new ChannelError("target_unreachable", `${e.channel}/${e.topic}: ${reason}`))
    }
  }

  private failPending(conn: Conn | undefined, reason: string): void {
    for (const [id, pending] of this.pending) {
      if (conn !== undefined && pending.conn !== conn) continue
      this.pending.delete(id)
      this.options.timers.cancel(pending.timer)
      pending.reject(new ChannelError("target_unreachable", `${pending.channel}/${pending.topic}: ${reason}`))
    }
  }

  private onEvent(conn: Conn, event: DecodeEvent): void {
    if (!conn.alive) return
    switch (event.type) {
      case "error":
        return this.lost(conn, `malformed frame from the parent (${event.reason})`)
      case "oversize": {
        const { header } = event
        this.options.log(
          `flexec worker: discarded a ${header.kind} frame of ${event.size} bytes (limit ${conn.maxFrame})`
        )
        if (header.kind === "request" && header.id !== undefined) {
          this.reply(conn, header.id, { rc: "msg_too_big" })
        } else if (header.kind === "reply" && header.id !== undefined) {
          const pending = this.take(conn, header.id)
          pending?.reject(
            new ChannelError(
              "msg_too_big",
              `the reply to ${pending.channel}/${pending.topic} (${event.size} bytes) exceeds the limit of ${conn.maxFrame} bytes`
            )
          )
        } else if (header.kind === "hello" || header.kind === "hello_ok") {
          this.lost(conn, `unexpected ${header.kind} frame from the parent`)
        }
        return
      }
      case "frame":
        return this.onFrame(conn, event.header, event.payload)
    }
  }

  private take(conn: Conn, id: number): Pending | undefined {
    const pending = this.pending.get(id)
    if (pending === undefined || pending.conn !== conn) return undefined
    this.pending.delete(id)
    this.options.timers.cancel(pending.timer)
    return pending
  }

  private onFrame(conn: Conn, header: FrameHeader, bytes: Buffer): void {
    const kind = header.kind
    if (kind !== "request" && kind !== "reply" && kind !== "notify") {
      return this.lost(conn, `unexpected ${kind} frame from the parent`)
    }
    if ((kind === "request" || kind === "reply") && header.id === undefined) {
      return this.lost(conn, `a ${kind} frame without an id from the parent`)
    }
    let payload: unknown
    try {
      payload = decodePayload(header.enc, bytes)
    } catch (error) {
      return this.lost(conn, `malformed payload from the parent (${messageOf(error)})`)
    }
    const message: WorkerMessage = { headers: receivedHeaders(header.headers), payload: payload as WorkerMessage["payload"] }
    if (kind === "reply") {
      // a reply to nothing pending (e.g. late, after a timeout) is dropped
      const pending = this.take(conn, header.id!)
      if (pending === undefined) return
      const rc = header.rc ?? "ok"
      if (rc === "ok") return pending.resolve(message)
      const detail = typeof payload === "string" ? `: ${payload}` : ""
      return pending.reject(new ChannelError(rc, `${pending.channel}/${pending.topic} failed with ${rc}${detail}`, payload))
    }
    const { channel, topic } = header
    if (channel === undefined || topic === undefined) {
      if (kind === "request") this.reply(conn, header.id!, { rc: "invalid_request", payload: "a request needs a channel and a topic" })
      return
    }
    const answered = (answer: Answer) => {
      if (kind === "request") this.reply(conn, header.id!, answer)
      answer.after?.()
    }
    let answer: Answer | Promise<Answer>
    try {
      answer = this.options.onRequest(channel, topic, message)
    } catch (error) {
      answer = { rc: "process_exception", payload: messageOf(error) }
    }
    if (!(answer instanceof Promise)) return answered(answer)
    void answer.then(answered, (error: unknown) => {
      if (kind === "request") this.reply(conn, header.id!, { rc: "process_exception", payload: messageOf(error) })
    })
  }

  /** Sends a reply on the connection the request came in on (dropped if that one is gone). */
  private reply(conn: Conn, id: number, answer: Answer): void {
    if (!conn.alive) return
    let rc = answer.rc
    let encoded: ReturnType<typeof encodePayloadBody>
    try {
      encoded = encodeChecked(answer.payload)
    } catch (error) {
      rc = "process_exception"
      encoded = encodePayloadBody(`the reply cannot be sent: ${messageOf(error)}`)
    }
    try {
      conn.send({ kind: "reply", id, rc, enc: encoded.enc }, encoded.body)
    } catch (error) {
      this.options.log(`flexec worker: reply ${id}: ${messageOf(error)}`)
      try {
        conn.send({ kind: "reply", id, rc: "msg_too_big", enc: "none" })
      } catch {
        // nothing more can be said
      }
    }
  }
}
