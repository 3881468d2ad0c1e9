/**
 * `pollUntil`: the suite's bounded poll (the live clock, a deadline, a message
 * naming what was awaited).
 *
 * @internal
 *
 * @since 0.1.0
 */
import { Duration, Effect } from "effect"

/** Polls `check` until true, with a deadline. */
export const pollUntil = (
  what: string,
  check: () => boolean | Effect.Effect<boolean, unknown>,
  ms: number
): Effect.Effect<void, Error> =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    for (;;) {
      const out = check()
      const ok = Effect.isEffect(out) ? yield* Effect.orElseSucceed(out, () => false) : out
      if (ok) return
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out after ${ms} ms waiting for ${what}`))
      yield* Effect.sleep(Duration.millis(10))
    }
  })
