/**
 * Request: the parent's requests to the job over one framed stream. Request
 * ids, the pending map, one timer per request (or `Effect.timeoutFail` under a
 * clock that is not the live one), replies settling their request from the
 * read path, and the connection's end failing every pending request at once.
 * Also the request types the channel's handlers see. Imports `Frame`,
 * `MessageFrame` and `FramedStream` (types) and nothing above them.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Either } from "effect"
import type { Option } from "effect"
import { InvalidRequest, MessageTooBig, RemoteError, RequestTimeout, TargetUnreachable } from "../Errors.js"
import type { RequestError } from "../Errors.js"
import { liveClock, plainTimerFor } from "../internal/liveTimer.js"
import type { Message, Payload } from "../Message.js"
import { ReturnCode } from "../Status.js"
import type * as codec from "./Frame.js"
import type { FramedStream } from "./FramedStream.js"
import * as Frame from "./MessageFrame.js"

/** A request or notification the job sent to the parent. */
export interface IncomingRequest {
  readonly channel: string
  readonly topic: string
  readonly message: Message
}

/**
 * Handles a job's request. `None`: no handler (the job gets `invalid_request`).
 * A failure or defect of the Effect answers `process_exception` with its message.
 */
export type RequestHandler = (request: IncomingRequest) => Option.Option<Effect.Effect<Payload, unknown>>

/** Parameters of `JobChannel.request`. */
export interface ChannelRequest {
  readonly channel: string
  readonly topic: string
  readonly message: Message
  readonly timeout: Duration.DurationInput
}

/** A request's outcome. */
export type RequestOutcome =
  | { readonly ok: true; readonly value: Message }
  | { readonly ok: false; readonly error: RequestError }

/** A reply as the read loop hands it to the waiting request. */
interface ReceivedReply {
  readonly header: codec.FrameHeader
  readonly message: Message
  readonly text: string | undefined
}

const replyTooBig = (payload: Payload, fallback: MessageTooBig): MessageTooBig => {
  if (typeof payload === "object" && payload !== null && !(payload instanceof Uint8Array) && !Array.isArray(payload)) {
    const { max, size } = payload as { size?: unknown; max?: unknown }
    if (typeof size === "number" && typeof max === "number") return new MessageTooBig({ size, max })
  }
  return fallback
}

/**
 * A request on the wire. The read path settles it (a reply, a failure) and the
 * requester waits for it, in either order: an outcome that comes before the
 * requester waits is kept for it. Settled once; the timer goes with it.
 */
class PendingRequest {
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

/** A number is milliseconds (the common case: no Duration to build). */
const millisOf = (timeout: Duration.DurationInput): number =>
  typeof timeout === "number" ? timeout : Duration.toMillis(Duration.decode(timeout))

/** The requests of one connection (see `makeRequests`). */
export interface Requests {
  /**
   * Sends a `request` frame with a fresh id and waits for its `reply`. Reply
   * codes: `ok` → the reply message; `invalid_request` → `InvalidRequest`;
   * `msg_too_big` → `MessageTooBig`; any other → `RemoteError`. A message over
   * the frame limit → `MessageTooBig` (nothing sent); a payload JSON cannot
   * carry (e.g. a nested `Uint8Array`) → `InvalidRequest` with a `reason`
   * (nothing sent); no reply within `timeout` → `RequestTimeout` (a late reply
   * is dropped); the connection closed or closing → `TargetUnreachable`.
   * Under the live clock the timeout is one timer, else `Effect.timeoutFail`.
   */
  readonly request: (request: ChannelRequest) => Effect.Effect<Message, RequestError>
  /**
   * `request` without a fiber, for callers outside Effect (the Promise facade):
   * `done` gets the outcome. Only under a plain timer (a timeout `setTimeout`
   * takes); false, and nothing sent, otherwise.
   */
  readonly requestNow: (request: ChannelRequest, done: (outcome: RequestOutcome) => void) => boolean
  /** A `reply` frame from the read path; a string is the reason it is malformed. */
  readonly onReply: (header: codec.FrameHeader, payload: Uint8Array) => string | undefined
  /** A `reply` frame over the frame limit (skipped by the decoder): its request fails with `MessageTooBig`. */
  readonly onOversizeReply: (id: number, size: number) => void
  /** The connection is closing: every pending request fails with `TargetUnreachable` at once, and later ones too. */
  readonly close: () => void
  /** Requests sent and still waiting for their reply. */
  readonly size: () => number
}

/**
 * The parent's requests over `framed`. `log` runs a log line from the
 * synchronous read path (a late or unknown reply).
 */
export const makeRequests = (
  framed: FramedStream,
  jobId: string,
  maxFrameBytes: number,
  log: (effect: Effect.Effect<void>) => void
): Requests => {
  const pending = new Map<number, PendingRequest>()
  let nextId = 1
  let open = true

  const close = (): void => {
    if (!open) return
    open = false
    const waiting = [...pending.values()]
    pending.clear()
    for (const waiter of waiting) waiter.fail(new TargetUnreachable({ jobId }))
  }

  const onReply = (header: codec.FrameHeader, payload: Uint8Array): string | undefined => {
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

  const onOversizeReply = (id: number, size: number): void => {
    const waiter = pending.get(id)
    if (waiter !== undefined) {
      pending.delete(id)
      waiter.fail(new MessageTooBig({ size, max: maxFrameBytes }))
    }
  }

  /** Encodes an outgoing request; a payload JSON cannot carry is the caller's `InvalidRequest`. */
  const encode = (id: number, channel: string, topic: string, message: Message): Either.Either<Frame.EncodedFrame, MessageTooBig | InvalidRequest> =>
    Either.mapLeft(
      Frame.encodeMessage({ kind: "request", id, channel, topic }, message, maxFrameBytes),
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
    const frame = encode(id, req.channel, req.topic, req.message)
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

  return { request, requestNow, onReply, onOversizeReply, close, size: () => pending.size }
}
