/**
 * Request/reply over one framed byte stream (a unix socket, or one end of an
 * in-memory pair): a pending map of request ids with Effect timeouts, incoming
 * requests dispatched to a handler under a concurrency cap, and the
 * connection's end failing every pending request at once.
 *
 * @since 0.1.0
 */
import { Cause, Deferred, Duration, Effect, Either, Exit, FiberSet, Option, Runtime } from "effect"
import type { Scope } from "effect"
import type { Duplex } from "node:stream"
import { InvalidRequest, MessageTooBig, RemoteError, RequestTimeout, TargetUnreachable } from "../Errors.js"
import type { RequestError } from "../Errors.js"
import * as codec from "../internal/codec.js"
import type { RequestOutcome } from "../internal/fastRequest.js"
import { liveClock, plainTimerFor } from "../internal/liveTimer.js"
import type { Message, Payload } from "../Message.js"
import { ReturnCode } from "../Status.js"
import type { ChannelRequest, RequestHandler } from "./ChannelServer.js"
import * as Frame from "./Frame.js"

/** Default cap of concurrently handled incoming requests. */
export const DEFAULT_MAX_CONCURRENT_REQUESTS = 64

/** Refusals (`service_unavailable`, `msg_too_big`, ...) queued for writing at most, before the read loop waits for the peer to read. */
const MAX_BACKGROUND_WRITES = 256

/** Receives a `FramedStream`'s events in push mode (see `FramedStream.listen`). */
export interface FrameListener {
  /** A decoder event (`frame`, `oversize` or `error`), called as soon as it is decoded. */
  readonly onEvent: (event: codec.DecodeEvent) => void
  /** The stream has ended or closed (called once, after the last event). */
  readonly onEnd: () => void
}

/** Flow control of a stream read in push mode. */
export interface ReadControl {
  /** Stops reading from the stream (the peer's writes then wait on the socket buffer). */
  readonly pause: () => void
  /** Reads again after `pause`. */
  readonly resume: () => void
}

/** A byte stream cut into frames, with writes that respect backpressure. */
export interface FramedStream {
  /**
   * The next decoder event (`frame`, `oversize` or `error`); `None` once the
   * stream has ended or closed. One reader at a time; not after `listen`.
   */
  readonly next: Effect.Effect<Option.Option<codec.DecodeEvent>>
  /**
   * Reads until the first event and hands it to `onFirst` synchronously, from
   * the stream's `data` handler (`undefined`: the stream ended or closed
   * first); then reads no more until `listen` (events decoded from the rest of
   * that chunk wait for it). The handshake's way to answer a hello without a
   * turn of a fiber. Call it once, before `listen`, instead of `next`.
   */
  readonly first: (onFirst: (event: codec.DecodeEvent | undefined) => void) => void
  /**
   * Switches to push mode: the events already decoded, then every event as it
   * is decoded, go to `listener` (synchronously, from the stream's `data`
   * handler), and `onEnd` once the stream has ended. Call it once.
   */
  readonly listen: (listener: FrameListener) => ReadControl
  /**
   * Writes one frame's chunks back to back (never interleaved with another
   * frame), then waits for `drain` if the stream's buffer is full. `false` when
   * the stream is closed.
   */
  readonly write: (chunks: ReadonlyArray<Uint8Array>) => Effect.Effect<boolean>
  /**
   * `write` without an Effect: frames are written in call order, at once when
   * no earlier frame waits for `drain`. `done` (optional) gets the same result
   * `write` would, when `write` would complete.
   */
  readonly writeNow: (chunks: ReadonlyArray<Uint8Array>, done?: (written: boolean) => void) => void
  /** Frames waiting for `drain` to be written (beyond the stream's own buffer). */
  readonly queuedWrites: () => number
  /** Destroys the stream (idempotent). */
  readonly destroy: Effect.Effect<void>
}

/** Options of `makeFramedStream`. */
export interface FramedStreamOptions {
  /** Largest frame accepted; larger ones become `oversize` events. */
  readonly maxFrameBytes: number
  /**
   * A tighter limit for the first frame (the hello). `accept` sees the first
   * event as it is decoded; when it returns true the limit becomes
   * `maxFrameBytes` before the rest of that chunk is decoded.
   */
  readonly firstFrame?: {
    readonly maxFrameBytes: number
    readonly accept: (event: codec.DecodeEvent) => boolean
  }
}

/** A frame waiting for the stream to drain, with the callback of its writer. */
interface QueuedWrite {
  readonly chunks: ReadonlyArray<Uint8Array>
  readonly done: ((written: boolean) => void) | undefined
}

/**
 * Wraps a `Duplex` as a `FramedStream`. In pull mode (`next`) the stream is
 * read in paused mode only as fast as `next` is called (so a slow reader slows
 * the sender); in push mode (`listen`) it flows, under the listener's
 * `pause`/`resume`. Writes go through one ordered queue that waits for `drain`.
 * The stream is destroyed when the scope closes.
 */
export const makeFramedStream = (
  stream: Duplex,
  options: FramedStreamOptions
): Effect.Effect<FramedStream, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => unsafeMakeFramedStream(stream, options)),
      (made) => Effect.sync(made.release)
    ),
    (made) => made.framed
  )

/**
 * `makeFramedStream` without a scope: `release` destroys the stream and
 * detaches from it (idempotent). For code that must start reading a stream
 * synchronously (the channel server's accept) and hands `release` to a scope
 * later.
 */
export const unsafeMakeFramedStream = (
  stream: Duplex,
  options: FramedStreamOptions
): { readonly framed: FramedStream; readonly release: () => void } => {
  const decoder = new codec.FrameDecoder(options.firstFrame?.maxFrameBytes ?? options.maxFrameBytes)
  const events: Array<codec.DecodeEvent> = []
  let first = options.firstFrame
  let failed = false
  let ended = stream.destroyed || stream.readableEnded
  let waiter: (() => void) | undefined
  let listener: FrameListener | undefined
  let endDelivered = false
  const wake = () => {
    const resume = waiter
    waiter = undefined
    resume?.()
  }
  const deliverEnd = () => {
    if (listener === undefined || endDelivered) return
    endDelivered = true
    listener.onEnd()
  }
  const onEnd = () => {
    ended = true
    wake()
    deliverFirstEnd()
    deliverEnd()
  }
  const onError = () => {
    // 'close' follows; the error itself ends the stream for us
    ended = true
    wake()
    deliverFirstEnd()
    deliverEnd()
  }
  /** Set by `first` until the first event (or the end) has been handed over. */
  let onFirst: ((event: codec.DecodeEvent | undefined) => void) | undefined
  const deliverFirstEnd = () => {
    const deliver = onFirst
    onFirst = undefined
    deliver?.(undefined)
  }
  let paused = false
  const emit = (event: codec.DecodeEvent) => {
    if (event.type === "error") failed = true
    if (first !== undefined) {
      const accept = first.accept
      first = undefined
      if (accept(event)) decoder.maxFrame = options.maxFrameBytes
    }
    if (onFirst !== undefined) {
      const deliver = onFirst
      onFirst = undefined
      // nothing more is read until `listen`: the rest of this chunk waits in `events`
      paused = true
      stream.pause()
      deliver(event)
      return
    }
    if (listener !== undefined) listener.onEvent(event)
    else events.push(event)
  }
  const onData = (chunk: Uint8Array) => {
    if (failed) return
    decoder.push(chunk, emit)
    if (failed) return listener !== undefined ? deliverEnd() : undefined
    // a pause asked for while Node was switching the stream to flowing mode
    if (paused && !stream.isPaused()) stream.pause()
  }

  // ---- writes: one ordered queue, held while the stream's buffer is full ----
  const queue: Array<QueuedWrite> = []
  let draining = false
  const closedForWrites = () => stream.destroyed || stream.writableEnded
  const flush = () => {
    draining = false
    while (queue.length > 0) {
      const item = queue.shift()!
      if (closedForWrites()) {
        item.done?.(false)
        continue
      }
      let room = true
      for (const chunk of item.chunks) room = stream.write(chunk)
      if (!room) {
        draining = true
        // completes once the stream drains, with the frames queued behind it
        queue.unshift({ chunks: [], done: item.done })
        return
      }
      item.done?.(true)
    }
  }
  const onDrain = () => {
    if (!draining) return
    // the head is the placeholder of the frame that filled the buffer
    const head = queue.shift()
    head?.done?.(true)
    flush()
  }
  const failQueued = () => {
    draining = false
    const waiting = queue.splice(0)
    for (const item of waiting) item.done?.(false)
  }
  const onClose = () => {
    onEnd()
    failQueued()
  }
  const writeNow = (chunks: ReadonlyArray<Uint8Array>, done?: (written: boolean) => void): void => {
    if (closedForWrites()) return done?.(false)
    if (draining || queue.length > 0) {
      queue.push({ chunks, done })
      return
    }
    let room = true
    for (const chunk of chunks) room = stream.write(chunk)
    if (room) return done?.(true)
    draining = true
    queue.push({ chunks: [], done })
  }

  stream.on("readable", wake)
  stream.on("end", onEnd)
  stream.on("close", onClose)
  stream.on("error", onError)
  stream.on("drain", onDrain)
  let released = false
  const release = (): void => {
    if (released) return
    released = true
    onFirst = undefined
    stream.destroy()
    stream.off("readable", wake)
    stream.off("data", onData)
    stream.off("end", onEnd)
    stream.off("close", onClose)
    stream.off("drain", onDrain)
    // keep a no-op error listener: a late error must not crash the process
    stream.off("error", onError)
    stream.on("error", () => {})
    failQueued()
    wake()
  }

  const waitReadable = Effect.async<void>((resume) => {
    if (ended || stream.destroyed) return resume(Effect.void)
    waiter = () => resume(Effect.void)
    return Effect.sync(() => {
      waiter = undefined
    })
  })

  const next: Effect.Effect<Option.Option<codec.DecodeEvent>> = Effect.suspend(() => {
    for (;;) {
      const event = events.shift()
      if (event !== undefined) return Effect.succeed(Option.some(event))
      if (failed || stream.destroyed) return Effect.succeedNone
      const chunk: unknown = stream.read()
      if (chunk === null) break
      decoder.push(chunk as Uint8Array, emit)
    }
    if (ended) return Effect.succeedNone
    return Effect.zipRight(waitReadable, next)
  })

  let flowing = false
  const flow = () => {
    if (flowing) return
    flowing = true
    stream.off("readable", wake)
    // without a 'readable' listener, a 'data' listener makes the stream flow
    stream.on("data", onData)
  }

  const firstEvent = (deliver: (event: codec.DecodeEvent | undefined) => void): void => {
    const ready = events.shift()
    if (ready !== undefined) return deliver(ready)
    if (failed || ended || stream.destroyed) return deliver(undefined)
    onFirst = deliver
    flow()
    stream.resume()
  }

  const listen = (l: FrameListener): ReadControl => {
    listener = l
    for (const event of events.splice(0)) l.onEvent(event)
    if (failed || ended || stream.destroyed) {
      deliverEnd()
    } else {
      flow()
      paused = false
      stream.resume()
    }
    return {
      pause: () => {
        if (paused) return
        paused = true
        stream.pause()
      },
      resume: () => {
        if (!paused) return
        paused = false
        if (!stream.destroyed) stream.resume()
      }
    }
  }

  const write = (chunks: ReadonlyArray<Uint8Array>): Effect.Effect<boolean> =>
    Effect.async<boolean>((resume) => {
      writeNow(chunks, (written) => resume(written ? Effect.succeed(true) : Effect.succeed(false)))
    })

  const destroy = Effect.sync(() => {
    stream.destroy()
  })
  const framed: FramedStream = { next, first: firstEvent, listen, write, writeNow, queuedWrites: () => queue.length, destroy }
  return { framed, release }
}

/** Options of `makeIdleConnection`. */
export interface ConnectionOptions {
  /** The job at the other end (named in errors). */
  readonly jobId: string
  /** Largest frame sent; larger messages fail with `MessageTooBig` before anything is written. */
  readonly maxFrameBytes: number
  /** Handles the peer's `request` and `notify` frames. */
  readonly onRequest: RequestHandler
  /** Beyond this many requests in progress the peer gets `service_unavailable` (default 64). */
  readonly maxConcurrentRequests?: number
}

/** Parameters of `Connection.notify`: a one-way message, no reply. */
export interface ChannelNotification {
  readonly channel: string
  readonly topic: string
  readonly message: Message
}

/** Request/reply over one framed stream, after the handshake. */
export interface Connection {
  /**
   * Sends a `request` frame with a fresh id and waits for its `reply`. Reply
   * codes: `ok` → the reply message; `invalid_request` → `InvalidRequest`;
   * `msg_too_big` → `MessageTooBig`; any other → `RemoteError`. A message over
   * the frame limit → `MessageTooBig` (nothing sent); a payload JSON cannot
   * carry (e.g. a nested `Uint8Array`) → `InvalidRequest` with a `reason`
   * (nothing sent); no reply within `timeout` → `RequestTimeout` (a late reply
   * is dropped); the connection closed or closing → `TargetUnreachable`.
   */
  readonly request: (request: ChannelRequest) => Effect.Effect<Message, RequestError>
  /**
   * `request` without a fiber, for callers outside Effect (the Promise facade):
   * `done` gets the outcome. Only under a plain timer (a timeout `setTimeout`
   * takes); false, and nothing sent, otherwise.
   */
  readonly requestNow: (request: ChannelRequest, done: (outcome: RequestOutcome) => void) => boolean
  /** Sends a `notify` frame (no reply). Errors as for `request`, without the reply ones. */
  readonly notify: (notification: ChannelNotification) => Effect.Effect<void, TargetUnreachable | MessageTooBig | InvalidRequest>
  /** Requests sent and still waiting for their reply (for diagnostics and tests). */
  readonly pending: Effect.Effect<number>
  /** True until the connection has closed. */
  readonly isOpen: Effect.Effect<boolean>
  /** Waits until the connection has closed. */
  readonly closed: Effect.Effect<void>
  /** Closes the connection: pending requests fail with `TargetUnreachable`, handlers are interrupted. */
  readonly close: Effect.Effect<void>
}

/** A reply as the read loop hands it to the waiting request. */
interface ReceivedReply {
  readonly header: codec.FrameHeader
  readonly message: Message
  readonly text: string | undefined
}

const errorText = (cause: Cause.Cause<unknown>): string => {
  if (Cause.isInterruptedOnly(cause)) return "the handler was interrupted"
  const error = Cause.squash(cause)
  if (error instanceof Error) return error.message || error.name
  if (typeof error === "object" && error !== null && typeof (error as { message?: unknown }).message === "string") {
    return (error as { message: string }).message
  }
  return String(error)
}

const replyTooBig = (payload: Payload, fallback: MessageTooBig): MessageTooBig => {
  if (typeof payload === "object" && payload !== null && !(payload instanceof Uint8Array) && !Array.isArray(payload)) {
    const { max, size } = payload as { size?: unknown; max?: unknown }
    if (typeof size === "number" && typeof max === "number") return new MessageTooBig({ size, max })
  }
  return fallback
}

/** How the read path hands a reply, or the failure of the request, to the request waiting for it. */
interface Waiter {
  readonly reply: (reply: ReceivedReply) => void
  readonly fail: (error: RequestError) => void
}


/**
 * A request on the wire. The read path settles it (a reply, a failure) and the
 * requester waits for it, in either order: an outcome that comes before the
 * requester waits is kept for it. Settled once; the timer goes with it.
 */
class PendingRequest implements Waiter {
  timer: ReturnType<typeof setTimeout> | undefined
  private outcome: RequestOutcome | undefined
  private listener: ((outcome: RequestOutcome) => void) | undefined

  constructor(
    readonly id: number,
    private readonly settle: (reply: ReceivedReply) => RequestOutcome
  ) {}

  reply(reply: ReceivedReply): void {
    this.finish(this.settle(reply))
  }

  fail(error: RequestError): void {
    this.finish({ ok: false, error })
  }

  /** Hands the outcome to `listener`, now or once there is one. */
  wait(listener: (outcome: RequestOutcome) => void): void {
    if (this.outcome !== undefined) listener(this.outcome)
    else this.listener = listener
  }

  private finish(outcome: RequestOutcome): void {
    if (this.outcome !== undefined) return
    this.outcome = outcome
    if (this.timer !== undefined) clearTimeout(this.timer)
    const listener = this.listener
    this.listener = undefined
    listener?.(outcome)
  }
}

const outcomeEffect = (outcome: RequestOutcome): Effect.Effect<Message, RequestError> =>
  outcome.ok ? Effect.succeed(outcome.value) : Effect.fail(outcome.error)

/**
 * Runs request/reply over `framed` (the handshake already done) until the
 * stream ends, `close` is called, or the scope closes. A malformed frame closes
 * the connection. An oversize frame is skipped by the decoder: a request is
 * answered `msg_too_big` and the connection kept.
 *
 * The read path is synchronous: frames are decoded in the stream's `data`
 * handler and a reply completes its request's `Effect.async` from there, with
 * no fiber in between. A request waits with one timer when the clock is
 * Effect's live one, and with `Effect.timeoutFail` otherwise (so `TestClock`
 * drives request timeouts in tests). Incoming requests run as fibers of the
 * connection, at most `maxConcurrentRequests` at a time.
 *
 * The connection is made idle: it reads (and dispatches the peer's frames) from
 * `listen()` on. The channel server sets one up while the job's hello is on its
 * way, and listens, synchronously, once it has accepted the hello.
 */
export const makeIdleConnection = (
  framed: FramedStream,
  options: ConnectionOptions
): Effect.Effect<{ readonly connection: Connection; readonly listen: () => void }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { jobId, maxFrameBytes, onRequest } = options
    const maxConcurrent = options.maxConcurrentRequests ?? DEFAULT_MAX_CONCURRENT_REQUESTS
    const pending = new Map<number, Waiter>()
    let nextId = 1
    let open = true
    let active = 0
    const closedSignal = yield* Deferred.make<void>()
    const tasks = yield* FiberSet.make<unknown, unknown>()
    const runTask = yield* FiberSet.runtime(tasks)<never>()
    const runtime = yield* Effect.runtime<never>()
    const runSync = Runtime.runSync(runtime)
    const runFork = Runtime.runFork(runtime)
    /** Logs from the synchronous read path, with the connection's log annotations. */
    const log = (effect: Effect.Effect<void>): void => runSync(effect)

    /** Marks the connection closed, fails every pending request at once, destroys the stream. */
    const closeSync = (): void => {
      if (open) {
        open = false
        const waiting = [...pending.values()]
        pending.clear()
        for (const waiter of waiting) waiter.fail(new TargetUnreachable({ jobId }))
      }
      runSync(framed.destroy)
    }

    /** Also interrupts the handlers still running and signals `closed`. */
    const shutdown = Effect.gen(function* () {
      yield* Effect.sync(closeSync)
      yield* FiberSet.clear(tasks)
      yield* Deferred.succeed(closedSignal, undefined)
    }).pipe(Effect.uninterruptible)
    let shuttingDown = false
    const shutdownSoon = (): void => {
      closeSync()
      if (shuttingDown) return
      shuttingDown = true
      runFork(shutdown)
    }

    /**
     * Writes a refusal without waiting. Beyond `MAX_BACKGROUND_WRITES` of them
     * queued, reading pauses until they are written: a peer that sends requests
     * without reading the replies is slowed down instead of making the parent
     * queue replies without bound.
     */
    let backgroundWrites = 0
    // set by `listen` below, which may already deliver frames (so not a `const` in its TDZ)
    const reading: { control?: ReadControl } = {}
    const sendInBackground = (chunks: ReadonlyArray<Uint8Array>): void => {
      backgroundWrites++
      if (backgroundWrites >= MAX_BACKGROUND_WRITES) reading.control?.pause()
      framed.writeNow(chunks, () => {
        backgroundWrites--
        if (backgroundWrites < MAX_BACKGROUND_WRITES) reading.control?.resume()
      })
    }

    const sendReply = (id: number, rc: string, payload: Payload) =>
      Effect.gen(function* () {
        const header = { kind: "reply" as const, id, rc }
        const encoded = Frame.encodePayloadFrame(header, payload, maxFrameBytes)
        if (Either.isRight(encoded)) return yield* framed.write(encoded.right.chunks)
        const error = encoded.left
        const fallback =
          error._tag === "MessageTooBig"
            ? Frame.encodePayloadFrame({ kind: "reply", id, rc: ReturnCode.MsgTooBig }, { size: error.size, max: error.max }, maxFrameBytes)
            : Frame.encodePayloadFrame({ kind: "reply", id, rc: ReturnCode.ProcessException }, `reply not sendable: ${error.reason}`, maxFrameBytes)
        return Either.isRight(fallback) ? yield* framed.write(fallback.right.chunks) : false
      })

    const serve = (header: codec.FrameHeader, message: Message, reply: boolean) => {
      const channel = header.channel!
      const topic = header.topic!
      const id = header.id!
      const handled = Effect.sync(() => onRequest({ channel, topic, message }))
      return Effect.gen(function* () {
        const handler = yield* Effect.exit(handled)
        if (Exit.isFailure(handler)) {
          yield* Effect.logWarning(`the handler lookup for ${channel}/${topic} failed: ${errorText(handler.cause)}`)
          if (reply) yield* sendReply(id, ReturnCode.ProcessException, errorText(handler.cause))
          return
        }
        if (Option.isNone(handler.value)) {
          yield* Effect.logDebug(`no handler for ${channel}/${topic}`)
          if (reply) yield* sendReply(id, ReturnCode.InvalidRequest, `no handler for ${channel}/${topic}`)
          return
        }
        const result = yield* Effect.exit(handler.value.value)
        if (Exit.isSuccess(result)) {
          if (reply) yield* sendReply(id, ReturnCode.Ok, result.value)
          return
        }
        const text = errorText(result.cause)
        yield* Effect.logDebug(`the handler of ${channel}/${topic} failed: ${text}`)
        if (reply) yield* sendReply(id, ReturnCode.ProcessException, text)
      }).pipe(
        Effect.ensuring(
          Effect.sync(() => {
            active--
          })
        )
      )
    }

    /** Handles one decoded frame; a string is the reason it is malformed. */
    const onFrame = (header: codec.FrameHeader, payload: Uint8Array): string | undefined => {
      switch (header.kind) {
        case "reply": {
          if (header.id === undefined) return "reply without an id"
          const message = Frame.decodeMessage(header, payload)
          if (Either.isLeft(message)) return message.left.reason
          const waiter = pending.get(header.id)
          if (waiter === undefined) {
            log(Effect.logDebug(`dropped a late or unknown reply (id ${header.id})`))
            return undefined
          }
          pending.delete(header.id)
          const rc = header.rc ?? ReturnCode.Ok
          waiter.reply({
            header,
            message: message.right,
            text: rc === ReturnCode.Ok ? undefined : Frame.payloadText(header, payload)
          })
          return undefined
        }
        case "request":
        case "notify": {
          const isRequest = header.kind === "request"
          if (isRequest && header.id === undefined) return "request without an id"
          if (header.channel === undefined || header.topic === undefined) {
            // not dispatchable, but well-formed: refuse it and keep the connection
            if (isRequest) {
              const refusal = Frame.encodePayloadFrame(
                { kind: "reply", id: header.id!, rc: ReturnCode.InvalidRequest },
                "a request needs a channel and a topic",
                maxFrameBytes
              )
              if (Either.isRight(refusal)) sendInBackground(refusal.right.chunks)
            }
            return undefined
          }
          const message = Frame.decodeMessage(header, payload)
          if (Either.isLeft(message)) return message.left.reason
          if (active >= maxConcurrent) {
            log(Effect.logWarning(`${maxConcurrent} requests in progress: refused ${header.channel}/${header.topic}`))
            if (isRequest) {
              const busy = Frame.encodePayloadFrame(
                { kind: "reply", id: header.id!, rc: ReturnCode.ServiceUnavailable },
                `${maxConcurrent} requests in progress`,
                maxFrameBytes
              )
              if (Either.isRight(busy)) sendInBackground(busy.right.chunks)
            }
            return undefined
          }
          active++
          runTask(serve(header, message.right, isRequest))
          return undefined
        }
        default:
          return `unexpected ${header.kind} frame after the handshake`
      }
    }

    const onOversize = (header: codec.FrameHeader, size: number): void => {
      log(Effect.logWarning(`skipped a ${header.kind} frame of ${size} bytes (limit ${maxFrameBytes})`))
      if (header.kind === "request" && header.id !== undefined) {
        const reply = Frame.encodePayloadFrame(
          { kind: "reply", id: header.id, rc: ReturnCode.MsgTooBig },
          { size, max: maxFrameBytes },
          maxFrameBytes
        )
        if (Either.isRight(reply)) sendInBackground(reply.right.chunks)
      } else if (header.kind === "reply" && header.id !== undefined) {
        const waiter = pending.get(header.id)
        if (waiter !== undefined) {
          pending.delete(header.id)
          waiter.fail(new MessageTooBig({ size, max: maxFrameBytes }))
        }
      }
    }

    yield* Effect.addFinalizer(() => shutdown)
    let listening = false
    const listen = (): void => {
      if (listening || !open) return
      listening = true
      reading.control = framed.listen({
        onEvent: (event) => {
          if (!open) return
          if (event.type === "error") {
            log(Effect.logWarning(`malformed frame, closing the connection: ${event.reason}`))
            return shutdownSoon()
          }
          if (event.type === "oversize") return onOversize(event.header, event.size)
          const malformed = onFrame(event.header, event.payload)
          if (malformed !== undefined) {
            log(Effect.logWarning(`malformed frame, closing the connection: ${malformed}`))
            shutdownSoon()
          }
        },
        onEnd: shutdownSoon
      })
    }

    /** Encodes an outgoing frame; a payload JSON cannot carry is the caller's `InvalidRequest`. */
    const encode = (
      kind: "request" | "notify",
      id: number | undefined,
      channel: string,
      topic: string,
      message: Message
    ): Either.Either<Frame.EncodedFrame, MessageTooBig | InvalidRequest> =>
      Either.mapLeft(
        Frame.encodeMessage(id === undefined ? { kind, channel, topic } : { kind, id, channel, topic }, message, maxFrameBytes),
        (error) => (error._tag === "PayloadNotSendable" ? new InvalidRequest({ jobId, channel, topic, reason: error.reason }) : error)
      )

    /** The outcome of a request from its reply's code. */
    const settle = (reply: ReceivedReply, req: ChannelRequest, size: number): RequestOutcome => {
      const rc = reply.header.rc ?? ReturnCode.Ok
      switch (rc) {
        case ReturnCode.Ok:
          return { ok: true, value: reply.message }
        case ReturnCode.InvalidRequest:
          return { ok: false, error: new InvalidRequest({ jobId, channel: req.channel, topic: req.topic }) }
        case ReturnCode.MsgTooBig:
          return { ok: false, error: replyTooBig(reply.message.payload, new MessageTooBig({ size, max: maxFrameBytes })) }
        default:
          return { ok: false, error: new RemoteError({ jobId, returnCode: rc, detail: reply.text ?? rc }) }
      }
    }

    /**
     * Puts a request on the wire: encodes it, registers it, writes its frame (so
     * the peer starts on it while this side does its bookkeeping) and, with
     * `timed`, arms its timer. The read path settles it.
     */
    const send = (req: ChannelRequest, ms: number, timed: boolean): PendingRequest | RequestOutcome => {
      if (!open) return { ok: false, error: new TargetUnreachable({ jobId }) }
      const id = nextId++
      const frame = encode("request", id, req.channel, req.topic, req.message)
      if (Either.isLeft(frame)) return { ok: false, error: frame.left }
      const size = frame.right.size
      const pendingRequest = new PendingRequest(id, (reply) => settle(reply, req, size))
      pending.set(id, pendingRequest)
      framed.writeNow(frame.right.chunks, (written) => {
        if (written || pending.get(id) !== pendingRequest) return
        pending.delete(id)
        pendingRequest.fail(new TargetUnreachable({ jobId }))
      })
      if (timed) {
        pendingRequest.timer = setTimeout(() => {
          if (pending.get(id) !== pendingRequest) return
          pending.delete(id)
          pendingRequest.fail(new RequestTimeout({ jobId, channel: req.channel, topic: req.topic, timeout: ms }))
        }, ms)
      }
      return pendingRequest
    }

    /** A number is milliseconds (the common case: no Duration to build). */
    const millisOf = (timeout: Duration.DurationInput): number =>
      typeof timeout === "number" ? timeout : Duration.toMillis(Duration.decode(timeout))

    /**
     * Waits for the reply, the timeout or the connection's end. Under the live
     * clock the timeout is one timer, else `Effect.timeoutFail`.
     */
    const request = (req: ChannelRequest): Effect.Effect<Message, RequestError> =>
      Effect.clockWith((clock) => {
        const ms = millisOf(req.timeout)
        const timed = plainTimerFor(clock, ms)
        const sent = send(req, ms, timed)
        if (!(sent instanceof PendingRequest)) return outcomeEffect(sent)
        const wait = Effect.async<Message, RequestError>((resume) => {
          sent.wait((outcome) => resume(outcomeEffect(outcome)))
          // With the timer, an interrupted request is left to its reply or its
          // timer (whichever comes first drops the entry): a canceler here
          // costs every request an interruption handler, and with it several
          // times the garbage-collection work (see bench/FINDINGS.md). Under
          // `timeoutFail` the canceler is what removes the entry.
          if (timed) return
          return Effect.sync(() => {
            if (pending.get(sent.id) === sent) pending.delete(sent.id)
          })
        })
        return timed
          ? wait
          : Effect.timeoutFail(wait, {
              duration: Duration.decode(req.timeout),
              onTimeout: () => new RequestTimeout({ jobId, channel: req.channel, topic: req.topic, timeout: ms })
            })
      })

    const requestNow = (req: ChannelRequest, done: (outcome: RequestOutcome) => void): boolean => {
      const ms = millisOf(req.timeout)
      if (!plainTimerFor(liveClock, ms)) return false
      const sent = send(req, ms, true)
      if (sent instanceof PendingRequest) sent.wait(done)
      else done(sent)
      return true
    }

    const notify = (n: ChannelNotification): Effect.Effect<void, TargetUnreachable | MessageTooBig | InvalidRequest> =>
      Effect.suspend((): Effect.Effect<void, TargetUnreachable | MessageTooBig | InvalidRequest> => {
        if (!open) return Effect.fail(new TargetUnreachable({ jobId }))
        const frame = encode("notify", undefined, n.channel, n.topic, n.message)
        if (Either.isLeft(frame)) return Effect.fail(frame.left)
        return Effect.flatMap(framed.write(frame.right.chunks), (written) =>
          written ? Effect.void : Effect.fail(new TargetUnreachable({ jobId }))
        )
      })

    const connection: Connection = {
      request,
      requestNow,
      notify,
      pending: Effect.sync(() => pending.size),
      isOpen: Effect.sync(() => open),
      closed: Deferred.await(closedSignal),
      close: Effect.suspend(() => {
        shutdownSoon()
        return Deferred.await(closedSignal)
      })
    }
    return { connection, listen }
  })
