/**
 * Mocks for testing an engine or a backend: a client identity and a scriptable,
 * recording `ResourceManager`.
 *
 * @since 0.1.0
 */
import type { Allocation, CheckResult, ClientInfo, ResourceManager, ResourceRequirement as Requirement } from "@flexec/core"
import { ResourceTokenInvalid } from "@flexec/core"
import { Clock, Deferred, Duration, Effect } from "effect"

/**
 * A client identity for tests: `clientName` "site-1" and fixed credentials,
 * any of which `overrides` replaces.
 */
export const mockClient = (overrides?: Partial<ClientInfo>): ClientInfo => ({
  clientName: "site-1",
  token: "mock-auth-token",
  tokenSignature: "mock-token-signature",
  ssid: "mock-ssid",
  ...overrides
})

/** The methods of a `ResourceManager`. */
export type ResourceMethod = "checkResources" | "cancelResources" | "allocateResources" | "freeResources" | "reportResources"

/** One recorded call of a `MockResourceManager`. */
export interface ResourceCall {
  readonly method: ResourceMethod
  readonly args: ReadonlyArray<unknown>
  /** Epoch milliseconds on the Effect `Clock` (a `TestClock` in tests). */
  readonly time: number
}

/**
 * A scripted behaviour:
 * - `"refuse"` (checkResources only): answers `{ ok: false, token: "" }`;
 * - `"fail"`: `allocateResources` fails with `ResourceTokenInvalid`, the other methods die
 *   (a failing manager, as the engine sees an adapted one);
 * - `"hang"`: never completes (until interrupted, e.g. by the engine's step timeout);
 * - `{ delay }`: behaves normally after a delay on the Effect `Clock`;
 * - `{ die }`: dies with that defect.
 */
export type ResourceBehaviour = "refuse" | "fail" | "hang" | { readonly delay: Duration.DurationInput } | { readonly die: unknown }

/** Options of `MockResourceManager`. */
export interface MockResourceManagerOptions {
  /** A real manager to delegate to (its answers are recorded and may be overridden by scripts). */
  readonly wrap?: ResourceManager
  /**
   * What `allocateResources` returns when not wrapping. Default `{ mock: [token] }`:
   * non-empty, so the engine frees it.
   */
  readonly allocation?: Allocation | ((requirement: Requirement, token: string) => Allocation)
}

interface Script {
  readonly method: ResourceMethod
  readonly behaviour: ResourceBehaviour
  remaining: number
}

interface Waiter {
  readonly method: ResourceMethod
  readonly predicate: (call: ResourceCall) => boolean
  readonly deferred: Deferred.Deferred<ResourceCall>
}

/**
 * A `ResourceManager` that records every call (`calls`) and can be scripted to
 * refuse checks or to fail or hang `allocateResources` / `freeResources` (to test
 * an engine's free-error and timeout paths). Without `wrap` it grants every check
 * with a fresh token `mock-token-<n>`.
 *
 * @example
 * const rm = new MockResourceManager()
 * rm.hangFree()                                        // the next free never returns
 * // ... run a job; then: rm.freedTokens().get(token) === 1
 */
export class MockResourceManager implements ResourceManager {
  private readonly recorded: Array<ResourceCall> = []
  private readonly scripts: Array<Script> = []
  private readonly waiters: Array<Waiter> = []
  private readonly frees = new Map<string, number>()
  private counter = 0

  constructor(private readonly options: MockResourceManagerOptions = {}) {}

  /** Every call so far, in order. */
  get calls(): ReadonlyArray<ResourceCall> {
    return this.recorded.slice()
  }

  /** The calls of one method, in order. */
  callsTo(method: ResourceMethod): ReadonlyArray<ResourceCall> {
    return this.recorded.filter((c) => c.method === method)
  }

  /** How many times `freeResources` was called, per token. */
  freedTokens(): ReadonlyMap<string, number> {
    return new Map(this.frees)
  }

  /**
   * Waits for a call of `method` matching `predicate` (one already recorded counts).
   * For tests that must not sleep: `yield* rm.awaitCall("freeResources")`.
   */
  awaitCall(method: ResourceMethod, predicate: (call: ResourceCall) => boolean = () => true): Effect.Effect<ResourceCall> {
    return Effect.suspend(() => {
      const seen = this.recorded.find((c) => c.method === method && predicate(c))
      if (seen) return Effect.succeed(seen)
      return Effect.flatMap(Deferred.make<ResourceCall>(), (deferred) => {
        const waiter: Waiter = { method, predicate, deferred }
        this.waiters.push(waiter)
        return Deferred.await(deferred).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              const i = this.waiters.indexOf(waiter)
              if (i >= 0) this.waiters.splice(i, 1)
            })
          )
        )
      })
    })
  }

  /** Scripts the next `times` calls of `method` (default: every call until `reset`). Scripts apply in the order given. */
  script(method: ResourceMethod, behaviour: ResourceBehaviour, times: number = Number.POSITIVE_INFINITY): this {
    this.scripts.push({ method, behaviour, remaining: times })
    return this
  }

  /** `checkResources` answers `{ ok: false }` (the next `times` calls, default all). */
  refuseChecks(times?: number): this {
    return this.script("checkResources", "refuse", times)
  }

  /** `allocateResources` fails with `ResourceTokenInvalid`. */
  failAllocate(times?: number): this {
    return this.script("allocateResources", "fail", times)
  }

  /** `allocateResources` never completes. */
  hangAllocate(times?: number): this {
    return this.script("allocateResources", "hang", times)
  }

  /** `freeResources` dies (a failing free, which the engine records as `freeError`). */
  failFree(times?: number): this {
    return this.script("freeResources", "fail", times)
  }

  /** `freeResources` never completes (the engine's step timeout must end it). */
  hangFree(times?: number): this {
    return this.script("freeResources", "hang", times)
  }

  /** Removes every script (the record stays). */
  reset(): this {
    this.scripts.length = 0
    return this
  }

  /** Forgets the recorded calls and free counts (scripts stay). */
  clearCalls(): this {
    this.recorded.length = 0
    this.frees.clear()
    return this
  }

  /** Grants with `mock-token-<n>` (or asks the wrapped manager), unless scripted. */
  readonly checkResources = (requirement: Requirement): Effect.Effect<CheckResult> =>
    this.invoke("checkResources", [requirement], () =>
      this.options.wrap
        ? this.options.wrap.checkResources(requirement)
        : Effect.sync(() => ({ ok: true, token: `mock-token-${++this.counter}` }))
    )

  /** Does nothing (or asks the wrapped manager), unless scripted. */
  readonly cancelResources = (requirement: Requirement, token: string): Effect.Effect<void> =>
    this.invoke("cancelResources", [requirement, token], () =>
      this.options.wrap ? this.options.wrap.cancelResources(requirement, token) : Effect.void
    )

  /** Returns the configured allocation (or the wrapped manager's), unless scripted. */
  readonly allocateResources = (requirement: Requirement, token: string): Effect.Effect<Allocation, ResourceTokenInvalid> =>
    this.invoke("allocateResources", [requirement, token], () => {
      if (this.options.wrap) return this.options.wrap.allocateResources(requirement, token)
      const a = this.options.allocation
      return Effect.succeed(a === undefined ? { mock: [token] } : typeof a === "function" ? a(requirement, token) : a)
    })

  /** Counts the free for its token, then does nothing (or asks the wrapped manager), unless scripted. */
  readonly freeResources = (resources: Allocation, token: string): Effect.Effect<void> =>
    this.invoke("freeResources", [resources, token], () =>
      this.options.wrap ? this.options.wrap.freeResources(resources, token) : Effect.void
    )

  /** `{ calls, freed }` (or the wrapped manager's report), unless scripted. */
  readonly reportResources = (): Effect.Effect<Readonly<Record<string, unknown>>> =>
    this.invoke("reportResources", [], () =>
      this.options.wrap
        ? this.options.wrap.reportResources()
        : Effect.sync(() => ({ calls: this.recorded.length, freed: Object.fromEntries(this.frees) }))
    )

  private nextBehaviour(method: ResourceMethod): ResourceBehaviour | undefined {
    const script = this.scripts.find((s) => s.method === method && s.remaining > 0)
    if (!script) return undefined
    script.remaining -= 1
    return script.behaviour
  }

  private invoke<A, E>(method: ResourceMethod, args: ReadonlyArray<unknown>, normal: () => Effect.Effect<A, E>): Effect.Effect<A, E> {
    return Effect.gen(this, function* () {
      const call: ResourceCall = { method, args, time: yield* Clock.currentTimeMillis }
      this.recorded.push(call)
      if (method === "freeResources") {
        const token = String(args[1])
        this.frees.set(token, (this.frees.get(token) ?? 0) + 1)
      }
      for (const w of this.waiters.filter((w) => w.method === method && w.predicate(call))) {
        yield* Deferred.succeed(w.deferred, call)
      }
      const behaviour = this.nextBehaviour(method)
      if (behaviour === undefined) return yield* normal()
      if (behaviour === "hang") return yield* Effect.never
      if (behaviour === "refuse") {
        if (method !== "checkResources") return yield* Effect.dieMessage(`MockResourceManager: "refuse" scripts only checkResources, not ${method}`)
        return { ok: false, token: "" } as A
      }
      if (behaviour === "fail") {
        if (method === "allocateResources") {
          return yield* Effect.fail(new ResourceTokenInvalid({ token: String(args[1]) }) as E)
        }
        return yield* Effect.die(new Error(`MockResourceManager: scripted failure of ${method}`))
      }
      if ("delay" in behaviour) {
        yield* Effect.sleep(Duration.decode(behaviour.delay))
        return yield* normal()
      }
      return yield* Effect.die(behaviour.die)
    })
  }
}
