/**
 * Deadlines: many timeouts over one wake-up, on an Effect `Clock`. One
 * structure per connection (its requests' timeouts) or per channel (its
 * hellos'): a deadline is a node in a list per duration (deadlines of one
 * duration come due in the order they were set, so each list is sorted), and
 * one `clock.sleep` is armed for the earliest. Cancelling is unlinking a node.
 *
 * The wake-up is kept when its deadlines are cancelled and re-armed only when
 * it fires or a new deadline comes before it: requests with the same timeout
 * that come and go (the common case) arm it about once per timeout, not once
 * each. Every clock drives it the same way: Effect's live clock sleeps on a
 * timer, `TestClock` when a test moves its time. There is no second path.
 */
import { Duration, Effect } from "effect"
import type { Clock, Fiber } from "effect"

/** One deadline; `cancel` unlinks it (a no-op once it fired or was cancelled). */
export interface Deadline {
  readonly cancel: () => void
}

/** A structure of deadlines over one clock (see the module). */
export interface Deadlines {
  /** Runs `task` once `ms` have passed on the clock, unless cancelled first. A non-finite `ms` never fires. */
  readonly add: (ms: number, task: () => void) => Deadline
  /** Cancels every deadline and the wake-up; later `add`s are never armed. */
  readonly close: () => void
  /** Deadlines not yet fired or cancelled (for tests and diagnostics). */
  readonly size: () => number
}

class Node implements Deadline {
  prev: Node | undefined = undefined
  next: Node | undefined = undefined
  constructor(
    readonly at: number,
    readonly task: () => void,
    public list: List | undefined
  ) {}

  cancel(): void {
    this.list?.unlink(this)
  }
}

class List {
  head: Node | undefined = undefined
  tail: Node | undefined = undefined
  size = 0

  push(node: Node): void {
    node.prev = this.tail
    if (this.tail !== undefined) this.tail.next = node
    else this.head = node
    this.tail = node
    this.size++
  }

  unlink(node: Node): void {
    if (node.list !== this) return
    node.list = undefined
    if (node.prev !== undefined) node.prev.next = node.next
    else this.head = node.next
    if (node.next !== undefined) node.next.prev = node.prev
    else this.tail = node.prev
    node.prev = node.next = undefined
    this.size--
  }
}

/** Makes the deadlines of one connection or channel over `clock`. */
export const makeDeadlines = (clock: Clock.Clock): Deadlines => {
  // a list stays while it is used (requests of one timeout that come and go reuse it);
  // the wake-up drops the empty ones
  const lists = new Map<number, List>()
  let closed = false
  /** When the armed wake-up fires (Infinity: none armed), and its fiber. */
  let armedAt = Infinity
  let wakeUp: Fiber.RuntimeFiber<void> | undefined

  const arm = (at: number): void => {
    if (closed || at >= armedAt) return
    wakeUp?.unsafeInterruptAsFork(wakeUp.id())
    armedAt = at
    const delay = Math.max(0, at - clock.unsafeCurrentTimeMillis())
    // immediate: the sleep is set now, not on the scheduler's next turn (a test moving the
    // clock right after a request still sees its deadline)
    wakeUp = Effect.runFork(Effect.zipRight(clock.sleep(Duration.millis(delay)), Effect.sync(fire)), { immediate: true })
  }

  const fire = (): void => {
    armedAt = Infinity
    wakeUp = undefined
    if (closed) return
    const now = clock.unsafeCurrentTimeMillis()
    const due: Array<Node> = []
    let next = Infinity
    for (const [ms, list] of lists) {
      while (list.head !== undefined && list.head.at <= now) {
        const node = list.head
        list.unlink(node)
        due.push(node)
      }
      if (list.head === undefined) lists.delete(ms)
      else if (list.head.at < next) next = list.head.at
    }
    if (next !== Infinity) arm(next)
    for (const node of due) node.task()
  }

  const add = (ms: number, task: () => void): Deadline => {
    if (closed || !Number.isFinite(ms)) return new Node(Infinity, task, undefined)
    const at = clock.unsafeCurrentTimeMillis() + Math.max(0, ms)
    let list = lists.get(ms)
    if (list === undefined) {
      list = new List()
      lists.set(ms, list)
    }
    const node = new Node(at, task, list)
    list.push(node)
    arm(at)
    return node
  }

  const close = (): void => {
    if (closed) return
    closed = true
    wakeUp?.unsafeInterruptAsFork(wakeUp.id())
    wakeUp = undefined
    armedAt = Infinity
    for (const list of lists.values()) {
      while (list.head !== undefined) list.unlink(list.head)
    }
    lists.clear()
  }

  const size = (): number => {
    let n = 0
    for (const list of lists.values()) n += list.size
    return n
  }

  return { add, close, size }
}
