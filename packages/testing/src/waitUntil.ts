/**
 * Polling with a deadline, for tests that watch real processes, sockets or
 * containers (the live clock; never a sleep that waits for an outcome).
 *
 * @since 0.1.0
 */

/**
 * Calls `check` every `intervalMs` until it returns something other than
 * `undefined`, and resolves with it; rejects naming `what` after `timeoutMs`.
 */
export const waitUntil = async <A>(
  what: string,
  check: () => A | undefined | Promise<A | undefined>,
  timeoutMs = 20_000,
  intervalMs = 25
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
