/**
 * The worker's end of the channel: the link's life (connecting, live, down and
 * reconnecting, failed, closed), requests both ways over whichever connection
 * is live, and closing. Internal to the worker runtime; the framing of one
 * connection is `./connection.ts`, dialling `./dial.ts`, the requests to the
 * parent `./requests.ts`.
 */
import type { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import { type DecodeEvent, decodePayload, FrameDecoder, type FrameHeader } from "../protocol/Frame.js"
import { type Answer, Conn, toBuffer } from "./connection.js"
import { dial, type DialHooks, type DialOptions } from "./dial.js"
import { ChannelError, messageOf } from "./errors.js"
import { receivedHeaders } from "./payload.js"
import { Requests } from "./requests.js"
import type { OutgoingMessage, WorkerMessage } from "./types.js"

/** Options of a `ParentLink`. */
export interface LinkOptions extends DialOptions {
  /** How long to keep trying to (re)connect, in ms. */
  readonly reconnectMs: number
  /** Answers a request: at once (replied before the next frame is read) or as a promise. Notifications' answers are dropped. */
  readonly onRequest: (channel: string, topic: string, message: WorkerMessage) => Answer | Promise<Answer>
  /** The connection dropped and could not be re-established within `reconnectMs`. */
  readonly onGiveUp: () => void
}

type State = "init" | "connecting" | "live" | "down" | "failed" | "closed"

/** The worker's connection to its parent. */
export class ParentLink {
  private state: State = "init" as State
  private conn: Conn | undefined
  private attemptSocket: Duplex | undefined
  private readonly requests: Requests
  private waiters: Array<(live: boolean) => void> = []
  private readonly hooks: DialHooks

  constructor(private readonly options: LinkOptions) {
    this.requests = new Requests(options.timers)
    this.hooks = {
      isClosed: () => this.isClosed,
      attemptStarted: (socket) => {
        this.attemptSocket = socket
      },
      attemptEnded: (socket) => {
        if (this.attemptSocket === socket) this.attemptSocket = undefined
      },
      pipelined: () => this.requests.earlyChunks(),
      install: (socket, maxFrame, rest) => this.install(socket, maxFrame, rest)
    }
  }

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
    const ok = await dial(this.options, this.hooks, Date.now() + this.options.reconnectMs)
    if (ok) return
    if (!this.isClosed) this.setState("failed")
    this.requests.failEarly("could not connect to the parent")
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
    return this.requests.afterHello(channel, topic, message, timeoutMs, onAnswer)
  }

  /** A request to the parent; see `JobContext.request`. */
  request(channel: string, topic: string, message: OutgoingMessage | undefined, timeoutMs: number): Promise<WorkerMessage> {
    const conn = this.conn
    if (conn === undefined || this.state !== "live") {
      return Promise.reject(new ChannelError("target_unreachable", `not connected to the parent (request ${channel}/${topic})`))
    }
    return this.requests.send(conn, channel, topic, message, timeoutMs)
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
    this.requests.failPending(undefined, "the worker is exiting")
    this.requests.failEarly("the worker is exiting")
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
    this.requests.adoptEarly(conn)
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
    this.requests.failPending(conn, `the connection to the parent was lost: ${reason}`)
    if (this.state !== "live") return
    this.state = "down"
    this.options.log(`flexec worker: ${reason}; reconnecting for up to ${this.options.reconnectMs} ms`)
    void this.reconnect()
  }

  /** Dials again for `reconnectMs` after the live connection was lost; gives up (`onGiveUp`) when that fails. */
  private async reconnect(): Promise<void> {
    let ok: boolean
    try {
      ok = await dial(this.options, this.hooks, Date.now() + this.options.reconnectMs)
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
          conn.reply(header.id, { rc: "msg_too_big" }, this.options.log)
        } else if (header.kind === "reply" && header.id !== undefined) {
          this.requests.replyTooBig(conn, header.id, event.size)
        } else if (header.kind === "hello" || header.kind === "hello_ok") {
          this.lost(conn, `unexpected ${header.kind} frame from the parent`)
        }
        return
      }
      case "frame":
        return this.onFrame(conn, event.header, event.payload)
    }
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
    if (kind === "reply") return this.requests.reply(conn, header.id!, header.rc ?? "ok", message)
    const { channel, topic } = header
    if (channel === undefined || topic === undefined) {
      if (kind === "request") conn.reply(header.id!, { rc: "invalid_request", payload: "a request needs a channel and a topic" }, this.options.log)
      return
    }
    const answered = (answer: Answer) => {
      if (kind === "request") conn.reply(header.id!, answer, this.options.log)
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
      if (kind === "request") conn.reply(header.id!, { rc: "process_exception", payload: messageOf(error) }, this.options.log)
    })
  }
}
