/**
 * Reservation bookkeeping shared by the stateful resource managers (List and
 * Gpu): a pool, the reservations (token → units, with an expiry instant) and
 * the allocations (token → units), held together in one `SynchronizedRef` so
 * that every transition is atomic and `pool + reserved + allocated` always
 * equals the capacity.
 *
 * Expiry is lazy: every operation first returns the reservations whose expiry
 * instant (measured on the Effect `Clock`) has passed to the pool. No
 * background fiber runs; an expired reservation nobody asks about holds its
 * units only until the next call, which is the first moment anyone could
 * observe the difference.
 *
 * @internal
 */
import { Clock, Effect, SynchronizedRef } from "effect"
import { randomUUID } from "node:crypto"
import { InvalidResourceConfig, InvalidResourceRequirement, ResourceTokenInvalid } from "../Errors.js"
import type { Allocation, CheckResult, ResourceManager, ResourceRequirement } from "../ResourceManager.js"

/** The default lifetime of a reservation: 30 s. */
export const DEFAULT_EXPIRATION_MS = 30_000

/** Validates an `expirationMs` option (a positive finite number of milliseconds), or throws. */
export const expirationOf = (manager: string, expirationMs: number | undefined): number => {
  if (expirationMs === undefined) return DEFAULT_EXPIRATION_MS
  if (typeof expirationMs !== "number" || !Number.isFinite(expirationMs) || expirationMs <= 0) {
    throw new InvalidResourceConfig({
      manager,
      reason: `expirationMs must be a positive number of milliseconds, got ${String(expirationMs)}`
    })
  }
  return expirationMs
}

/** `true` for a plain object (not null, not an array): the only requirement shape accepted. */
export const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** Dies with `InvalidResourceRequirement` unless `requirement` is an object. */
export const requireRecord = (
  manager: string,
  requirement: unknown
): Effect.Effect<Readonly<Record<string, unknown>>> =>
  isRecord(requirement)
    ? Effect.succeed(requirement)
    : Effect.die(
      new InvalidResourceRequirement({
        manager,
        reason: `the requirement must be an object, got ${requirement === null ? "null" : Array.isArray(requirement) ? "an array" : typeof requirement}`
      })
    )

/** A reservation: the units it holds and the instant (Clock millis) it expires at. */
export interface Reservation<U> {
  readonly units: U
  readonly expiresAt: number
}

/** The whole state of a manager: the free pool, reservations and allocations by token. */
export interface BookState<P, U> {
  readonly pool: P
  readonly reserved: ReadonlyMap<string, Reservation<U>>
  readonly allocated: ReadonlyMap<string, U>
}

/** How a manager takes units from its pool and gives them back; both pure. */
export interface PoolOps<R, P, U> {
  /** The units meeting `request` and the pool without them, or `undefined` when the pool cannot meet it. */
  readonly take: (pool: P, request: R) => readonly [U, P] | undefined
  /** The pool with `units` returned (to their original places). */
  readonly give: (pool: P, units: U) => P
  /** `true` when `units` hold nothing (an allocation of them needs no free). */
  readonly isEmpty: (units: U) => boolean
}

/** The reservation book of one manager. Every operation sweeps expired reservations first. */
export interface Book<R, P, U> {
  /** Reserves units meeting `request` under a fresh token, or answers `{ ok: false, token: "" }`. */
  readonly check: (request: R) => Effect.Effect<{ readonly ok: boolean; readonly token: string }>
  /** Returns a live reservation to the pool; anything else is ignored. */
  readonly cancel: (token: string) => Effect.Effect<void>
  /** Turns a live reservation into an allocation and returns its units; else `ResourceTokenInvalid`. */
  readonly allocate: (token: string) => Effect.Effect<U, ResourceTokenInvalid>
  /** Returns an allocation to the pool, once: a token not allocated (or already freed) changes nothing. */
  readonly free: (token: string) => Effect.Effect<void>
  /** The state after the sweep, and the Clock instant it was taken at. */
  readonly snapshot: Effect.Effect<{ readonly state: BookState<P, U>; readonly now: number }>
}

const sweep = <R, P, U>(ops: PoolOps<R, P, U>, state: BookState<P, U>, now: number): BookState<P, U> => {
  let expired: Array<string> | undefined
  for (const [token, r] of state.reserved) {
    if (now >= r.expiresAt) (expired ??= []).push(token)
  }
  if (expired === undefined) return state
  const reserved = new Map(state.reserved)
  let pool = state.pool
  for (const token of expired) {
    pool = ops.give(pool, reserved.get(token)!.units)
    reserved.delete(token)
  }
  return { pool, reserved, allocated: state.allocated }
}

/** Makes a reservation book over `pool` whose reservations live `expirationMs` on the Effect `Clock`. */
export const makeBook = <R, P, U>(ops: PoolOps<R, P, U>, pool: P, expirationMs: number): Book<R, P, U> => {
  const ref = SynchronizedRef.unsafeMake<BookState<P, U>>({ pool, reserved: new Map(), allocated: new Map() })

  // Reads the clock inside the lock, so instants are monotonic across transitions.
  const transition = <A>(f: (state: BookState<P, U>, now: number) => readonly [A, BookState<P, U>]) =>
    SynchronizedRef.modifyEffect(ref, (state) =>
      Effect.map(Clock.currentTimeMillis, (now) => f(sweep(ops, state, now), now)))

  return {
    check: (request) =>
      Effect.flatMap(Effect.sync(randomUUID), (token) =>
        transition<{ readonly ok: boolean; readonly token: string }>((state, now) => {
          const taken = ops.take(state.pool, request)
          if (taken === undefined) return [{ ok: false, token: "" }, state] as const
          const reserved = new Map(state.reserved).set(token, { units: taken[0], expiresAt: now + expirationMs })
          return [{ ok: true, token }, { pool: taken[1], reserved, allocated: state.allocated }] as const
        })),
    cancel: (token) =>
      transition((state) => {
        const r = state.reserved.get(token)
        if (r === undefined) return [undefined, state] as const
        const reserved = new Map(state.reserved)
        reserved.delete(token)
        return [undefined, { pool: ops.give(state.pool, r.units), reserved, allocated: state.allocated }] as const
      }),
    allocate: (token) =>
      Effect.flatten(transition<Effect.Effect<U, ResourceTokenInvalid>>((state) => {
        const r = state.reserved.get(token)
        if (r === undefined) return [Effect.fail(new ResourceTokenInvalid({ token })), state] as const
        const reserved = new Map(state.reserved)
        reserved.delete(token)
        // An empty allocation is never freed (the engine frees only non-empty ones): keep no record of it.
        const allocated = ops.isEmpty(r.units) ? state.allocated : new Map(state.allocated).set(token, r.units)
        return [Effect.succeed(r.units), { pool: state.pool, reserved, allocated }] as const
      })),
    free: (token) =>
      transition((state) => {
        const units = state.allocated.get(token)
        if (units === undefined) return [undefined, state] as const
        const allocated = new Map(state.allocated)
        allocated.delete(token)
        return [undefined, { pool: ops.give(state.pool, units), reserved: state.reserved, allocated }] as const
      }),
    snapshot: transition((state, now) => [{ state, now }, state] as const)
  }
}

/**
 * The report common to the stateful managers: the pool, then each reservation
 * (its resources and the milliseconds it has left) and each allocation by token.
 */
export const reportOf = <P, U>(
  snapshot: { readonly state: BookState<P, U>; readonly now: number },
  renderPool: (pool: P) => unknown,
  renderUnits: (units: U) => unknown
): Record<string, unknown> => {
  const { now, state } = snapshot
  const reserved: Record<string, unknown> = {}
  for (const [token, r] of state.reserved) {
    reserved[token] = { resources: renderUnits(r.units), expiresInMs: Math.max(0, r.expiresAt - now) }
  }
  const allocated: Record<string, unknown> = {}
  for (const [token, units] of state.allocated) allocated[token] = renderUnits(units)
  return { resources: renderPool(state.pool), reserved, allocated }
}

/** What a stateful manager adds to its book: how to read a requirement and how to show units and the pool. */
export interface BookedManagerParts<R, P, U> {
  /** Reads a requirement (dies with `InvalidResourceRequirement` on one it cannot read). */
  readonly parse: (requirement: ResourceRequirement) => Effect.Effect<R>
  /** An allocation as the caller sees it. */
  readonly render: (units: U) => Allocation
  /** The free pool, for `reportResources`. */
  readonly renderPool: (pool: P) => unknown
  /** Keys `reportResources` puts before the common report. */
  readonly reportHead?: Readonly<Record<string, unknown>>
}

/**
 * The five `ResourceManager` methods of a stateful manager, over one book: the
 * one implementation `ListResourceManager` and `GpuResourceManager` share,
 * handed to their base `BookedResourceManager` (below).
 * The requirement passed to cancel, allocate and free is never consulted (the
 * token's record decides), so a double or foreign free cannot inflate a pool.
 */
export const bookedManager = <R, P, U>(book: Book<R, P, U>, parts: BookedManagerParts<R, P, U>): ResourceManager => ({
  checkResources: (requirement) => Effect.flatMap(parts.parse(requirement), book.check),
  cancelResources: (_requirement, token) => book.cancel(token),
  allocateResources: (_requirement, token) => Effect.map(book.allocate(token), parts.render),
  freeResources: (_resources, token) => book.free(token),
  reportResources: () =>
    Effect.map(book.snapshot, (snapshot) => ({ ...parts.reportHead, ...reportOf(snapshot, parts.renderPool, parts.render) }))
})

/**
 * The base of `ListResourceManager` and `GpuResourceManager`: the five
 * `ResourceManager` methods, declared once and implemented by `bookedManager`;
 * a subclass states only how it reads a requirement, takes units from its pool
 * and gives them back, and shows an allocation and its pool. Not exported from
 * the package (the managers' shapes are `ResourceManager`'s).
 *
 * A `ResourceManager` over a reservation book. Reservations expire after the
 * manager's `expirationMs` (default 30 s) on the Effect `Clock`, checked lazily
 * on every call (no background fiber). The requirement passed to cancel,
 * allocate and free is never consulted: the token's record decides, so a
 * double or foreign free cannot inflate the pool.
 */
export abstract class BookedResourceManager implements ResourceManager {
  /**
   * Reserves units meeting the requirement under a fresh token and answers
   * `{ ok: true, token }`; answers `{ ok: false, token: "" }`, reserving
   * nothing, when the pool cannot meet it. Dies with
   * `InvalidResourceRequirement` for a requirement the manager cannot read.
   */
  readonly checkResources: (requirement: ResourceRequirement) => Effect.Effect<CheckResult>

  /** Returns the token's reservation to the pool; an unknown, expired or allocated token changes nothing. */
  readonly cancelResources: (requirement: ResourceRequirement, token: string) => Effect.Effect<void>

  /**
   * Turns the token's reservation into an allocation (its shape is the
   * manager's); the requirement is not consulted (the reservation decides). An
   * unknown or expired token fails with `ResourceTokenInvalid`.
   */
  readonly allocateResources: (requirement: ResourceRequirement, token: string) => Effect.Effect<Allocation, ResourceTokenInvalid>

  /**
   * Returns what the token was allocated to the pool. Once per token: a second
   * free, or a token this manager never allocated, changes nothing.
   * `resources` is not trusted: what was recorded for the token is what returns.
   */
  readonly freeResources: (resources: Allocation, token: string) => Effect.Effect<void>

  /**
   * `{ ...head, resources: pool, reserved: { [token]: { resources, expiresInMs } },
   * allocated: { [token]: resources } }` (the head and the pool's shape are the
   * manager's), after expiring what is due.
   */
  readonly reportResources: () => Effect.Effect<Readonly<Record<string, unknown>>>

  /** Takes the five methods a subclass built over its reservation book (`bookedManager`). */
  protected constructor(methods: ResourceManager) {
    this.checkResources = methods.checkResources
    this.cancelResources = methods.cancelResources
    this.allocateResources = methods.allocateResources
    this.freeResources = methods.freeResources
    this.reportResources = methods.reportResources
  }
}
