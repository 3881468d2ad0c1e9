/**
 * Connection: request/reply both ways over one framed stream, after the
 * handshake. The read path (replies to `Request`, the job's requests to the
 * channel's handler under a concurrency cap, refusals written in the
 * background), and the connection's life: a malformed frame, the stream's end
 * or `close` shut it down, failing every pending request at once. Imports
 * `Request`, `FramedStream`, `MessageFrame` and `Frame`.
 *
 * @since 0.1.0
 */
import { Cause, Deferred, Effect, Either, Exit, FiberSet, Option, Runtime } from "effect"
import type { Scope } from "effect"
import type { RequestError } from "../Errors.js"
import { makeDeadlines } from "../internal/deadlines.js"
import type { Message, Payload } from "../Message.js"
import { ReturnCode } from "../Status.js"
import type * as codec from "./Frame.js"
import type { FramedStream, ReadControl } from "./FramedStream.js"
import * as Frame from "./MessageFrame.js"
import { makeRequests } from "./Request.js"
import type { ChannelRequest, RequestHandler, RequestOutcome } from "./Request.js"

/** Default cap of concurrently handled incoming requests. */
export const DEFAULT_MAX_CONCURRENT_REQUESTS = 64

/** Refusals (`service_unavailable`, `msg_too_big`, ...) queued for writing at most, before the read loop waits for the peer to read. */
const MAX_BACKGROUND_WRITES = 256

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

/** Request/reply over one framed stream, after the handshake. */
export interface Connection {
  /** A request to the job: see `Requests.request`. */
  readonly request: (request: ChannelRequest) => Effect.Effect<Message, RequestError>
  /** `request` with a callback, without a fiber: see `Requests.unsafeRequest`. */
  readonly unsafeRequest: (request: ChannelRequest, done: (outcome: RequestOutcome) => void) => void
  /** Requests sent and still waiting for their reply (for diagnostics and tests). */
  readonly pending: Effect.Effect<number>
  /** Waits until the connection has closed. */
  readonly closed: Effect.Effect<void>
  /** Closes the connection: pending requests fail with `TargetUnreachable`, handlers are interrupted. */
  readonly close: Effect.Effect<void>
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

/**
 * Runs request/reply over `framed` (the handshake already done) until the
 * stream ends, `close` is called, or the scope closes. A malformed frame closes
 * the connection. An oversize frame is skipped by the decoder: a request is
 * answered `msg_too_big` and the connection kept.
 *
 * The read path is synchronous: frames are decoded in the stream's `data`
 * handler and a reply completes its request's `Effect.async` from there, with
 * no fiber in between. The requests' timeouts are deadlines on the clock of
 * the fiber that made the connection, one wake-up for all of them (see
 * `internal/deadlines.ts`). Incoming requests run as fibers of the
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

    const deadlines = makeDeadlines(yield* Effect.clock)
    const requests = makeRequests(framed, jobId, maxFrameBytes, deadlines, log)

    /** Marks the connection closed, fails every pending request at once, destroys the stream. */
    const closeSync = (): void => {
      if (open) {
        open = false
        requests.close()
        deadlines.close()
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
        case "reply":
          return requests.onReply(header, payload)
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
        requests.onOversizeReply(header.id, size)
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

    const connection: Connection = {
      request: requests.request,
      unsafeRequest: requests.unsafeRequest,
      pending: Effect.sync(requests.size),
      closed: Deferred.await(closedSignal),
      close: Effect.suspend(() => {
        shutdownSoon()
        return Deferred.await(closedSignal)
      })
    }
    return { connection, listen }
  })
