/**
 * When a timeout may be a plain `setTimeout` instead of an Effect timeout (a
 * fiber and a race per use): when the clock in the fiber's context is Effect's
 * live clock. Under any other clock (`TestClock`) callers keep the Effect
 * timeout, so tests that move the clock still drive them.
 */
import { Clock } from "effect"

/** Longest delay `setTimeout` takes (longer ones would fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1

/** The class of Effect's live clock. */
const LiveClock = Clock.make().constructor

/** Effect's live clock (for code outside a fiber, which always runs on it). */
export const liveClock: Clock.Clock = Clock.make()

/** True when a timeout of `ms` under `clock` can be a plain timer. */
export const plainTimerFor = (clock: Clock.Clock, ms: number): boolean =>
  clock.constructor === LiveClock && ms >= 0 && ms <= MAX_TIMER_MS
