/**
 * A `sendToJob` to a job that is still starting: it waits for the job's
 * connection within the request's timeout (NVFlare users send right after
 * starting), then sends with what is left of it. No connection in time:
 * `RequestTimeout`; the job ends (or its launch fails) first: `TargetUnreachable`.
 */
import { Clock, Duration, Effect } from "effect"
import { RequestTimeout, TargetUnreachable } from "../Errors.js"
import type { RequestError } from "../Errors.js"
import type { Message } from "../Message.js"
import type { JobChannel } from "../protocol/ChannelServer.js"
import type { ChannelRequest } from "../protocol/Request.js"

/** What the engine knows of a starting job. */
export interface StartingJob {
  readonly jobId: string
  /** Succeeds once the launch returned (the channel is then set); fails when it failed. */
  readonly launched: Effect.Effect<void, unknown>
  /** The job's channel, once launched. */
  readonly channel: () => JobChannel | undefined
  /** Completes when the job's exit was seen. */
  readonly ended: Effect.Effect<unknown>
}

/** Sends `request` once the starting job is connected, all within `request.timeout`. */
export const requestWhenConnected = (job: StartingJob, request: ChannelRequest): Effect.Effect<Message, RequestError> =>
  Effect.gen(function* () {
    const timeout = Duration.decode(request.timeout)
    const ms = Duration.toMillis(timeout)
    const startedAt = yield* Clock.currentTimeMillis
    const connected = Effect.gen(function* () {
      yield* Effect.mapError(job.launched, () => new TargetUnreachable({ jobId: job.jobId }))
      const channel = job.channel()
      if (channel === undefined) return yield* new TargetUnreachable({ jobId: job.jobId })
      yield* channel.awaitConnected
      return channel
    })
    const channel = yield* connected.pipe(
      Effect.raceFirst(Effect.zipRight(job.ended, Effect.fail(new TargetUnreachable({ jobId: job.jobId })))),
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () => new RequestTimeout({ jobId: job.jobId, channel: request.channel, topic: request.topic, timeout: ms })
      })
    )
    const left = Math.max(1, ms - ((yield* Clock.currentTimeMillis) - startedAt))
    const reply = yield* channel.request({ ...request, timeout: Duration.millis(left) })
    return reply
  }).pipe(
    // the reply's own timeout names the whole request's
    Effect.mapError((e) =>
      e._tag === "RequestTimeout"
        ? new RequestTimeout({ jobId: e.jobId, channel: e.channel, topic: e.topic, timeout: Duration.toMillis(Duration.decode(request.timeout)) })
        : e
    )
  )
