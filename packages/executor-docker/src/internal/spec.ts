/**
 * Pure helpers of the Docker backend: the job's `launcher_spec.<site|default>.docker`
 * allowlist, sizes, image patterns, container names and container paths.
 */
import { checkLauncherSpec, resourceSpecFor } from "@flexec/core"
import { Either } from "effect"
import type { JobMeta } from "@flexec/core"

/** Keys a job may set in its `launcher_spec.<site|default>.docker` entry. */
export const allowedSpecKeys = ["image", "entrypoint", "num_of_gpus", "shm_size"] as const

/** Keys of a container that belong to the launcher; `defaultContainerOptions` cannot set them. */
export const launcherOwnedKeys = ["mounts", "network", "env", "cmd", "name", "user", "image", "labels"] as const

/** Container-create (and HostConfig) keys refused in `defaultContainerOptions`, lower-cased, by the launcher key they touch. */
const ownedContainerKeys: Readonly<Record<string, string>> = {
  image: "image",
  cmd: "cmd",
  env: "env",
  labels: "labels",
  user: "user",
  name: "name",
  workingdir: "cmd",
  networkingconfig: "network",
  networkdisabled: "network",
  volumes: "mounts",
  hostconfig: "",
  mounts: "mounts",
  binds: "mounts",
  network: "network",
  networkmode: "network",
  volumesfrom: "mounts",
  tmpfs: "mounts"
}

const ownedHostConfigKeys: Readonly<Record<string, string>> = {
  mounts: "mounts",
  binds: "mounts",
  volumesfrom: "mounts",
  tmpfs: "mounts",
  networkmode: "network",
  links: "network"
}

/** Container paths. */
export const containerPaths = {
  workspace: "/var/tmp/flexec/workspace",
  channelDir: "/run/flexec",
  workerNodePath: "/opt/flexec/node_modules",
  workerModulePath: "/opt/flexec/node_modules/@flexec/core/dist/worker.cjs"
} as const

/** The job's docker options after validation. */
export interface DockerJobSpec {
  readonly image: string | undefined
  readonly entrypoint: ReadonlyArray<string> | undefined
  readonly numOfGpus: number | undefined
  readonly shmSize: number | undefined
  /** `resource_spec[site].memory` in bytes. */
  readonly memory: number | undefined
  /** `resource_spec[site].num_of_cpus`. */
  readonly cpus: number | undefined
}

/** A plain object (not null, not an array). */
export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** The `shm_size` pattern (Docker's units: binary multiples). */
export const shmSizePattern = /^[0-9]+(\.[0-9]+)?([bB]|[kKmMgG][bB]?)?$/

/** The largest size Docker takes (its sizes are int64): 2^63 − 1. */
export const maxInt64 = 2n ** 63n - 1n

/**
 * `digits[.fraction] × factor` in whole bytes, exactly (BigInt), or `undefined`
 * when it is over 2^63 − 1. The result is the largest JS number not above the
 * exact value, so it never reaches Docker as more than was asked (or as
 * `Infinity`, which JSON sends as `null`).
 */
const bytesWithin64 = (digits: string, fraction: string, factor: bigint): number | undefined => {
  const exact = BigInt(digits) * factor + (fraction === "" ? 0n : (BigInt(fraction) * factor) / 10n ** BigInt(fraction.length))
  if (exact > maxInt64) return undefined
  let n = Number(exact)
  // above 2^53 Number() may round up: step down to the next double below
  while (BigInt(n) > exact) n -= 2 ** (Math.floor(Math.log2(n)) - 52)
  return n
}

/**
 * Parses a `shm_size` as NVFlare does: integer bytes from 0 to 2^63 − 1, or a
 * string like `"64m"`, `"1.5g"`, `"512kb"` whose value fits there.
 */
export const parseShmSize = (value: unknown): number | undefined => {
  if (typeof value === "number") {
    return Number.isInteger(value) && value >= 0 && BigInt(value) <= maxInt64 ? value : undefined
  }
  if (typeof value !== "string" || !shmSizePattern.test(value)) return undefined
  const match = /^([0-9]+)(?:\.([0-9]+))?([a-zA-Z]*)$/.exec(value)
  if (!match) return undefined
  const unit = (match[3] ?? "").toLowerCase().replace(/b$/, "")
  const factor = unit === "" ? 1n : unit === "k" ? 1024n : unit === "m" ? 1024n ** 2n : 1024n ** 3n
  return bytesWithin64(match[1]!, match[2] ?? "", factor)
}

const memoryUnits: Readonly<Record<string, number>> = {
  "": 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4
}

/** Parses `resource_spec[site].memory`: a Kubernetes-style quantity (`"512Mi"`, `"2Gi"`, `"1G"`) or integer bytes. */
export const parseMemory = (value: unknown): number | undefined => {
  if (typeof value === "number") return Number.isInteger(value) && value > 0 && BigInt(value) <= maxInt64 ? value : undefined
  if (typeof value !== "string") return undefined
  const match = /^([0-9]+)(?:\.([0-9]+))?(|k|K|M|G|T|Ki|Mi|Gi|Ti)$/.exec(value.trim())
  if (!match) return undefined
  const bytes = bytesWithin64(match[1]!, match[2] ?? "", BigInt(memoryUnits[match[3] ?? ""] ?? 0))
  return bytes !== undefined && bytes > 0 ? bytes : undefined
}

/** Turns an `allowedImages` pattern (`*` matches any run of characters) into a test. */
export const imageMatcher = (patterns: ReadonlyArray<string> | undefined): ((image: string) => boolean) => {
  if (patterns === undefined) return () => true
  const regexes = patterns.map(
    (p) => new RegExp(`^${p.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`)
  )
  return (image) => {
    const candidates = [image]
    // `name` without a tag is `name:latest`.
    const lastSegment = image.slice(image.lastIndexOf("/") + 1)
    if (!lastSegment.includes(":") && !image.includes("@")) candidates.push(`${image}:latest`)
    else if (image.endsWith(":latest")) candidates.push(image.slice(0, -":latest".length))
    return candidates.some((c) => regexes.some((r) => r.test(c)))
  }
}

/**
 * Checks the job's docker options (`launcher_spec.default.docker` merged with
 * `launcher_spec[site].docker`, site wins) and its resource keys. Returns the
 * problem, or the parsed spec.
 */
export const checkJobSpec = (
  meta: JobMeta,
  site: string
): { readonly _tag: "Left"; readonly issues: string } | { readonly _tag: "Right"; readonly spec: DockerJobSpec } => {
  const fail = (issues: string) => ({ _tag: "Left" as const, issues })
  const checked = checkLauncherSpec(meta, site, "docker", allowedSpecKeys)
  // the first problem only, in the words Docker jobs have always been told
  if (Either.isLeft(checked)) {
    const first = checked.left.problems[0]!
    return fail(
      first.kind === "notAnObject"
        ? `${first.path} must be an object`
        : `${first.path} is not allowed; a job may set only: ${allowedSpecKeys.join(", ")}`
    )
  }
  const spec = checked.right
  // `image: null` is "not set" (NVFlare's rule): the site's image is used
  let image: string | undefined
  if (spec.image !== undefined && spec.image !== null) {
    if (typeof spec.image !== "string" || spec.image.trim() === "") {
      return fail(
        `launcher_spec.<site|default>.docker.image must be a non-blank string (or null for the site's image), got ${JSON.stringify(spec.image)}`
      )
    }
    image = spec.image
  }
  let entrypoint: ReadonlyArray<string> | undefined
  if (spec.entrypoint !== undefined) {
    if (meta.byoc !== true) {
      return fail(
        "launcher_spec.<site|default>.docker.entrypoint is allowed only for a BYOC job (deployed meta byoc: true and the site's allowByoc)"
      )
    }
    const nonBlank = (s: unknown): s is string => typeof s === "string" && s.trim() !== ""
    if (nonBlank(spec.entrypoint)) entrypoint = [spec.entrypoint]
    else if (Array.isArray(spec.entrypoint) && spec.entrypoint.length > 0 && spec.entrypoint.every(nonBlank)) {
      entrypoint = spec.entrypoint as ReadonlyArray<string>
    } else {
      return fail(
        `launcher_spec.<site|default>.docker.entrypoint must be a non-blank string or a non-empty array of non-blank strings, got ${JSON.stringify(spec.entrypoint)}`
      )
    }
  }
  let numOfGpus: number | undefined
  if (spec.num_of_gpus !== undefined) {
    if (typeof spec.num_of_gpus !== "number" || !Number.isSafeInteger(spec.num_of_gpus) || spec.num_of_gpus < 0) {
      return fail(`launcher_spec.<site|default>.docker.num_of_gpus must be a non-negative integer, got ${JSON.stringify(spec.num_of_gpus)}`)
    }
    numOfGpus = spec.num_of_gpus
  }
  const resources = resourceSpecFor(meta, site)
  let memory: number | undefined
  if (resources.memory !== undefined && resources.memory !== null) {
    memory = parseMemory(resources.memory)
    if (memory === undefined || memory < 6 * 1024 ** 2) {
      return fail(
        `resource_spec.${site}.memory ${shown(resources.memory)} is not a memory size of at least 6Mi and at most 2^63 − 1 bytes (e.g. "512Mi", "2Gi", or integer bytes)`
      )
    }
  }
  let cpus: number | undefined
  if (resources.num_of_cpus !== undefined && resources.num_of_cpus !== null) {
    if (typeof resources.num_of_cpus !== "number" || !(resources.num_of_cpus > 0) || !Number.isFinite(resources.num_of_cpus)) {
      return fail(`resource_spec.${site}.num_of_cpus must be a positive number`)
    }
    cpus = resources.num_of_cpus
  }
  let shmSize: number | undefined
  if (spec.shm_size !== undefined) {
    shmSize = parseShmSize(spec.shm_size)
    if (shmSize === undefined) {
      return fail(
        `launcher_spec.<site|default>.docker.shm_size ${shown(spec.shm_size)} must be integer bytes or match ${shmSizePattern.source}, at most 2^63 − 1 bytes`
      )
    }
    // Capped at the memory limit.
    if (memory !== undefined && shmSize > memory) shmSize = memory
  }
  return { _tag: "Right", spec: { image, entrypoint, numOfGpus, shmSize, memory, cpus } }
}

/** A value as an error message shows it (a long one cut short). */
const shown = (value: unknown): string => {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 40 ? `${text.slice(0, 37)}...` : text
}

/** The launcher-owned keys `defaultContainerOptions` tries to set (empty when none). */
export const ownedKeysIn = (options: Readonly<Record<string, unknown>> | undefined): ReadonlyArray<string> => {
  if (options === undefined) return []
  const found: Array<string> = []
  for (const key of Object.keys(options)) {
    const owned = ownedContainerKeys[key.toLowerCase()]
    if (owned !== undefined && owned !== "") found.push(key)
  }
  const hostConfig = Object.entries(options).find(([k]) => k.toLowerCase() === "hostconfig")?.[1]
  if (isRecord(hostConfig)) {
    for (const key of Object.keys(hostConfig)) {
      if (ownedHostConfigKeys[key.toLowerCase()] !== undefined) found.push(`HostConfig.${key}`)
    }
  }
  return found
}

/** Docker's container-name alphabet. */
const sanitize = (s: string, max: number): string => {
  const cleaned = s.replace(/[^a-zA-Z0-9_.-]/g, "_").slice(0, max)
  return cleaned.length === 0 ? "x" : cleaned
}

/** `<site>-<job>-<random>`, valid as a Docker container name. */
export const containerName = (site: string, jobId: string, random: string): string => {
  const name = `${sanitize(site, 60)}-${sanitize(jobId, 128)}-${sanitize(random, 16)}`
  return /^[a-zA-Z0-9]/.test(name) ? name : `j${name}`
}

/** Parses `containerUser`: `"uid:gid"`, `"uid"` (gid = uid) or `{ uid, gid }`. */
export const parseContainerUser = (
  value: string | { readonly uid: number; readonly gid: number } | undefined
): { readonly uid: number; readonly gid: number } | string => {
  if (value === undefined) {
    const uid = process.getuid?.() ?? 0
    const gid = process.getgid?.() ?? 0
    return { uid, gid }
  }
  if (typeof value === "object") {
    if (Number.isSafeInteger(value.uid) && value.uid >= 0 && Number.isSafeInteger(value.gid) && value.gid >= 0) return value
    return `containerUser ${JSON.stringify(value)}: uid and gid must be non-negative integers`
  }
  const match = /^([0-9]+)(?::([0-9]+))?$/.exec(value)
  if (!match) return `containerUser ${JSON.stringify(value)} must be "uid:gid" with numeric ids`
  const uid = Number(match[1])
  return { uid, gid: match[2] === undefined ? uid : Number(match[2]) }
}

