/**
 * The executor's events, from one source: a set of plain listeners called as
 * each event is published. `subscribe` (and the `events` stream over it) is a
 * queue fed by one such listener, so every subscriber, fiberless or not, sees
 * the same events in the same order.
 */
import { Effect, Queue, Stream } from "effect"
import type { Scope } from "effect"
import type { ExecutorEvent } from "../../ClientExecutor.js"
import { callSafely } from "../listeners.js"

/** The executor's event source. */
export interface EventHub {
  /** Hands `event` to every listener, now. */
  readonly publish: (event: ExecutorEvent) => void
  /** Adds a listener; the result removes it. */
  readonly unsafeSubscribe: (listener: (event: ExecutorEvent) => void) => () => void
  /** A queue of the events from now on, until the scope closes. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<ExecutorEvent>, never, Scope.Scope>
  /** A hot stream of the events from the moment it is run. */
  readonly events: Stream.Stream<ExecutorEvent>
}

/** Makes an event hub. */
export const makeEventHub = (): EventHub => {
  const listeners = new Set<(event: ExecutorEvent) => void>()
  const unsafeSubscribe = (listener: (event: ExecutorEvent) => void) => {
    // a listener added twice is called twice, and removed one at a time
    const own = (event: ExecutorEvent) => listener(event)
    listeners.add(own)
    return () => {
      listeners.delete(own)
    }
  }
  const subscribe = Effect.gen(function* () {
    const queue = yield* Queue.unbounded<ExecutorEvent>()
    yield* Effect.acquireRelease(
      Effect.sync(() => unsafeSubscribe((event) => queue.unsafeOffer(event))),
      (remove) => Effect.zipRight(Effect.sync(remove), Queue.shutdown(queue))
    )
    return queue as Queue.Dequeue<ExecutorEvent>
  })
  return {
    publish: (event) => {
      // a snapshot: a listener added while an event is handed out gets the next one
      for (const listener of [...listeners]) callSafely(listener, event)
    },
    unsafeSubscribe,
    subscribe,
    events: Stream.unwrapScoped(Effect.map(subscribe, (queue) => Stream.fromQueue(queue)))
  }
}
