/**
 * `PassthroughResourceManager`: a manager that manages nothing. Every check
 * succeeds with a fresh token, every allocation is `{}` (so the engine never
 * frees it), and it keeps no state at all. For sites that do not meter
 * resources.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import type { ResourceTokenInvalid } from "./Errors.js"
import { requireRecord } from "./internal/reservations.js"
import type { Allocation, CheckResult, ResourceManager, ResourceRequirement } from "./ResourceManager.js"

const NAME = "PassthroughResourceManager"

/**
 * A stateless `ResourceManager`: checks always succeed, allocations are empty.
 * A requirement that is not an object is a caller bug: `checkResources` dies
 * with `InvalidResourceRequirement`.
 */
export class PassthroughResourceManager implements ResourceManager {
  /** Takes no options; the parameter exists so every manager is built as `new X(options?)`. */
  constructor(_options?: Readonly<Record<string, never>>) {}

  /**
   * Succeeds with `{ ok: true, token }`, a fresh random UUID per call; reserves
   * nothing. Dies with `InvalidResourceRequirement` if `requirement` is not an object.
   */
  readonly checkResources = (requirement: ResourceRequirement): Effect.Effect<CheckResult> =>
    Effect.flatMap(requireRecord(NAME, requirement), () => Effect.sync(() => ({ ok: true, token: randomUUID() })))

  /** Does nothing: there is no reservation to cancel. */
  readonly cancelResources = (_requirement: ResourceRequirement, _token: string): Effect.Effect<void> => Effect.void

  /** Succeeds with `{}` for any token: nothing is allocated, so nothing will be freed. */
  readonly allocateResources = (
    _requirement: ResourceRequirement,
    _token: string
  ): Effect.Effect<Allocation, ResourceTokenInvalid> => Effect.succeed({})

  /** Does nothing: nothing was allocated. */
  readonly freeResources = (_resources: Allocation, _token: string): Effect.Effect<void> => Effect.void

  /** Succeeds with `{}`: there is no pool to report. */
  readonly reportResources = (): Effect.Effect<Readonly<Record<string, unknown>>> => Effect.succeed({})
}
