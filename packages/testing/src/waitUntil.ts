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

/** What `waitForStarted` needs of an executor: the Promise facade's status and events. */
export interface StartedSource {
  readonly getStatus: (jobId: string) => Promise<number>
  readonly events: () => AsyncIterable<{ readonly _tag: string; readonly jobId: string }>
}

/**
 * Resolves once `jobId` has reported Started, on the executor's events (no
 * polling); rejects when the job completes first, or after `timeoutMs`.
 * Listens before it looks at the status, so a Started already past counts.
 */
export const waitForStarted = async (executor: StartedSource, jobId: string, timeoutMs = 30_000): Promise<void> => {
  const iterator = executor.events()[Symbol.asyncIterator]()
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    if ((await executor.getStatus(jobId)) >= 2) return
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${jobId} to start`)), timeoutMs)
    })
    for (;;) {
      const next = await Promise.race([iterator.next(), timedOut])
      if (next.done === true) throw new Error(`the executor closed before ${jobId} started`)
      if (next.value.jobId !== jobId) continue
      if (next.value._tag === "Started") return
      if (next.value._tag === "Completed") throw new Error(`${jobId} completed before it started`)
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer)
    await iterator.return?.()
  }
}
