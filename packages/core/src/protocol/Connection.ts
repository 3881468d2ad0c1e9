/**
 * Request/reply over one framed byte stream (a unix socket, or one end of an
 * in-memory pair): a pending map of request ids with Effect timeouts, incoming
 * requests dispatched to a handler under a concurrency cap, and the
 * connection's end failing every pending request at once.
 *
 * @since 0.1.0
 */
import { Cause, Deferred, Duration, Effect, Either, Exit, FiberSet, Option } from "effect"
import type { Scope } from "effect"
import type { Duplex } from "node:stream"
import { InvalidRequest, MessageTooBig, RemoteError, RequestTimeout, TargetUnreachable } from "../Errors.js"
import type { RequestError } from "../Errors.js"
import * as codec from "../internal/codec.js"
import type { Message, Payload } from "../Message.js"
import { ReturnCode } from "../Status.js"
import type { ChannelRequest, RequestHandler } from "./ChannelServer.js"
import * as Frame from "./Frame.js"

/** Default cap of concurrently handled incoming requests. */
export const DEFAULT_MAX_CONCURRENT_REQUESTS = 64

/** Refusals (`service_unavailable`, `msg_too_big`, ...) queued for writing at most, before the read loop waits for the peer to read. */
const MAX_BACKGROUND_WRITES = 256

/** A byte stream cut into frames, with writes that respect backpressure. */
export interface FramedStream {
  /**
   * The next decoder event (`frame`, `oversize` or `error`); `None` once the
   * stream has ended or closed. One reader at a time.
   */
  readonly next: Effect.Effect<Option.Option<codec.DecodeEvent>>
  /**
   * Writes one frame's chunks back to back (never interleaved with another
   * frame), then waits for `drain` if the stream's buffer is full. `false` when
   * the stream is closed.
   */
  readonly write: (chunks: ReadonlyArray<Uint8Array>) => Effect.Effect<boolean>
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

/**
 * Wraps a `Duplex` as a `FramedStream`. The stream is read in paused mode only
 * as fast as `next` is called (so a slow reader slows the sender), and is
 * destroyed when the scope closes.
 */
export const makeFramedStream = (
  stream: Duplex,
  options: FramedStreamOptions
): Effect.Effect<FramedStream, never, Scope.Scope> =>
  Effect.gen(function* () {
    const decoder = new codec.FrameDecoder(options.firstFrame?.maxFrameBytes ?? options.maxFrameBytes)
    const events: Array<codec.DecodeEvent> = []
    let first = options.firstFrame
    let failed = false
    let ended = stream.destroyed || stream.readableEnded
    let waiter: (() => void) | undefined
    const wake = () => {
      const resume = waiter
      waiter = undefined
      resume?.()
    }
    const onEnd = () => {
      ended = true
      wake()
    }
    const onError = () => {
      // 'close' follows; the error itself ends the stream for us
      ended = true
      wake()
    }
    const emit = (event: codec.DecodeEvent) => {
      if (event.type === "error") failed = true
      if (first !== undefined) {
        const accept = first.accept
        first = undefined
        if (accept(event)) decoder.maxFrame = options.maxFrameBytes
      }
      events.push(event)
    }
    stream.on("readable", wake)
    stream.on("end", onEnd)
    stream.on("close", onEnd)
    stream.on("error", onError)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        stream.destroy()
        stream.off("readable", wake)
        stream.off("end", onEnd)
        stream.off("close", onEnd)
        // keep a no-op error listener: a late error must not crash the process
        stream.off("error", onError)
        stream.on("error", () => {})
        wake()
      })
    )

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

    const writeLock = yield* Effect.makeSemaphore(1)
    const write = (chunks: ReadonlyArray<Uint8Array>): Effect.Effect<boolean> =>
      writeLock.withPermits(1)(
        Effect.async<boolean>((resume) => {
          if (stream.destroyed || stream.writableEnded) return resume(Effect.succeed(false))
          let room = true
          for (const chunk of chunks) room = stream.write(chunk)
          if (room) return resume(Effect.succeed(true))
          const cleanup = () => {
            stream.off("drain", onDrain)
            stream.off("close", onClose)
          }
          const onDrain = () => {
            cleanup()
            resume(Effect.succeed(true))
          }
          const onClose = () => {
            cleanup()
            resume(Effect.succeed(false))
          }
          stream.on("drain", onDrain)
          stream.on("close", onClose)
          return Effect.sync(cleanup)
        })
      )

    const destroy = Effect.sync(() => {
      stream.destroy()
    })
    return { next, write, destroy } satisfies FramedStream
  })

/** Options of `makeConnection`. */
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

/**
 * Runs request/reply over `framed` (the handshake already done) until the
 * stream ends, `close` is called, or the scope closes. A malformed frame closes
 * the connection. An oversize frame is skipped by the decoder: a request is
 * answered `msg_too_big` and the connection kept.
 */
export const makeConnection = (
  framed: FramedStream,
  options: ConnectionOptions
): Effect.Effect<Connection, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { jobId, maxFrameBytes, onRequest } = options
    const maxConcurrent = options.maxConcurrentRequests ?? DEFAULT_MAX_CONCURRENT_REQUESTS
    const pending = new Map<number, Deferred.Deferred<ReceivedReply, MessageTooBig | TargetUnreachable>>()
    let nextId = 1
    let open = true
    let active = 0
    const closedSignal = yield* Deferred.make<void>()
    const tasks = yield* FiberSet.make<unknown, unknown>()

    /** Marks the connection closed, fails every pending request at once, destroys the stream. */
    const closeNow = Effect.gen(function* () {
      const waiting = yield* Effect.sync(() => {
        open = false
        const all = [...pending.values()]
        pending.clear()
        return all
      })
      for (const deferred of waiting) yield* Deferred.fail(deferred, new TargetUnreachable({ jobId }))
      yield* framed.destroy
    }).pipe(Effect.uninterruptible)

    /** After the read loop: also interrupts the handlers still running and signals `closed`. */
    const shutdown = Effect.gen(function* () {
      yield* closeNow
      yield* FiberSet.clear(tasks)
      yield* Deferred.succeed(closedSignal, undefined)
    }).pipe(Effect.uninterruptible)

    /**
     * Writes a frame in the background so the read loop does not wait on the peer,
     * up to `MAX_BACKGROUND_WRITES` queued writes; beyond that the read loop waits
     * for its write, so a peer that sends requests without reading the replies is
     * slowed down instead of making the parent queue replies without bound.
     */
    let backgroundWrites = 0
    const sendInBackground = (chunks: ReadonlyArray<Uint8Array>): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (backgroundWrites >= MAX_BACKGROUND_WRITES) return Effect.asVoid(framed.write(chunks))
        backgroundWrites++
        const write = Effect.ensuring(
          framed.write(chunks),
          Effect.sync(() => {
            backgroundWrites--
          })
        )
        return Effect.asVoid(FiberSet.run(tasks, write))
      })

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
    const dispatch = (header: codec.FrameHeader, payload: Uint8Array): Effect.Effect<string | undefined> =>
      Effect.gen(function* () {
        switch (header.kind) {
          case "reply": {
            if (header.id === undefined) return "reply without an id"
            const message = Frame.decodeMessage(header, payload)
            if (Either.isLeft(message)) return message.left.reason
            const deferred = pending.get(header.id)
            if (deferred === undefined) {
              yield* Effect.logDebug(`dropped a late or unknown reply (id ${header.id})`)
              return undefined
            }
            pending.delete(header.id)
            const rc = header.rc ?? ReturnCode.Ok
            yield* Deferred.succeed(deferred, {
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
                if (Either.isRight(refusal)) yield* sendInBackground(refusal.right.chunks)
              }
              return undefined
            }
            const message = Frame.decodeMessage(header, payload)
            if (Either.isLeft(message)) return message.left.reason
            if (active >= maxConcurrent) {
              yield* Effect.logWarning(`${maxConcurrent} requests in progress: refused ${header.channel}/${header.topic}`)
              if (isRequest) {
                const busy = Frame.encodePayloadFrame(
                  { kind: "reply", id: header.id!, rc: ReturnCode.ServiceUnavailable },
                  `${maxConcurrent} requests in progress`,
                  maxFrameBytes
                )
                if (Either.isRight(busy)) yield* sendInBackground(busy.right.chunks)
              }
              return undefined
            }
            active++
            yield* FiberSet.run(tasks, serve(header, message.right, isRequest))
            return undefined
          }
          default:
            return `unexpected ${header.kind} frame after the handshake`
        }
      })

    const onOversize = (header: codec.FrameHeader, size: number) =>
      Effect.gen(function* () {
        yield* Effect.logWarning(`skipped a ${header.kind} frame of ${size} bytes (limit ${maxFrameBytes})`)
        if (header.kind === "request" && header.id !== undefined) {
          const reply = Frame.encodePayloadFrame(
            { kind: "reply", id: header.id, rc: ReturnCode.MsgTooBig },
            { size, max: maxFrameBytes },
            maxFrameBytes
          )
          if (Either.isRight(reply)) yield* sendInBackground(reply.right.chunks)
        } else if (header.kind === "reply" && header.id !== undefined) {
          const deferred = pending.get(header.id)
          if (deferred !== undefined) {
            pending.delete(header.id)
            yield* Deferred.fail(deferred, new MessageTooBig({ size, max: maxFrameBytes }))
          }
        }
      })

    const readLoop = Effect.gen(function* () {
      for (;;) {
        const next = yield* framed.next
        if (Option.isNone(next)) return
        const event = next.value
        if (event.type === "error") {
          yield* Effect.logWarning(`malformed frame, closing the connection: ${event.reason}`)
          return
        }
        if (event.type === "oversize") {
          yield* onOversize(event.header, event.size)
          continue
        }
        const malformed = yield* dispatch(event.header, event.payload)
        if (malformed !== undefined) {
          yield* Effect.logWarning(`malformed frame, closing the connection: ${malformed}`)
          return
        }
      }
    }).pipe(Effect.ensuring(shutdown))

    yield* Effect.addFinalizer(() => shutdown)
    yield* Effect.forkScoped(readLoop)

    const send = (kind: "request" | "notify", id: number | undefined, channel: string, topic: string, message: Message) =>
      Frame.encodeMessage(id === undefined ? { kind, channel, topic } : { kind, id, channel, topic }, message, maxFrameBytes).pipe(
        Effect.catchTag("PayloadNotSendable", (error) => Effect.fail(new InvalidRequest({ jobId, channel, topic, reason: error.reason })))
      )

    const request = (req: ChannelRequest): Effect.Effect<Message, RequestError> =>
      Effect.gen(function* () {
        const { channel, topic } = req
        if (!open) return yield* new TargetUnreachable({ jobId })
        const id = nextId++
        const frame = yield* send("request", id, channel, topic, req.message)
        const deferred = yield* Deferred.make<ReceivedReply, MessageTooBig | TargetUnreachable>()
        const timeout = Duration.decode(req.timeout)
        const exchange = Effect.gen(function* () {
          const registered = yield* Effect.sync(() => {
            if (!open) return false
            pending.set(id, deferred)
            return true
          })
          if (!registered) return yield* new TargetUnreachable({ jobId })
          const written = yield* framed.write(frame.chunks)
          if (!written) return yield* new TargetUnreachable({ jobId })
          return yield* Deferred.await(deferred)
        }).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new RequestTimeout({ jobId, channel, topic, timeout: Duration.toMillis(timeout) })
          }),
          Effect.ensuring(
            Effect.sync(() => {
              pending.delete(id)
            })
          )
        )
        const reply = yield* exchange
        const rc = reply.header.rc ?? ReturnCode.Ok
        switch (rc) {
          case ReturnCode.Ok:
            return reply.message
          case ReturnCode.InvalidRequest:
            return yield* new InvalidRequest({ jobId, channel, topic })
          case ReturnCode.MsgTooBig:
            return yield* replyTooBig(reply.message.payload, new MessageTooBig({ size: frame.size, max: maxFrameBytes }))
          default:
            return yield* new RemoteError({ jobId, returnCode: rc, detail: reply.text ?? rc })
        }
      })

    const notify = (n: ChannelNotification): Effect.Effect<void, TargetUnreachable | MessageTooBig | InvalidRequest> =>
      Effect.gen(function* () {
        if (!open) return yield* new TargetUnreachable({ jobId })
        const frame = yield* send("notify", undefined, n.channel, n.topic, n.message)
        const written = yield* framed.write(frame.chunks)
        if (!written) return yield* new TargetUnreachable({ jobId })
      })

    return {
      request,
      notify,
      pending: Effect.sync(() => pending.size),
      isOpen: Effect.sync(() => open),
      closed: Deferred.await(closedSignal),
      close: Effect.zipRight(closeNow, Deferred.await(closedSignal))
    } satisfies Connection
  })
