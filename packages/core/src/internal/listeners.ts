/**
 * Calling plain listeners: one that throws is skipped, and the others still
 * run (a listener's failure is its own).
 */

/** Calls `listener` with `value`, swallowing what it throws. */
export const callSafely = <A>(listener: (value: A) => void, value: A): void => {
  try {
    listener(value)
  } catch {
    // a listener's failure is its own
  }
}
