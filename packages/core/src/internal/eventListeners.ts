/**
 * Plain listeners of an executor's events, called as each event is published.
 * The engine's service carries them under a symbol (not part of
 * `ClientExecutorService`: an executor made another way has none); the Promise
 * facade uses them to hand an event to its iterators without a fiber's turn in
 * between. Anything else subscribes (`subscribe`, `events`).
 */
import type { ExecutorEvent } from "../ClientExecutor.js"

/** The key of an executor service's listener registry. */
export const EventListeners: unique symbol = Symbol.for("@flexec/core/EventListeners")

/** A listener registry: `add` returns the way to remove the listener. */
export interface EventListenerRegistry {
  readonly add: (listener: (event: ExecutorEvent) => void) => () => void
}

/** Makes a registry and the function that calls its listeners (a listener that throws is skipped). */
export const makeEventListeners = (): { readonly registry: EventListenerRegistry; readonly emit: (event: ExecutorEvent) => void } => {
  const listeners = new Set<(event: ExecutorEvent) => void>()
  return {
    registry: {
      add: (listener) => {
        listeners.add(listener)
        return () => {
          listeners.delete(listener)
        }
      }
    },
    emit: (event) => {
      for (const listener of listeners) {
        try {
          listener(event)
        } catch {
          // a listener's failure is its own
        }
      }
    }
  }
}

/** The registry of `service`, when it has one. */
export const eventListenersOf = (service: object): EventListenerRegistry | undefined =>
  (service as { readonly [EventListeners]?: EventListenerRegistry })[EventListeners]
