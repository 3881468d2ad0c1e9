/**
 * Resource managers: the spec the engine calls, and the adapter that accepts
 * plain or Promise-returning managers. The implementations (Passthrough, List,
 * Gpu) live beside this spec, one module each, and are re-exported here with
 * the managers' errors (`InvalidResourceRequirement`, `InvalidResourceConfig`).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { ResourceTokenInvalid } from "./Errors.js"

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

type Out<A> = A | PromiseLike<A> | Effect.Effect<A, unknown>

/** A resource manager in any style: methods may return values, Promises, or Effects. */
export interface ResourceManagerLike {
  readonly checkResources: (requirement: ResourceRequirement) => Out<CheckResult | readonly [boolean, string]>
  readonly cancelResources: (requirement: ResourceRequirement, token: string) => Out<unknown>
  readonly allocateResources: (requirement: ResourceRequirement, token: string) => Out<Allocation | null | undefined>
  readonly freeResources: (resources: Allocation, token: string) => Out<unknown>
  readonly reportResources?: () => Out<Readonly<Record<string, unknown>>>
}

const lift = <A>(thunk: () => Out<A>): Effect.Effect<A, unknown> =>
  Effect.suspend(() => {
    const out = thunk()
    if (Effect.isEffect(out)) return out as Effect.Effect<A, unknown>
    if (out !== null && typeof out === "object" && typeof (out as PromiseLike<A>).then === "function") {
      return Effect.tryPromise({ try: () => Promise.resolve(out as PromiseLike<A>), catch: (e) => e })
    }
    return Effect.succeed(out as A)
  }).pipe(Effect.catchAllDefect((d) => Effect.fail(d)))

const describe = (e: unknown): string => (e instanceof Error ? e.message : typeof e === "string" ? e : JSON.stringify(e))

/**
 * Adapts any `ResourceManagerLike` to a `ResourceManager`. Failures of an
 * adapted manager become defects, except in `allocateResources`, where they
 * become `ResourceTokenInvalid`.
 */
export const adapt = (manager: ResourceManagerLike | ResourceManager): ResourceManager => ({
  checkResources: (req) =>
    lift(() => manager.checkResources(req)).pipe(
      Effect.map((r): CheckResult => (Array.isArray(r) ? { ok: Boolean(r[0]), token: String(r[1] ?? "") } : (r as CheckResult))),
      Effect.orDie
    ),
  cancelResources: (req, token) => lift(() => manager.cancelResources(req, token)).pipe(Effect.asVoid, Effect.orDie),
  allocateResources: (req, token) =>
    lift(() => manager.allocateResources(req, token)).pipe(
      Effect.map((a) => (a ?? {}) as Allocation),
      Effect.mapError((e) => (e instanceof ResourceTokenInvalid ? e : new ResourceTokenInvalid({ token: `${token} (${describe(e)})` })))
    ),
  freeResources: (resources, token) => lift(() => manager.freeResources(resources, token)).pipe(Effect.asVoid, Effect.orDie),
  reportResources: () =>
    manager.reportResources
      ? lift(() => manager.reportResources!()).pipe(Effect.orDie)
      : Effect.succeed({})
})

/**
 * The GPU ids of an allocation, normalized to strings: `gpu` or `gpus` as an
 * array of ids, or as a record keyed by id (the `GpuResourceManager` form).
 */
export const gpuIdsOf = (allocation: Allocation): ReadonlyArray<string> => {
  const ids: Array<string> = []
  for (const key of ["gpu", "gpus"]) {
    const v = allocation[key]
    if (Array.isArray(v)) ids.push(...v.map(String))
    else if (typeof v === "object" && v !== null) ids.push(...Object.keys(v))
  }
  return [...new Set(ids)]
}

export { InvalidResourceConfig, InvalidResourceRequirement } from "./internal/reservations.js"
export * from "./PassthroughResourceManager.js"
export * from "./ListResourceManager.js"
export * from "./GpuResourceManager.js"
