/**
 * The job's output lines for its subscribers: a sliding PubSub fed from Node
 * callbacks, read as a Stream that ends with the output.
 */
import { Effect, Option, PubSub, Stream } from "effect"
import type { LogLine } from "./core.js"

/** Lines kept for subscribers that come late (bounded). */
export const logReplay = 256
/** Lines buffered per subscriber; a slow subscriber loses the oldest ones. */
export const logCapacity = 1024

/** One line of the job's output, or None once the output ended. */
export type LogEvent = Option.Option<LogLine>

/**
 * Publishes from a Node callback, without a fiber while there is room. When a
 * subscriber lags a whole buffer behind, `unsafeOffer` refuses the event (it does
 * not apply the sliding strategy): the event then goes through `PubSub.publish`,
 * which drops the oldest one instead. Losing the newest would lose the end of the
 * output, and a lagging subscriber's stream would never end.
 */
export const publishSync = (pubsub: PubSub.PubSub<LogEvent>, event: LogEvent): void => {
  if (pubsub.unsafeOffer(event)) return
  // a sliding PubSub's publish never suspends; a shut-down one refuses (an interruption, ignored)
  Effect.runSyncExit(PubSub.publish(pubsub, event))
}

/** The lines of the job as a Stream that ends when the job's output ends. */
export const logStream = (pubsub: PubSub.PubSub<LogEvent>): Stream.Stream<LogLine> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      if (yield* PubSub.isShutdown(pubsub)) return Stream.empty
      const queue = yield* PubSub.subscribe(pubsub)
      return Stream.fromQueue(queue).pipe(Stream.takeWhile(Option.isSome), Stream.map((line) => line.value))
    })
  )
