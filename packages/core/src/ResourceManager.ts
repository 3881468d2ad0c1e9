/**
 * Resource managers: the spec the engine calls, and the shapes it speaks
 * (requirements, allocations, the answer of a check). The implementations
 * (`PassthroughResourceManager`, `ListResourceManager`, `GpuResourceManager`)
 * live beside it, one module each (List and Gpu over one reservation book,
 * `internal/reservations.ts`); `ResourceManagerAdapter` turns any
 * `ResourceManagerLike` into this spec; the managers' errors are in `Errors`.
 *
 * @since 0.1.0
 */
import type { Effect } from "effect"
import type { ResourceTokenInvalid } from "./Errors.js"

/** A resource requirement, e.g. `{ num_of_gpus: 2, mem_per_gpu_in_GiB: 8 }`. */
export type ResourceRequirement = Readonly<Record<string, unknown>>

/** An allocation as a manager returns it, e.g. `{ gpu: [0, 1] }`. Empty: nothing to free. */
export type Allocation = Readonly<Record<string, unknown>>

/** The answer of `checkResources`: `ok` and, on success, the reservation token. */
export interface CheckResult {
  readonly ok: boolean
  readonly token: string
}

/** A resource manager whose methods return Effects. */
export interface ResourceManager {
  /** Reserves on success; the reservation expires unless allocated or cancelled. */
  readonly checkResources: (requirement: ResourceRequirement) => Effect.Effect<CheckResult>
  /** Returns a reservation to the pool; unknown tokens are ignored. */
  readonly cancelResources: (requirement: ResourceRequirement, token: string) => Effect.Effect<void>
  /** Turns a reservation into an allocation; unknown or expired token: `ResourceTokenInvalid`. */
  readonly allocateResources: (requirement: ResourceRequirement, token: string) => Effect.Effect<Allocation, ResourceTokenInvalid>
  /** Returns an allocation to the pool, once per token; a second free is a no-op. */
  readonly freeResources: (resources: Allocation, token: string) => Effect.Effect<void>
  /** A JSON report of the pool and reservations. */
  readonly reportResources: () => Effect.Effect<Readonly<Record<string, unknown>>>
}

/** What a `ResourceManagerLike` method may return: a value, a Promise, or an Effect. */
type Out<A> = A | PromiseLike<A> | Effect.Effect<A, unknown>

/** A resource manager in any style: methods may return values, Promises, or Effects. */
export interface ResourceManagerLike {
  readonly checkResources: (requirement: ResourceRequirement) => Out<CheckResult | readonly [boolean, string]>
  readonly cancelResources: (requirement: ResourceRequirement, token: string) => Out<unknown>
  readonly allocateResources: (requirement: ResourceRequirement, token: string) => Out<Allocation | null | undefined>
  readonly freeResources: (resources: Allocation, token: string) => Out<unknown>
  readonly reportResources?: () => Out<Readonly<Record<string, unknown>>>
}

