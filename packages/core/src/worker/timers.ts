/**
 * The runtime's own timers, tracked so that none outlives the runtime (and so
 * that the rc-file check at exit does not count them as the job's work).
 *
 * A timer is armed on the next turn of the event loop, not when it is asked
 * for: a job's first timers (the hello's, the Started report's) are asked for
 * on its way to the socket, and arming Node's first timer costs ~0.3 ms there.
 * Their deadlines move by that turn (well under a millisecond); nothing else.
 */

/** A timer of `Timers`: pass it to `cancel`. */
export interface TimerHandle {
  readonly ms: number
  readonly fn: () => void
  /** Node's timer, once armed. */
  timeout: ReturnType<typeof setTimeout> | undefined
  /** Fired or cancelled. */
  done: boolean
}

/** The runtime's timers (see the module). */
export class Timers {
  private readonly live = new Set<TimerHandle>()
  private readonly unarmed: Array<TimerHandle> = []
  private arming: ReturnType<typeof setImmediate> | undefined

  /** Calls `fn` after `ms` milliseconds (counted from the next turn of the event loop). */
  after(ms: number, fn: () => void): TimerHandle {
    const timer: TimerHandle = { ms: Math.max(0, ms), fn, timeout: undefined, done: false }
    this.live.add(timer)
    this.unarmed.push(timer)
    this.arming ??= setImmediate(this.armAll)
    return timer
  }

  /** Cancels a timer (no-op for `undefined` or a fired one). */
  cancel(timer: TimerHandle | undefined): void {
    if (timer === undefined || timer.done) return
    timer.done = true
    if (timer.timeout !== undefined) clearTimeout(timer.timeout)
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
    if (this.arming !== undefined) clearImmediate(this.arming)
    this.arming = undefined
    this.unarmed.length = 0
    for (const timer of this.live) {
      timer.done = true
      if (timer.timeout !== undefined) clearTimeout(timer.timeout)
    }
    this.live.clear()
  }

  private readonly armAll = (): void => {
    this.arming = undefined
    for (const timer of this.unarmed.splice(0)) {
      if (timer.done) continue
      timer.timeout = setTimeout(() => {
        if (timer.done) return
        timer.done = true
        this.live.delete(timer)
        timer.fn()
      }, timer.ms)
    }
  }
}
