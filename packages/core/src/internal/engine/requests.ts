/**
 * Requests both ways between the parent and its jobs. From the job: its status
 * notifications (Started, Stopped) and the site's parent-side handlers. To the
 * job: `sendToJob`, implemented once with a callback (`unsafeSendToJob`: a
 * connected job's request goes to its channel without a fiber) and wrapped as
 * an Effect, and the worker's own topics (abort task, stats, errors, log
 * config).
 */
import { Cause, Deferred, Effect, Exit, Option, Runtime, Schema } from "effect"
import type { SendToJobParams } from "../../ClientExecutor.js"
import { ExecutorEvent } from "../../ClientExecutor.js"
import { TargetUnreachable } from "../../Errors.js"
import type { InvalidJobId, RequestError } from "../../Errors.js"
import type { HandlerOption } from "../../ExecutorOptions.js"
import { decodeJobId } from "../../JobId.js"
import type { JobId } from "../../JobId.js"
import * as Message from "../../Message.js"
import type { ChannelRequest, IncomingRequest, RequestHandler, RequestOutcome } from "../../protocol/ChannelServer.js"
import { Channel, ClientStatus, Topic } from "../../Status.js"
import { requestWhenConnected } from "../startingRequest.js"
import type { Engine } from "./context.js"
import { now } from "./context.js"
import type { Entry } from "./registry.js"
import { advance } from "./registry.js"

const StatusNotification = Schema.Struct({ status: Schema.Literal(2, 3) })
const decodeStatusNotification = Schema.decodeUnknown(StatusNotification)

const toHandlerEffect = (handler: HandlerOption, jobId: string, message: Message.Message) =>
  Effect.suspend(() => {
    const out = handler(jobId, message)
    if (Effect.isEffect(out)) return out as Effect.Effect<Message.Payload, unknown>
    if (out !== null && typeof out === "object" && typeof (out as PromiseLike<unknown>).then === "function") {
      return Effect.tryPromise({ try: () => Promise.resolve(out as PromiseLike<Message.Payload>), catch: (e) => e })
    }
    return Effect.succeed(out as Message.Payload)
  })

/** The job's status notification: Started is never published before Launched. */
const onStatus = (engine: Engine, entry: Entry, payload: Message.Payload) =>
  Effect.gen(function* () {
    const { status } = yield* decodeStatusNotification(payload)
    yield* Deferred.await(entry.launched).pipe(Effect.ignore)
    const time = yield* now
    if (advance(entry, status, time)) {
      engine.events.publish(
        status === ClientStatus.Started
          ? ExecutorEvent.Started({ jobId: entry.jobId, time })
          : ExecutorEvent.Stopped({ jobId: entry.jobId, time })
      )
    }
    return undefined
  })

/** What the parent does with the requests of `entry`'s job. */
export const jobRequestHandler = (engine: Engine, entry: Entry): RequestHandler => (request: IncomingRequest) => {
  if (request.channel === Channel.Admin && request.topic === Topic.NotifyJobStatus) {
    return Option.some(onStatus(engine, entry, request.message.payload))
  }
  const handler = engine.options.handlers?.[request.channel]?.[request.topic]
  return handler === undefined ? Option.none() : Option.some(toHandlerEffect(handler, entry.jobId, request.message))
}

/** `sendToJob`'s parameters as a channel request: they are one as they are once they name a timeout. */
const channelRequestOf = (engine: Engine, params: SendToJobParams): ChannelRequest =>
  params.timeout !== undefined
    ? (params as ChannelRequest)
    : { channel: params.channel, topic: params.topic, message: params.message, timeout: engine.settings.queryTimeout }

/** The log line of a failed `sendToJob` (debug for an optional request). */
const failureLog = (params: SendToJobParams, error: { readonly message: string }) =>
  params.optional
    ? Effect.logDebug(`sendToJob ${params.jobId}: ${error.message}`)
    : Effect.logWarning(`sendToJob ${params.jobId}: ${error.message}`)

/** A request to a job that is not connected (yet): it waits for a starting job's connection. */
const waitingRequest = (engine: Engine, jobId: string, req: ChannelRequest): Effect.Effect<Message.Message, RequestError | InvalidJobId> =>
  Effect.flatMap(decodeJobId(jobId), (id) => {
    const entry = engine.registry.get(id)
    if (entry === undefined) return Effect.fail(new TargetUnreachable({ jobId: id }))
    if (entry.status !== ClientStatus.Starting) {
      return entry.channel !== undefined ? entry.channel.request(req) : Effect.fail(new TargetUnreachable({ jobId: id }))
    }
    return requestWhenConnected(
      { jobId: id, launched: Deferred.await(entry.launched), channel: () => entry.channel, ended: Deferred.await(entry.exited) },
      req
    )
  })

/** The operations on jobs' channels, over `engine`. */
export const makeJobRequests = (engine: Engine) => {
  const runFork = Runtime.runFork(engine.runtime)
  const runCallback = Runtime.runCallback(engine.runtime)

  /**
   * `sendToJob` with a callback. A registered job past Starting with a channel: its
   * channel's request, with no fiber. Anything else (a job still starting, an unknown or
   * invalid id) runs as an Effect on the executor's runtime. A failure is logged.
   */
  const unsafeSendToJob = (
    params: SendToJobParams,
    done: (exit: Exit.Exit<Message.Message, RequestError | InvalidJobId>) => void
  ): void => {
    const req = channelRequestOf(engine, params)
    const entry = engine.registry.get(params.jobId)
    const channel = entry !== undefined && entry.status !== ClientStatus.Starting ? entry.channel : undefined
    if (channel !== undefined) {
      return channel.unsafeRequest(req, (outcome: RequestOutcome) => {
        if (outcome.ok) return done(Exit.succeed(outcome.value))
        runFork(failureLog(params, outcome.error))
        done(Exit.fail(outcome.error))
      })
    }
    runCallback(waitingRequest(engine, params.jobId, req), {
      onExit: (exit) => {
        const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
        if (Option.isSome(failure)) runFork(failureLog(params, failure.value))
        done(exit)
      }
    })
  }

  const sendToJob = (params: SendToJobParams): Effect.Effect<Message.Message, RequestError | InvalidJobId> =>
    Effect.async((resume) => unsafeSendToJob(params, resume))

  /** A request of the worker's own topics to a job that is connected. */
  const topicRequest = (jobId: string, topic: string, payload: Message.Payload) =>
    Effect.flatMap(decodeJobId(jobId), (id: JobId) => {
      const channel = engine.registry.get(id)?.channel
      return channel === undefined
        ? Effect.fail(new TargetUnreachable({ jobId: id }))
        : channel.request({ channel: Channel.ClientCommand, topic, message: Message.make(payload), timeout: engine.settings.queryTimeout })
    })

  return { unsafeSendToJob, sendToJob, topicRequest }
}
