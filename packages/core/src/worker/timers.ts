/**
 * The runtime's own timers, tracked so that none outlives the runtime (and so
 * that the rc-file check at exit does not count them as the job's work).
 */
export class Timers {
  private readonly live = new Set<ReturnType<typeof setTimeout>>()

  /** Calls `fn` after `ms` milliseconds. */
  after(ms: number, fn: () => void): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      this.live.delete(timer)
      fn()
    }, Math.max(0, ms))
    this.live.add(timer)
    return timer
  }

  /** Cancels a timer (no-op for `undefined` or a fired one). */
  cancel(timer: ReturnType<typeof setTimeout> | undefined): void {
    if (timer === undefined) return
    clearTimeout(timer)
    this.live.delete(timer)
  }

  /** Resolves after `ms` milliseconds (never, once `clearAll` ran). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.after(ms, resolve)
    })
  }

  /** Cancels every pending timer. */
  clearAll(): void {
    for (const timer of this.live) clearTimeout(timer)
    this.live.clear()
  }
}
