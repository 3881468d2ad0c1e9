/**
 * Request: the parent's requests to the job over one framed stream. Request
 * ids, the pending map, each request's deadline (in the connection's one
 * `Deadlines`), replies settling their request from the read path, and the
 * connection's end failing every pending request at once. One implementation:
 * `unsafeRequest` takes a callback, and `request` is `Effect.async` over it.
 * Also the request types the channel's handlers see. Imports `Frame`,
 * `MessageFrame` and `FramedStream` (types) and nothing above them.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Either } from "effect"
import type { Option } from "effect"
import { InvalidRequest, MessageTooBig, RemoteError, RequestTimeout, TargetUnreachable } from "../Errors.js"
import type { RequestError } from "../Errors.js"
import type { Deadline, Deadlines } from "../internal/deadlines.js"
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
 * A request on the wire. The read path settles it (a reply, a failure, its
 * deadline) and the requester's `done` gets the outcome. Settled once; the
 * deadline goes with it.
 */
class PendingRequest {
  deadline: Deadline | undefined = undefined
  private settled = false

  constructor(
    readonly id: number,
    private readonly settle: (reply: ReceivedReply) => RequestOutcome,
    private readonly done: (outcome: RequestOutcome) => void
  ) {}

  reply(reply: ReceivedReply): void {
    this.finish(this.settle(reply))
  }

  fail(error: RequestError): void {
    this.finish({ ok: false, error })
  }

  private finish(outcome: RequestOutcome): void {
    if (this.settled) return
    this.settled = true
    this.deadline?.cancel()
    this.done(outcome)
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
   * Sends a `request` frame with a fresh id; `done` gets the outcome, once. Reply
   * codes: `ok` → the reply message; `invalid_request` → `InvalidRequest`;
   * `msg_too_big` → `MessageTooBig`; any other → `RemoteError`. A message over
   * the frame limit → `MessageTooBig` (nothing sent); a payload JSON cannot
   * carry (e.g. a nested `Uint8Array`) → `InvalidRequest` with a `reason`
   * (nothing sent); no reply within `timeout` on the connection's clock →
   * `RequestTimeout` (a late reply is dropped); the connection closed or
   * closing → `TargetUnreachable`. `done` may run before this returns.
   */
  readonly unsafeRequest: (request: ChannelRequest, done: (outcome: RequestOutcome) => void) => void
  /**
   * `unsafeRequest` as an Effect. Interrupted, the request stays pending until
   * its reply or its deadline, whichever comes first (a canceler would cost
   * every request an interruption handler: see bench/FINDINGS.md).
   */
  readonly request: (request: ChannelRequest) => Effect.Effect<Message, RequestError>
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
 * The parent's requests over `framed`, timed by `deadlines` (the
 * connection's). `log` runs a log line from the synchronous read path (a late
 * or unknown reply).
 */
export const makeRequests = (
  framed: FramedStream,
  jobId: string,
  maxFrameBytes: number,
  deadlines: Deadlines,
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

  const unsafeRequest = (req: ChannelRequest, done: (outcome: RequestOutcome) => void): void => {
    if (!open) return done({ ok: false, error: new TargetUnreachable({ jobId }) })
    const id = nextId++
    const frame = encode(id, req.channel, req.topic, req.message)
    if (Either.isLeft(frame)) return done({ ok: false, error: frame.left })
    const size = frame.right.size
    const pendingRequest = new PendingRequest(id, (reply) => settle(reply, req, size), done)
    pending.set(id, pendingRequest)
    // the frame goes out first, so the peer starts on it while this side arms the deadline
    framed.writeNow(frame.right.chunks, (written) => {
      if (written || pending.get(id) !== pendingRequest) return
      pending.delete(id)
      pendingRequest.fail(new TargetUnreachable({ jobId }))
    })
    if (pending.get(id) !== pendingRequest) return
    const ms = millisOf(req.timeout)
    pendingRequest.deadline = deadlines.add(ms, () => {
      if (pending.get(id) !== pendingRequest) return
      pending.delete(id)
      pendingRequest.fail(new RequestTimeout({ jobId, channel: req.channel, topic: req.topic, timeout: ms }))
    })
  }

  const request = (req: ChannelRequest): Effect.Effect<Message, RequestError> =>
    Effect.async<Message, RequestError>((resume) => unsafeRequest(req, (outcome) => resume(outcomeEffect(outcome))))

  return { unsafeRequest, request, onReply, onOversizeReply, close, size: () => pending.size }
}
