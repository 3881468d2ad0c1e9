/**
 * `BookedResourceManager`: the base of the stateful resource managers
 * (`ListResourceManager`, `GpuResourceManager`). It holds the five
 * `ResourceManager` methods, implemented once over a reservation book (a free
 * pool, reservations with an expiry instant on the Effect `Clock`, and
 * allocations, changed atomically together); a subclass says only how it reads
 * a requirement, takes units from its pool and gives them back, and shows an
 * allocation and its pool.
 *
 * @since 0.1.0
 */
import type { Effect } from "effect"
import type { ResourceTokenInvalid } from "./Errors.js"
import type { Allocation, CheckResult, ResourceManager, ResourceRequirement } from "./ResourceManager.js"

/**
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

  /** Takes the five methods a subclass built over its reservation book. */
  protected constructor(methods: ResourceManager) {
    this.checkResources = methods.checkResources
    this.cancelResources = methods.cancelResources
    this.allocateResources = methods.allocateResources
    this.freeResources = methods.freeResources
    this.reportResources = methods.reportResources
  }
}
