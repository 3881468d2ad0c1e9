/**
 * The worker's requests to its parent: ids, the replies awaited, their
 * timeouts, and the requests pipelined behind the next hello. Internal to the
 * worker runtime.
 */
import { encodeFrame } from "../protocol/Frame.js"
import type { Conn } from "./connection.js"
import { ChannelError, messageOf } from "./errors.js"
import { cleanHeaders, encodeChecked } from "./payload.js"
import type { TimerHandle, Timers } from "./timers.js"
import type { OutgoingMessage, WorkerMessage } from "./types.js"

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

/** A request sent on a connection, waiting for its reply. */
interface Pending {
  readonly conn: Conn
  readonly channel: string
  readonly topic: string
  readonly resolve: (message: WorkerMessage) => void
  readonly reject: (error: ChannelError) => void
  readonly timer: TimerHandle
}

/** The requests of one `ParentLink`, across its connections. */
export class Requests {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private early: Array<Early> = []

  constructor(private readonly timers: Timers) {}

  /**
   * A request sent right after the hello of the next connection attempt (see
   * `ParentLink.requestAfterHello`). It waits in the pipelined list until a
   * connection adopts it (`adoptEarly`), then for its reply.
   */
  afterHello(
    channel: string,
    topic: string,
    message: OutgoingMessage | undefined,
    timeoutMs: number,
    onAnswer: (() => void) | undefined
  ): Promise<WorkerMessage> {
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
      const timer = this.timers.after(timeoutMs, () => {
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

  /** The frames of the pipelined requests, to write behind a hello. */
  earlyChunks(): Array<Uint8Array> {
    const chunks: Array<Uint8Array> = []
    for (const early of this.early) chunks.push(...early.chunks)
    return chunks
  }

  /** The pipelined requests were sent with the hello that `conn` answered: they now wait on it. */
  adoptEarly(conn: Conn): void {
    for (const e of this.early.splice(0)) {
      this.pending.set(e.id, { conn, channel: e.channel, topic: e.topic, resolve: e.resolve, reject: e.reject, timer: e.timer })
    }
  }

  /** Sends a request on `conn` and waits for its reply there. */
  send(conn: Conn, channel: string, topic: string, message: OutgoingMessage | undefined, timeoutMs: number): Promise<WorkerMessage> {
    let encoded: ReturnType<typeof encodeChecked>
    try {
      encoded = encodeChecked(message?.payload)
    } catch (error) {
      return Promise.reject(new ChannelError("invalid_request", `cannot send ${channel}/${topic}: ${messageOf(error)}`))
    }
    const id = this.nextId++
    return new Promise<WorkerMessage>((resolve, reject) => {
      const timer = this.timers.after(timeoutMs, () => {
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
        this.timers.cancel(timer)
        reject(error instanceof ChannelError ? error : new ChannelError("comm_error", messageOf(error)))
      }
    })
  }

  /**
   * Settles request `id` of `conn` with the parent's reply: `ok` resolves, any
   * other code rejects with a `ChannelError` of that code. A reply to nothing
   * pending (e.g. late, after a timeout) is dropped.
   */
  reply(conn: Conn, id: number, rc: string, message: WorkerMessage): void {
    const pending = this.take(conn, id)
    if (pending === undefined) return
    if (rc === "ok") return pending.resolve(message)
    const payload = message.payload
    const detail = typeof payload === "string" ? `: ${payload}` : ""
    pending.reject(new ChannelError(rc, `${pending.channel}/${pending.topic} failed with ${rc}${detail}`, payload))
  }

  /** The reply to request `id` of `conn` was `size` bytes, over the connection's limit: it fails with `msg_too_big`. */
  replyTooBig(conn: Conn, id: number, size: number): void {
    const pending = this.take(conn, id)
    pending?.reject(
      new ChannelError(
        "msg_too_big",
        `the reply to ${pending.channel}/${pending.topic} (${size} bytes) exceeds the limit of ${conn.maxFrame} bytes`
      )
    )
  }

  /** Fails the pipelined requests with `target_unreachable`. */
  failEarly(reason: string): void {
    for (const e of this.early.splice(0)) {
      this.timers.cancel(e.timer)
      e.reject(new ChannelError("target_unreachable", `${e.channel}/${e.topic}: ${reason}`))
    }
  }

  /** Fails the requests pending on `conn` (on every connection when `undefined`) with `target_unreachable`. */
  failPending(conn: Conn | undefined, reason: string): void {
    for (const [id, pending] of this.pending) {
      if (conn !== undefined && pending.conn !== conn) continue
      this.pending.delete(id)
      this.timers.cancel(pending.timer)
      pending.reject(new ChannelError("target_unreachable", `${pending.channel}/${pending.topic}: ${reason}`))
    }
  }

  private take(conn: Conn, id: number): Pending | undefined {
    const pending = this.pending.get(id)
    if (pending === undefined || pending.conn !== conn) return undefined
    this.pending.delete(id)
    this.timers.cancel(pending.timer)
    return pending
  }
}
