/**
 * The Docker error mapping every call site shares: a 404 from the engine (no
 * such container or image), and any Docker failure as `BackendUnavailable`.
 * Typed structurally, so the client module can use it without an import cycle.
 *
 * @internal
 */
import { BackendUnavailable } from "@flexec/core"
import { Effect, Option } from "effect"

/** A Docker failure as far as the mapping needs it (`DockerApiError` or `BackendUnavailable`). */
type Failure = { readonly _tag: string; readonly message: string; readonly statusCode?: number }

/** The engine answered 404: no such container (or image). */
export const isNotFound = (e: Failure): boolean => e._tag === "DockerApiError" && e.statusCode === 404

/** `Some` of what `effect` gives, `None` when the engine answers 404. */
export const orNotFound = <A, E extends Failure, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<Option.Option<A>, E, R> =>
  effect.pipe(
    Effect.map(Option.some),
    Effect.catchIf(isNotFound, () => Effect.succeed(Option.none<A>()))
  )

/** Any Docker failure as `BackendUnavailable`; an API refusal keeps its message and names the engine. */
export const asUnavailable = (engine: string) => (e: Failure): BackendUnavailable =>
  e._tag === "BackendUnavailable" ? (e as unknown as BackendUnavailable) : new BackendUnavailable({ backend: "docker", detail: `${e.message} (engine ${engine})` })

/** The message of whatever was thrown. */
export const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e))
