/**
 * Job ids, client names and the client's identity.
 *
 * @since 0.1.0
 */
import { Effect, Either, Schema } from "effect"
import { InvalidClient, InvalidJobId } from "./Errors.js"

/** The pattern a job id and a client name must match. */
export const IdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

const reserved = new Set(["startup", "local"])

/** Why `value` is not a valid id, or `undefined` when it is. */
export const idProblem = (value: unknown): string | undefined => {
  if (typeof value !== "string") return `expected a string, got ${value === null ? "null" : typeof value}`
  if (value.length === 0) return "must not be empty"
  if (value.length > 128) return `must be at most 128 characters, got ${value.length}`
  if (!IdPattern.test(value)) return "must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
  if (reserved.has(value)) return `'${value}' is a reserved workspace name`
  return undefined
}

const idSchema = <B extends string>(brand: B) =>
  Schema.String.pipe(
    Schema.filter((s) => idProblem(s) === undefined, {
      message: (issue) => idProblem(issue.actual) ?? "invalid id"
    }),
    Schema.brand(brand)
  )

/** A job id: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, not `startup` or `local`. */
export const JobId = idSchema("JobId")

/** A validated job id. */
export type JobId = typeof JobId.Type

/** A client (site) name, same rule as `JobId`. */
export const ClientName = idSchema("ClientName")

/** A validated client name. */
export type ClientName = typeof ClientName.Type

const show = (value: unknown): string => {
  if (typeof value === "string") return value
  try {
    return String(value)
  } catch {
    // a null-prototype object, or one whose toString throws
    return Object.prototype.toString.call(value)
  }
}

/** Validates a job id without an Effect: the id, or the `InvalidJobId` that says why. */
export const checkJobId = (value: unknown): Either.Either<JobId, InvalidJobId> => {
  const problem = idProblem(value)
  return problem === undefined ? Either.right(value as JobId) : Either.left(new InvalidJobId({ value: show(value), reason: problem }))
}

/** Validates a job id, failing with `InvalidJobId` that says why. */
export const decodeJobId = (value: unknown): Effect.Effect<JobId, InvalidJobId> => {
  const checked = checkJobId(value)
  return Either.isRight(checked) ? Effect.succeed(checked.right) : Effect.fail(checked.left)
}

/** Validates a client name, failing with `InvalidClient` that says why. */
export const decodeClientName = (value: unknown): Effect.Effect<ClientName, InvalidClient> => {
  const problem = idProblem(value)
  return problem === undefined
    ? Effect.succeed(value as ClientName)
    : Effect.fail(new InvalidClient({ value: show(value), reason: problem }))
}

/** The FL client's identity and credentials. */
export const ClientInfo = Schema.Struct({
  clientName: Schema.String,
  token: Schema.optional(Schema.String),
  tokenSignature: Schema.optional(Schema.String),
  ssid: Schema.optional(Schema.String)
})

/** The FL client's identity and credentials. */
export interface ClientInfo {
  readonly clientName: string
  readonly token?: string | undefined
  readonly tokenSignature?: string | undefined
  readonly ssid?: string | undefined
}

/** Validates a `ClientInfo`, failing with `InvalidClient`. */
export const decodeClientInfo = (value: unknown): Effect.Effect<ClientInfo, InvalidClient> =>
  Effect.gen(function* () {
    if (typeof value !== "object" || value === null) {
      return yield* new InvalidClient({ value: show(value), reason: "expected an object { clientName, token?, tokenSignature?, ssid? }" })
    }
    const v = value as Record<string, unknown>
    yield* decodeClientName(v.clientName)
    for (const key of ["token", "tokenSignature", "ssid"] as const) {
      if (v[key] !== undefined && typeof v[key] !== "string") {
        return yield* new InvalidClient({ value: show(v.clientName), reason: `${key} must be a string` })
      }
    }
    const out: { -readonly [K in keyof ClientInfo]: ClientInfo[K] } = { clientName: v.clientName as string }
    if (v.token !== undefined) out.token = v.token as string
    if (v.tokenSignature !== undefined) out.tokenSignature = v.tokenSignature as string
    if (v.ssid !== undefined) out.ssid = v.ssid as string
    return out as ClientInfo
  })
