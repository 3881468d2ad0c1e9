/**
 * Job meta: its schema, the drift check against the deployed meta, and the
 * per-site views of `launcher_spec` and `resource_spec`.
 *
 * @since 0.1.0
 */
import { Effect, Either, ParseResult, Schema } from "effect"
import { InvalidJobMeta, JobMetaMismatch } from "./Errors.js"

const JsonRecord = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** A site's (or `default`'s) entry in `launcher_spec`: `{ [mode]: { ...options } }`. */
export const LauncherSiteSpec = Schema.Record({ key: Schema.String, value: JsonRecord })

/** The job meta schema: the keys flexec reads, and any other key kept as it is. */
export const JobMeta = Schema.Struct(
  {
    job_id: Schema.optional(Schema.NullOr(Schema.String)),
    resource_spec: Schema.optional(Schema.NullOr(JsonRecord)),
    launcher_spec: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: LauncherSiteSpec }))),
    scope: Schema.optional(Schema.NullOr(Schema.String)),
    study: Schema.optional(Schema.NullOr(Schema.String)),
    byoc: Schema.optional(Schema.Boolean)
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)

/** Decoded job meta. */
export type JobMeta = typeof JobMeta.Type

/** Keys that must be equal in `startApp`'s meta and the deployed meta. */
export const protectedKeys = ["job_id", "resource_spec", "launcher_spec", "scope", "study"] as const

/** The job meta decoder, made once. */
const decodeJobMetaEither = Schema.decodeUnknownEither(JobMeta, { onExcessProperty: "preserve" })

/**
 * Decodes job meta, failing with `InvalidJobMeta` naming the offending key. A
 * `job_id` other than `jobId` is refused too, unless `options.checkJobId` is
 * false (`startApp`'s meta: its `job_id` is a protected key, compared with the
 * deployed meta's, so a different one is `JobMetaMismatch`).
 */
export const decodeJobMeta = (
  jobId: string,
  input: unknown,
  options?: { readonly checkJobId?: boolean }
): Effect.Effect<JobMeta, InvalidJobMeta> => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return Effect.fail(new InvalidJobMeta({ jobId, issues: "job meta must be a JSON object" }))
  }
  // A "__proto__" key (JSON.parse makes it an own key) would become the prototype of the
  // decoded object, and inherited keys would then pass for the job's own.
  const forbidden = forbiddenKeyPath(input, "meta")
  if (forbidden !== undefined) {
    return Effect.fail(new InvalidJobMeta({ jobId, issues: `${forbidden}: the key "__proto__" is not allowed in job meta` }))
  }
  const result = decodeJobMetaEither(input)
  return Either.match(result, {
    onLeft: (error) =>
      Effect.fail(new InvalidJobMeta({ jobId, issues: ParseResult.TreeFormatter.formatErrorSync(error) })),
    onRight: (meta) =>
      options?.checkJobId !== false && meta.job_id !== undefined && meta.job_id !== null && meta.job_id !== jobId
        ? Effect.fail(new InvalidJobMeta({ jobId, issues: `job_id is ${JSON.stringify(meta.job_id)}, expected '${jobId}'` }))
        : Effect.succeed(meta)
  })
}

const forbiddenKeyPath = (value: unknown, path: string, depth = 0): string | undefined => {
  if (typeof value !== "object" || value === null || depth > 64) return undefined
  for (const key of Object.keys(value)) {
    if (key === "__proto__") return path
    const found = forbiddenKeyPath((value as Record<string, unknown>)[key], `${path}.${key}`, depth + 1)
    if (found !== undefined) return found
  }
  return undefined
}

/** Deep equality of JSON values; `undefined` and `null` are equal. */
export const jsonEqual = (a: unknown, b: unknown): boolean => {
  if (a === undefined) a = null
  if (b === undefined) b = null
  if (a === b) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a)) {
    const bb = b as Array<unknown>
    return a.length === bb.length && a.every((v, i) => jsonEqual(v, bb[i]))
  }
  const ra = a as Record<string, unknown>
  const rb = b as Record<string, unknown>
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)])
  for (const k of keys) if (!jsonEqual(ra[k], rb[k])) return false
  return true
}

/**
 * Checks the protected keys of `given` against the deployed meta and returns the
 * launch meta: `given` with the protected keys and `byoc` taken from `deployed`
 * (`byoc` only when the site allows BYOC).
 */
export const mergeWithDeployed = (
  jobId: string,
  deployed: JobMeta,
  given: Readonly<Record<string, unknown>> | undefined,
  allowByoc: boolean
): Effect.Effect<JobMeta, JobMetaMismatch> =>
  Effect.gen(function* () {
    const input = given ?? {}
    if (given !== undefined) {
      for (const key of protectedKeys) {
        if (!jsonEqual(deployed[key], input[key])) return yield* new JobMetaMismatch({ jobId, key })
      }
    }
    const merged: Record<string, unknown> = { ...input }
    for (const key of protectedKeys) {
      if (deployed[key] === undefined) delete merged[key]
      else merged[key] = deployed[key]
    }
    delete merged.byoc
    if (allowByoc && deployed.byoc === true) merged.byoc = true
    return merged as JobMeta
  })

/**
 * The options of launcher mode `mode` for `site`: `launcher_spec.default[mode]`
 * merged with `launcher_spec[site][mode]` (site wins); `undefined` when neither exists.
 */
export const launcherSpecFor = (
  meta: JobMeta,
  site: string,
  mode: string
): Readonly<Record<string, unknown>> | undefined => {
  const spec = meta.launcher_spec
  if (!spec) return undefined
  const base = spec.default?.[mode]
  const own = spec[site]?.[mode]
  if (base === undefined && own === undefined) return undefined
  return { ...base, ...own }
}

/**
 * The resource requirement for `site`: `resource_spec["@default"]` (or `default`)
 * merged with `resource_spec[site]` (site wins). Empty when there is none.
 */
export const resourceSpecFor = (meta: JobMeta, site: string): Readonly<Record<string, unknown>> => {
  const spec = meta.resource_spec
  if (!spec) return {}
  const pick = (key: string): Record<string, unknown> => {
    const v = spec[key]
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {}
  }
  return { ...pick("default"), ...pick("@default"), ...pick(site) }
}

/** One problem `checkLauncherSpec` found, in the order it walked them. */
export interface LauncherSpecProblem {
  /** The entry is not a JSON object (`path` is the entry's, e.g. `launcher_spec.default.docker`), or it holds a key outside the allowlist (`path` is the key's, e.g. `launcher_spec.site-1.docker.privileged`). */
  readonly kind: "notAnObject" | "notAllowed"
  readonly path: string
}

/** Why `checkLauncherSpec` refused a job's `launcher_spec`: every problem, and one message naming them and the allowed keys. */
export interface LauncherSpecRefusal {
  readonly problems: ReadonlyArray<LauncherSpecProblem>
  /**
   * Each entry that is not an object (`<path> must be an object`), then the keys
   * outside the allowlist in one part (`<paths>: not allowed; the keys allowed in
   * launcher_spec.<site|default>.<mode> are: <keys>`), joined with `"; "`.
   */
  readonly message: string
}

/**
 * Checks a job's options for launcher mode `mode` against the backend's
 * allowlist: `launcher_spec.default[mode]`, then `launcher_spec[site][mode]`,
 * must each be absent or a JSON object holding only `allowedKeys`. Returns
 * their merge (site wins, as `launcherSpecFor`; empty when neither exists), or
 * every problem found. Checks the keys only, not their values: those are the
 * backend's to check.
 */
export const checkLauncherSpec = (
  meta: JobMeta,
  site: string,
  mode: string,
  allowedKeys: ReadonlyArray<string>
): Either.Either<Readonly<Record<string, unknown>>, LauncherSpecRefusal> => {
  const problems: Array<LauncherSpecProblem> = []
  for (const where of ["default", site]) {
    const entry: unknown = meta.launcher_spec?.[where]?.[mode]
    if (entry === undefined) continue
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      problems.push({ kind: "notAnObject", path: `launcher_spec.${where}.${mode}` })
      continue
    }
    for (const key of Object.keys(entry)) {
      if (!allowedKeys.includes(key)) problems.push({ kind: "notAllowed", path: `launcher_spec.${where}.${mode}.${key}` })
    }
  }
  if (problems.length === 0) return Either.right(launcherSpecFor(meta, site, mode) ?? {})
  const parts = problems.filter((p) => p.kind === "notAnObject").map((p) => `${p.path} must be an object`)
  const refused = problems.filter((p) => p.kind === "notAllowed").map((p) => p.path)
  if (refused.length > 0) {
    parts.push(`${refused.join(", ")}: not allowed; the keys allowed in launcher_spec.<site|default>.${mode} are: ${allowedKeys.join(", ")}`)
  }
  return Either.left({ problems, message: parts.join("; ") })
}
