/**
 * `ListResourceManager`: pools of named units, e.g.
 * `{ gpu: [0, 1, 2, 3], license: ["a", "b"] }`. A requirement asks for a count
 * of units per kind (`{ gpu: 2 }`); units are taken from the front of each
 * pool, and cancel, free and expiry put them back at their original positions,
 * so the pool always keeps its configured order (NVFlare returns them
 * reversed; flexec does not).
 *
 * Reservations expire after `expirationMs` (default 30 s) on the Effect
 * `Clock`, checked lazily on every call (no background fiber). A token frees
 * at most once; freeing returns the units recorded for the token, never the
 * units the caller passes, so a double or foreign free cannot inflate a pool.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { InvalidResourceConfig, InvalidResourceRequirement } from "./Errors.js"
import { BookedResourceManager, bookedManager, expirationOf, isRecord, makeBook, requireRecord } from "./internal/reservations.js"
import type { ResourceRequirement } from "./ResourceManager.js"

const NAME = "ListResourceManager"

/** Options of `ListResourceManager`. */
export interface ListResourceManagerOptions {
  /** The pools: kind → its units, in the order they are handed out. */
  readonly resources: Readonly<Record<string, ReadonlyArray<unknown>>>
  /** How long an unallocated reservation lives, in milliseconds of the Effect `Clock`; default 30 000. */
  readonly expirationMs?: number
}

/** A validated requirement: kind → count. */
type Request = ReadonlyArray<readonly [kind: string, count: number]>
/** Free units per kind, as ascending positions in the configured list. */
type Pool = ReadonlyMap<string, ReadonlyArray<number>>
/** Held units per kind, as positions in the configured list. */
type Units = ReadonlyArray<readonly [kind: string, positions: ReadonlyArray<number>]>

const mergeSorted = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): ReadonlyArray<number> =>
  [...a, ...b].sort((x, y) => x - y)

/** Reads a requirement: kind → non-negative integer count. */
const parse = (requirement: ResourceRequirement): Effect.Effect<Request> =>
  Effect.flatMap(requireRecord(NAME, requirement), (record) => {
    const request: Array<readonly [string, number]> = []
    for (const [kind, count] of Object.entries(record)) {
      if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 0) {
        return Effect.die(
          new InvalidResourceRequirement({
            manager: NAME,
            reason: `the count of '${kind}' must be a non-negative integer, got ${JSON.stringify(count) ?? String(count)}`
          })
        )
      }
      request.push([kind, count])
    }
    return Effect.succeed(request)
  })

/**
 * A `ResourceManager` over lists of units per kind. `checkResources` succeeds
 * when every requested kind exists and has enough free units; an unknown kind
 * or too few units answers `{ ok: false, token: "" }`. Counts must be
 * non-negative integers: anything else dies with `InvalidResourceRequirement`.
 * `checkResources` reserves the first free units of each requested kind.
 * Allocations have the shape `{ [kind]: unit[] }` (kinds asked with a count of
 * 0 are left out); `freeResources` returns the units at their original
 * positions. `reportResources` answers `{ resources: { [kind]: freeUnits[] },
 * reserved, allocated }`. The constructor throws `InvalidResourceConfig` when
 * `resources` is not a record of arrays or `expirationMs` is not positive.
 */
export class ListResourceManager extends BookedResourceManager {
  /** Builds the manager with every unit free. */
  constructor(options: ListResourceManagerOptions) {
    const expirationMs = expirationOf(NAME, options?.expirationMs)
    if (!isRecord(options?.resources)) {
      throw new InvalidResourceConfig({ manager: NAME, reason: "resources must be an object of kind → unit list" })
    }
    const capacity = new Map<string, ReadonlyArray<unknown>>()
    for (const [kind, units] of Object.entries(options.resources)) {
      if (!Array.isArray(units)) {
        throw new InvalidResourceConfig({ manager: NAME, reason: `resources.${kind} must be an array of units` })
      }
      capacity.set(kind, Object.freeze([...units]))
    }
    const pool: Pool = new Map([...capacity].map(([kind, units]) => [kind, units.map((_, i) => i)]))
    const book = makeBook<Request, Pool, Units>(
      {
        take: (pool, request) => {
          const held: Array<readonly [string, ReadonlyArray<number>]> = []
          const next = new Map(pool)
          for (const [kind, count] of request) {
            const free = next.get(kind)
            if (free === undefined || free.length < count) return undefined
            if (count === 0) continue
            held.push([kind, free.slice(0, count)])
            next.set(kind, free.slice(count))
          }
          return [held, next]
        },
        give: (pool, units) => {
          const next = new Map(pool)
          for (const [kind, positions] of units) next.set(kind, mergeSorted(next.get(kind) ?? [], positions))
          return next
        },
        isEmpty: (units) => units.length === 0
      },
      pool,
      expirationMs
    )
    const unitsOf = (kind: string, positions: ReadonlyArray<number>) => positions.map((i) => capacity.get(kind)![i])
    super(bookedManager(book, {
      parse,
      render: (units) => Object.fromEntries(units.map(([kind, positions]) => [kind, unitsOf(kind, positions)])),
      renderPool: (pool) => Object.fromEntries([...pool].map(([kind, positions]) => [kind, unitsOf(kind, positions)]))
    }))
  }
}
