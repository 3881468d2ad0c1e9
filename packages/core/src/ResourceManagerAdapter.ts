/**
 * `adapt`: any `ResourceManagerLike` (methods returning values, Promises or
 * Effects) as the `ResourceManager` the engine calls; and `gpuIdsOf`, the GPU
 * ids of an allocation in whichever form a manager wrote them.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { ResourceTokenInvalid } from "./Errors.js"
import type { Allocation, CheckResult, ResourceManager, ResourceManagerLike } from "./ResourceManager.js"

/** What a `ResourceManagerLike` method may return. */
type Out<A> = A | PromiseLike<A> | Effect.Effect<A, unknown>

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

