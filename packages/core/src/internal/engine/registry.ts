/**
 * The registry: the jobs registered now (their entries), the bounded history
 * of finished ones, and each job's status, which only moves forward.
 */
import { Deferred, Effect, FiberId, Scope } from "effect"
import type { Fiber } from "effect"
import type { JobOutcome } from "../../ClientExecutor.js"
import type { BackendUnavailable, ImageNotFound, JobAborted, LaunchFailed } from "../../Errors.js"
import type { JobId } from "../../JobId.js"
import type { JobExit, JobHandle } from "../../JobLauncher.js"
import type { JobChannel } from "../../protocol/ChannelServer.js"
import type { Allocation, ResourceManager } from "../../ResourceManager.js"
import type { ClientStatus } from "../../Status.js"

/** What a launch fails with, as `startApp` returns it. */
export type LaunchError = LaunchFailed | ImageNotFound | BackendUnavailable | JobAborted

/** One registered job. */
export interface Entry {
  readonly jobId: JobId
  status: ClientStatus
  since: number
  phase: "launching" | "launched"
  /** Our own abort (or close) was requested before the exit was seen. */
  abortRequested: boolean
  startTimedOut: boolean
  exitSeen: boolean
  handle: JobHandle | undefined
  channel: JobChannel | undefined
  launchFiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  abortFiber: Fiber.RuntimeFiber<void> | undefined
  /** Done once the first terminate was sent: from then on the backend's wait has a deadline. */
  readonly terminateSent: Deferred.Deferred<void>
  readonly launched: Deferred.Deferred<void, LaunchError>
  readonly exited: Deferred.Deferred<JobExit>
  readonly completed: Deferred.Deferred<JobOutcome>
  readonly allocation: Allocation
  readonly token: string
  readonly resourceManager: ResourceManager | undefined
  readonly jobScope: Scope.CloseableScope
  readonly rcFile: string | undefined
}

/** What an entry is made of; the rest starts empty. */
export interface EntryFields {
  readonly jobId: JobId
  readonly allocation: Allocation
  readonly token: string
  readonly resourceManager: ResourceManager | undefined
  readonly rcFile: string | undefined
  readonly status: ClientStatus
  readonly phase: Entry["phase"]
}

/** A new entry, with its own scope, not registered yet. */
export const makeEntry = (fields: EntryFields, since: number): Effect.Effect<Entry> =>
  Effect.map(Scope.make(), (jobScope): Entry => ({
    ...fields,
    since,
    abortRequested: false,
    startTimedOut: false,
    exitSeen: false,
    handle: undefined,
    channel: undefined,
    launchFiber: undefined,
    abortFiber: undefined,
    // made at once: three steps fewer on the way to the spawn
    terminateSent: Deferred.unsafeMake<void>(FiberId.none),
    launched: Deferred.unsafeMake<void, LaunchError>(FiberId.none),
    exited: Deferred.unsafeMake<JobExit>(FiberId.none),
    completed: Deferred.unsafeMake<JobOutcome>(FiberId.none),
    jobScope
  }))

interface HistoryEntry {
  readonly status: ClientStatus
  readonly outcome: JobOutcome
}

/** The registered jobs and the finished ones remembered. */
export class Registry {
  private readonly entries = new Map<string, Entry>()
  private readonly history = new Map<string, HistoryEntry>()

  constructor(private readonly historySize: number) {}

  /** The registered entry of `jobId`. */
  get(jobId: string): Entry | undefined {
    return this.entries.get(jobId)
  }

  has(jobId: string): boolean {
    return this.entries.has(jobId)
  }

  /** The registered entries, in registration order. */
  all(): Array<Entry> {
    return [...this.entries.values()]
  }

  /** Registers `entry` (its id forgets an earlier run's history). */
  register(entry: Entry): void {
    this.entries.set(entry.jobId, entry)
    this.history.delete(entry.jobId)
  }

  /** Unregisters `entry` and remembers how it ended (the oldest memory goes beyond `historySize`). */
  finish(entry: Entry, status: ClientStatus, outcome: JobOutcome): void {
    this.entries.delete(entry.jobId)
    this.history.delete(entry.jobId)
    this.history.set(entry.jobId, { status, outcome })
    while (this.history.size > this.historySize) {
      const oldest = this.history.keys().next()
      if (oldest.done) break
      this.history.delete(oldest.value)
    }
  }

  /** A registered or remembered job's status; `undefined` for one never seen. */
  statusOf(jobId: string): ClientStatus | undefined {
    return this.entries.get(jobId)?.status ?? this.history.get(jobId)?.status
  }

  /** A finished job's outcome, while remembered. */
  outcomeOf(jobId: string): JobOutcome | undefined {
    return this.history.get(jobId)?.outcome
  }
}

/** Moves `entry`'s status forward to `status` at `time`; false (and nothing changed) if it is not forward. */
export const advance = (entry: Entry, status: ClientStatus, time: number): boolean => {
  if (status <= entry.status) return false
  entry.status = status
  entry.since = time
  return true
}
