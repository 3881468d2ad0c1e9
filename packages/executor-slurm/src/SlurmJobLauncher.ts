/**
 * The Slurm backend: each job is a Slurm batch job, submitted with
 * `sbatch --parsable` (it outlives the parent), watched by one `squeue` call per
 * tick for all the launcher's jobs, ended with `scancel`.
 *
 * The parts live in `internal/`: the cluster probe (`probe.ts`), the handle
 * (`handle.ts`), launch (`launch.ts`), recovery (`recover.ts`); this module
 * holds the options and assembles the launcher.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer } from "effect"
import type { Scope } from "effect"
import type { SlurmCli } from "./internal/cli.js"
import { makeCli } from "./internal/cli.js"
import { capabilitiesOf } from "./internal/clusterConfig.js"
import type { ClusterConfig } from "./internal/clusterConfig.js"
import { InvalidJobMeta } from "./internal/core.js"
import type {
  BackendUnavailable,
  Capabilities,
  JobHandle,
  JobLauncher,
  JobMeta,
  LaunchFailed,
  LaunchRequest,
  RecoveredJob
} from "./internal/core.js"
import { jobEnvironment } from "./internal/environment.js"
import { makeLaunch } from "./internal/launch.js"
import { makePoller } from "./internal/poller.js"
import { probe, probeSync } from "./internal/probe.js"
import { makeRecover } from "./internal/recover.js"
import { allowedSlurmSpecKeys, checkSlurmSpec, ownedFlagsIn, parseMemoryBytes } from "./internal/spec.js"

/** Options of the Slurm backend. */
export interface SlurmLauncherOptions {
  /** `SLURM_CONF` for every Slurm command (default: the parent's `SLURM_CONF`, else Slurm's own default). */
  readonly slurmConf?: string
  /** The directory of `sbatch`, `squeue`, `scancel`, `scontrol` (default: found on the parent's PATH). */
  readonly slurmBin?: string
  /** The partition jobs go to (a job's `launcher_spec...slurm.partition` wins; default: the cluster's default). */
  readonly partition?: string
  /** The account jobs are charged to (jobs cannot change it). */
  readonly account?: string
  /** The QOS of jobs (a job's `launcher_spec...slurm.qos` wins). */
  readonly qos?: string
  /** One `squeue` call for all live jobs every this many milliseconds (default 1000). */
  readonly pollIntervalMs?: number
  /** Extra sbatch flags of the site (jobs cannot set them); the backend's own flags are refused here. */
  readonly sbatchArgs?: ReadonlyArray<string>
  /**
   * The instance's runtime directory, where `recover` looks for job records
   * (launches use the request's `paths.runtimeDir`). Default
   * `<os tmpdir>/flexec-<uid>/slurm-<instanceId>`, the engine's default.
   */
  readonly runtimeDir?: string
  /** SIGTERM → SIGKILL for recovered jobs, which carry no request (default 5000 ms). */
  readonly killTimeoutMs?: number
  /** Timeout of every Slurm command (default 30000 ms). */
  readonly commandTimeoutMs?: number
  /** `--mem` of a job whose `resource_spec` names no memory (default `"1Gi"`): a job always gets an explicit limit. */
  readonly defaultMemory?: string | number
}

/** The Slurm backend's launcher: a `JobLauncher` plus what it found out about the cluster. */
export interface SlurmLauncher extends JobLauncher {
  readonly name: "slurm"
  readonly validate: (meta: JobMeta, site: string) => Effect.Effect<void, InvalidJobMeta>
  readonly launch: (request: LaunchRequest) => Effect.Effect<JobHandle, LaunchFailed | BackendUnavailable, Scope.Scope>
  readonly recover: (instanceId: string) => Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable>
  readonly workerRuntimeOnHost: true
  /** The cluster's config as `scontrol show config` gave it at start, if the controller answered. */
  readonly cluster: ClusterConfig | undefined
  /** Why the cluster could not be asked at start (then launch and recover fail with it), if it could not. */
  readonly problem: BackendUnavailable | undefined
  /** Jobs launched by this launcher whose end has not been seen yet. */
  readonly running: () => number
  /** `squeue` calls made by the status poller so far. */
  readonly squeueCalls: () => number
  /** The commands it runs (`sbatch`, `squeue`, `scancel`, `scontrol`), as absolute paths where found. */
  readonly commands: Readonly<Record<"sbatch" | "squeue" | "scancel" | "scontrol", string>>
}

/** Keys a job may set in `launcher_spec.<site|default>.slurm`. */
export { allowedSlurmSpecKeys }

/**
 * The job's environment: exactly `request.env`, plus `NODE_PATH` led by the
 * worker runtime's directory and `SLURM_CONF` when the site set one. Slurm adds
 * its own `SLURM_*` variables on the node; nothing of the parent's is added.
 */
export { jobEnvironment }

const defaultPollIntervalMs = 1000
const defaultKillTimeoutMs = 5000
const defaultCommandTimeoutMs = 30_000
const defaultMemory = "1Gi"

interface Resolved {
  readonly cli: SlurmCli
  readonly partition: string | undefined
  readonly account: string | undefined
  readonly qos: string | undefined
  readonly sbatchArgs: ReadonlyArray<string>
  readonly runtimeDir: string | undefined
  readonly killTimeout: Duration.Duration
  readonly pollInterval: Duration.Duration
  readonly defaultMemoryBytes: number
}

const resolveOptions = (options: SlurmLauncherOptions): Resolved => {
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    if (value === undefined) return fallback
    if (!Number.isInteger(value) || value < 1) throw new TypeError(`SlurmJobLauncher: ${name} must be a positive integer`)
    return value
  }
  const sbatchArgs = options.sbatchArgs ?? []
  if (!Array.isArray(sbatchArgs) || !sbatchArgs.every((a) => typeof a === "string")) {
    throw new TypeError("SlurmJobLauncher: sbatchArgs must be an array of strings")
  }
  const owned = ownedFlagsIn(sbatchArgs)
  if (owned.length > 0) {
    throw new TypeError(`SlurmJobLauncher: sbatchArgs may not set ${owned.join(", ")}: the backend sets those flags itself`)
  }
  const memory = parseMemoryBytes(options.defaultMemory ?? defaultMemory)
  if (memory === undefined) throw new TypeError(`SlurmJobLauncher: defaultMemory ${JSON.stringify(options.defaultMemory)} is not a memory size ("512Mi", "2Gi", bytes)`)
  for (const [name, value] of [["partition", options.partition], ["account", options.account], ["qos", options.qos]] as const) {
    if (value !== undefined && (typeof value !== "string" || !/^[A-Za-z0-9_.,:+-]{1,256}$/.test(value))) {
      throw new TypeError(`SlurmJobLauncher: ${name} must be a Slurm name, got ${JSON.stringify(value)}`)
    }
  }
  return {
    cli: makeCli({
      slurmBin: options.slurmBin,
      slurmConf: options.slurmConf,
      timeoutMs: positive("commandTimeoutMs", options.commandTimeoutMs, defaultCommandTimeoutMs)
    }),
    partition: options.partition,
    account: options.account,
    qos: options.qos,
    sbatchArgs,
    runtimeDir: options.runtimeDir,
    killTimeout: Duration.millis(positive("killTimeoutMs", options.killTimeoutMs, defaultKillTimeoutMs)),
    pollInterval: Duration.millis(positive("pollIntervalMs", options.pollIntervalMs, defaultPollIntervalMs)),
    defaultMemoryBytes: memory
  }
}
/**
 * Makes the Slurm backend's launcher. It asks the cluster once, at once
 * (`scontrol show config`, within the command timeout), to declare its
 * capabilities truthfully: a memory limit and OOM detection only where
 * `proctrack/cgroup`, `task/cgroup` and `ConstrainRAMSpace=yes` confine jobs;
 * GPUs only with the `gpu` gres. When the clients are missing or the controller
 * does not answer, `problem` says why, and `launch` and `recover` (so the
 * executor's start) fail with it. Throws a `TypeError` for invalid options.
 */
export const make = (options: SlurmLauncherOptions = {}): SlurmLauncher => {
  const resolved = resolveOptions(options)
  const probed = probeSync(resolved.cli)
  return makeWith(resolved, probed.cluster, probed.problem)
}

/** `make`, asking the cluster without blocking: fails with `BackendUnavailable` when the cluster cannot be asked. */
export const makeEffect = (options: SlurmLauncherOptions = {}): Effect.Effect<SlurmLauncher, BackendUnavailable> =>
  Effect.gen(function* () {
    const resolved = yield* Effect.try({ try: () => resolveOptions(options), catch: (e) => e as TypeError }).pipe(Effect.orDie)
    const probed = yield* probe(resolved.cli)
    if (probed.problem !== undefined) return yield* probed.problem
    return makeWith(resolved, probed.cluster, undefined)
  })

/** The launcher over a resolved configuration and what the probe found. */
const makeWith = (resolved: Resolved, cluster: ClusterConfig | undefined, problem: BackendUnavailable | undefined): SlurmLauncher => {
  const cli = resolved.cli
  const capabilities: Capabilities = capabilitiesOf(cluster)
  const poller = makePoller({ cli, interval: resolved.pollInterval, config: () => cluster })
  let launched = 0

  const checkAvailable: Effect.Effect<void, BackendUnavailable> = Effect.suspend(() =>
    problem === undefined ? Effect.void : Effect.fail(problem)
  )

  const validate = (meta: JobMeta, site: string): Effect.Effect<void, InvalidJobMeta> =>
    Effect.suspend(() => {
      const checked = checkSlurmSpec(meta, site)
      if (checked._tag === "Left") return Effect.fail(new InvalidJobMeta({ jobId: meta.job_id ?? "", issues: checked.issues }))
      if (checked.spec.gpus !== undefined && !capabilities.gpus) {
        return Effect.fail(
          new InvalidJobMeta({
            jobId: meta.job_id ?? "",
            issues: `resource_spec.${site}.num_of_gpus is ${checked.spec.gpus} but this Slurm cluster has no gpu gres (GresTypes=gpu and a gres.conf on the nodes)`
          })
        )
      }
      return Effect.void
    })

  const launchJob = makeLaunch({
    cli,
    poller,
    site: { partition: resolved.partition, account: resolved.account, qos: resolved.qos, sbatchArgs: resolved.sbatchArgs },
    defaultMemoryBytes: resolved.defaultMemoryBytes,
    count: (delta) => {
      launched += delta
    }
  })
  const launch = (request: LaunchRequest): Effect.Effect<JobHandle, LaunchFailed | BackendUnavailable, Scope.Scope> =>
    Effect.zipRight(checkAvailable, launchJob(request))

  const recoverJobs = makeRecover({ cli, poller, runtimeDir: resolved.runtimeDir, killTimeout: resolved.killTimeout })
  const recover = (instanceId: string): Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable> =>
    Effect.zipRight(checkAvailable, recoverJobs(instanceId))

  return {
    name: "slurm",
    capabilities,
    validate,
    launch,
    recover,
    workerRuntimeOnHost: true,
    cluster,
    problem,
    running: () => launched,
    squeueCalls: () => poller.calls(),
    commands: cli.paths
  }
}

/** What every launcher on a cgroup-confined cluster declares (without GPUs); see `make` for how it is decided. */
export const slurmCapabilities = (cluster: ClusterConfig | undefined): Capabilities => capabilitiesOf(cluster)

/**
 * The Slurm backend as a service. `SlurmJobLauncher.make(options)` builds the
 * launcher; `SlurmJobLauncher.layer(options)` provides it (failing with
 * `BackendUnavailable` when the cluster cannot be asked).
 */
export class SlurmJobLauncher extends Context.Tag("@flexec/executor-slurm/SlurmJobLauncher")<SlurmJobLauncher, SlurmLauncher>() {
  /** Makes the launcher (see `make`). */
  static readonly make = make
  /** Makes the launcher without blocking, failing when the cluster cannot be asked (see `makeEffect`). */
  static readonly makeEffect = makeEffect
  /** A layer providing the launcher. */
  static readonly layer = (options?: SlurmLauncherOptions): Layer.Layer<SlurmJobLauncher, BackendUnavailable> =>
    Layer.effect(SlurmJobLauncher, makeEffect(options))
}

export type { ClusterConfig } from "./internal/clusterConfig.js"

