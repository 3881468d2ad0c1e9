/**
 * The job's environment: an allowlist of the parent's variables, the site's
 * `inheritEnv` and `env`, and the `FLEXEC_*` variables. Nothing else of the
 * parent reaches a job.
 */

const allowlist = new Set(["PATH", "HOME", "LANG", "TZ", "TMPDIR"])
const neverInherited = (name: string): boolean => name === "CUDA_VISIBLE_DEVICES" || name.startsWith("FLEXEC_")

/** Builds a job's environment. */
export const buildJobEnv = (options: {
  readonly parent: Readonly<Record<string, string | undefined>>
  readonly inherit: ReadonlyArray<string>
  readonly site: Readonly<Record<string, string>>
  readonly flexec: Readonly<Record<string, string | undefined>>
}): Record<string, string> => {
  const env: Record<string, string> = {}
  // names first, then only the allowed values: reading every value of `process.env`
  // costs a call into Node per variable
  for (const name of Object.keys(options.parent)) {
    if (!(allowlist.has(name) || name.startsWith("LC_")) || neverInherited(name)) continue
    const value = options.parent[name]
    if (value !== undefined) env[name] = value
  }
  for (const name of options.inherit) {
    const value = options.parent[name]
    if (value !== undefined && !neverInherited(name)) env[name] = value
  }
  Object.assign(env, options.site)
  for (const [name, value] of Object.entries(options.flexec)) {
    if (value !== undefined && value !== "") env[name] = value
  }
  return env
}
