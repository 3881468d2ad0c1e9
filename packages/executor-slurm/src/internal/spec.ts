/**
 * What a job may ask of Slurm: `launcher_spec.<site|default>.slurm` (an
 * allowlist) and `resource_spec[site]` (memory, CPUs, GPUs), checked and turned
 * into sbatch flags. Flags the backend owns are refused in the site's
 * `sbatchArgs`.
 *
 * @internal
 */
import { Either } from "effect"
import type { JobMeta } from "./core.js"
import { checkLauncherSpec, resourceSpecFor } from "./core.js"

/** Keys a job may set in `launcher_spec.<site|default>.slurm`. */
export const allowedSlurmSpecKeys: ReadonlyArray<string> = ["partition", "time", "qos", "constraint", "reservation", "nice"]

/** A Slurm name list (partitions, QOS, constraints): no whitespace, no `=`, nothing a flag could hide in. */
const slurmWord = /^[A-Za-z0-9_.,:+|&!*()[\]-]{1,256}$/
/** `minutes`, `minutes:seconds`, `hours:minutes:seconds`, `days-hours[:minutes[:seconds]]`, `UNLIMITED`/`INFINITE`. */
const timeLimit = /^(?:[0-9]+(?::[0-9]{1,2}){0,2}|[0-9]+-[0-9]{1,2}(?::[0-9]{1,2}){0,2}|UNLIMITED|INFINITE)$/i

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

/** A memory quantity (`"512Mi"`, `"2Gi"`, `"1G"`) or integer bytes, in bytes; `undefined` when it is neither. */
export const parseMemoryBytes = (value: unknown): number | undefined => {
  if (typeof value === "number") return Number.isSafeInteger(value) && value > 0 ? value : undefined
  if (typeof value !== "string") return undefined
  const match = /^([0-9]+(?:\.[0-9]+)?)(k|K|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(value.trim())
  if (!match) return undefined
  const bytes = Math.floor(Number(match[1]) * memoryUnits[match[2] ?? ""]!)
  return Number.isFinite(bytes) && bytes > 0 ? bytes : undefined
}

/** Bytes as sbatch's `--mem` (whole MiB, rounded up). */
export const memFlag = (bytes: number): string => `--mem=${Math.max(1, Math.ceil(bytes / 1024 ** 2))}M`

/** What the job asked for, after the checks. */
export interface SlurmJobSpec {
  readonly partition?: string
  readonly time?: string
  readonly qos?: string
  readonly constraint?: string
  readonly reservation?: string
  readonly nice?: number
  /** `resource_spec[site].memory` in bytes. */
  readonly memoryBytes?: number
  /** `resource_spec[site].num_of_cpus`, whole CPUs. */
  readonly cpus?: number
  /** `resource_spec[site].num_of_gpus`. */
  readonly gpus?: number
}

/** Checks the job's Slurm options and resources: the spec, or every problem found. */
export const checkSlurmSpec = (
  meta: JobMeta,
  site: string
): { readonly _tag: "Left"; readonly issues: string } | { readonly _tag: "Right"; readonly spec: SlurmJobSpec } => {
  const issues: Array<string> = []
  const checked = checkLauncherSpec(meta, site, "slurm", allowedSlurmSpecKeys)
  if (Either.isLeft(checked)) issues.push(checked.left.message)
  const spec: Readonly<Record<string, unknown>> = Either.isRight(checked) ? checked.right : {}
  const out: { -readonly [K in keyof SlurmJobSpec]: SlurmJobSpec[K] } = {}
  for (const key of ["partition", "qos", "constraint", "reservation"] as const) {
    const value = spec[key]
    if (value === undefined) continue
    if (typeof value !== "string" || !slurmWord.test(value)) {
      issues.push(`launcher_spec.<site|default>.slurm.${key} must be a Slurm name (letters, digits, _ . , : + | & ! * ( ) [ ] -), got ${JSON.stringify(value)}`)
    } else out[key] = value
  }
  if (spec.time !== undefined) {
    const time = typeof spec.time === "number" && Number.isSafeInteger(spec.time) && spec.time > 0 ? String(spec.time) : spec.time
    if (typeof time !== "string" || !timeLimit.test(time)) {
      issues.push(
        `launcher_spec.<site|default>.slurm.time must be a Slurm time limit (minutes, "MM:SS", "HH:MM:SS", "D-HH[:MM[:SS]]" or "UNLIMITED"), got ${JSON.stringify(spec.time)}`
      )
    } else out.time = time
  }
  if (spec.nice !== undefined) {
    if (typeof spec.nice !== "number" || !Number.isSafeInteger(spec.nice) || spec.nice < 0 || spec.nice > 2147483645) {
      issues.push(`launcher_spec.<site|default>.slurm.nice must be a non-negative integer (a job may only lower its priority), got ${JSON.stringify(spec.nice)}`)
    } else out.nice = spec.nice
  }
  const resources = resourceSpecFor(meta, site)
  if (resources.memory !== undefined && resources.memory !== null) {
    const bytes = parseMemoryBytes(resources.memory)
    if (bytes === undefined || bytes < 1024 ** 2) {
      issues.push(`resource_spec.${site}.memory ${JSON.stringify(resources.memory)} is not a memory size of at least 1Mi (e.g. "512Mi", "2Gi", or integer bytes)`)
    } else out.memoryBytes = bytes
  }
  if (resources.num_of_cpus !== undefined && resources.num_of_cpus !== null) {
    const n = resources.num_of_cpus
    if (typeof n !== "number" || !Number.isFinite(n) || !(n > 0)) issues.push(`resource_spec.${site}.num_of_cpus must be a positive number`)
    else out.cpus = Math.ceil(n)
  }
  if (resources.num_of_gpus !== undefined && resources.num_of_gpus !== null) {
    const n = resources.num_of_gpus
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) issues.push(`resource_spec.${site}.num_of_gpus must be a non-negative integer`)
    else if (n > 0) out.gpus = n
  }
  return issues.length > 0 ? { _tag: "Left", issues: issues.join("; ") } : { _tag: "Right", spec: out }
}

/** sbatch flags the backend sets itself: a site's `sbatchArgs` may not. */
const ownedFlags = [
  "--export",
  "--export-file",
  "--chdir",
  "-D",
  "--output",
  "-o",
  "--error",
  "-e",
  "--input",
  "-i",
  "--job-name",
  "-J",
  "--comment",
  "--parsable",
  "--wrap",
  "--mem",
  "--mem-per-cpu",
  "--mem-per-gpu",
  "--open-mode",
  "--get-user-env",
  "--cpus-per-task",
  "-c",
  "--gres",
  "--gpus",
  "-G",
  "--wait",
  "-W",
  "--uid",
  "--gid",
  "--array",
  "-a"
]

/** The owned flags `sbatchArgs` sets (empty when none), as given. */
export const ownedFlagsIn = (args: ReadonlyArray<string>): ReadonlyArray<string> =>
  args.filter((arg) => {
    const flag = arg.startsWith("--") ? arg.split("=")[0]! : arg.startsWith("-") ? arg.slice(0, 2) : undefined
    return flag !== undefined && ownedFlags.includes(flag)
  })

/** Inputs of `sbatchArgv`. */
export interface SbatchInput {
  readonly spec: SlurmJobSpec
  readonly site: { readonly partition?: string | undefined; readonly account?: string | undefined; readonly qos?: string | undefined; readonly sbatchArgs: ReadonlyArray<string> }
  readonly defaultMemoryBytes: number
  /** GPUs the resource manager allocated (used when the job names no `num_of_gpus`). */
  readonly allocatedGpus: number
  readonly jobDir: string
  /** `--output`: the job's stdout. */
  readonly stdoutFile: string
  /** `--error`: the job's stderr. */
  readonly stderrFile: string
  readonly name: string
  readonly comment: string
  readonly wrapper: string
  readonly command: ReadonlyArray<string>
}

/**
 * The whole sbatch argv: the site's extra flags first (the backend's own and
 * the job's come after and win), then the wrapper and the job's argv unchanged.
 */
export const sbatchArgv = (input: SbatchInput): ReadonlyArray<string> => {
  const { spec, site } = input
  const partition = spec.partition ?? site.partition
  const qos = spec.qos ?? site.qos
  const gpus = spec.gpus ?? (input.allocatedGpus > 0 ? input.allocatedGpus : undefined)
  return [
    ...site.sbatchArgs,
    "--parsable",
    "--export=ALL",
    `--chdir=${input.jobDir}`,
    `--output=${input.stdoutFile}`,
    `--error=${input.stderrFile}`,
    "--open-mode=append",
    `--job-name=${input.name}`,
    `--comment=${input.comment}`,
    memFlag(spec.memoryBytes ?? input.defaultMemoryBytes),
    ...(spec.cpus !== undefined ? [`--cpus-per-task=${spec.cpus}`] : []),
    ...(gpus !== undefined ? [`--gres=gpu:${gpus}`] : []),
    ...(partition !== undefined ? [`--partition=${partition}`] : []),
    ...(site.account !== undefined ? [`--account=${site.account}`] : []),
    ...(qos !== undefined ? [`--qos=${qos}`] : []),
    ...(spec.time !== undefined ? [`--time=${spec.time}`] : []),
    ...(spec.constraint !== undefined ? [`--constraint=${spec.constraint}`] : []),
    ...(spec.reservation !== undefined ? [`--reservation=${spec.reservation}`] : []),
    ...(spec.nice !== undefined ? [`--nice=${spec.nice}`] : []),
    input.wrapper,
    ...input.command
  ]
}

/** A Slurm job name for `flexec.<instance>.<job>` (public: never a secret in it). */
export const jobName = (instanceId: string, jobId: string): string =>
  `flexec.${instanceId.replace(/[^A-Za-z0-9_.-]/g, "_")}.${jobId}`

/** The comment holding the labels the backend finds its jobs by (public too). */
export const jobComment = (labels: Readonly<Record<string, string>>): string =>
  Object.entries(labels)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join(";")

/** The labels of a comment `jobComment` wrote (other comments give what parses). */
export const parseComment = (comment: string | undefined): Readonly<Record<string, string>> => {
  const labels: Record<string, string> = {}
  if (comment === undefined) return labels
  for (const part of comment.split(";")) {
    const eq = part.indexOf("=")
    if (eq <= 0) continue
    try {
      labels[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1))
    } catch {
      // not ours
    }
  }
  return labels
}
