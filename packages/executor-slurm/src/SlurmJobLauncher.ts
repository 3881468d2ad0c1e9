/**
 * The Slurm backend: each job is a Slurm batch job, submitted with
 * `sbatch --parsable` (it outlives the parent), watched by one `squeue` call per
 * tick for all the launcher's jobs, ended with `scancel`.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, Option, Ref } from "effect"
import type { Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { SlurmCli, SlurmCommandError } from "./internal/cli.js"
import { makeCli } from "./internal/cli.js"
import { capabilitiesOf, parseShowConfig } from "./internal/clusterConfig.js"
import type { ClusterConfig } from "./internal/clusterConfig.js"
import { BackendUnavailable, decodeJobId, defaultRuntimeDir, InvalidJobMeta, LaunchFailed } from "./internal/core.js"
import type {
  Capabilities,
  JobHandle,
  JobLauncher,
  JobMeta,
  LaunchRequest,
  RecoveredJob,
  TerminateOptions
} from "./internal/core.js"
import { isPending, isTerminal, parseQueue } from "./internal/exit.js"
import { prepareOutputFile, tailLog } from "./internal/logTail.js"
import { makePoller } from "./internal/poller.js"
import type { Poller, Watch } from "./internal/poller.js"
import { ensureWrapper, readRecords, removeRecord, writeRecord } from "./internal/record.js"
import type { JobRecord } from "./internal/record.js"
import {
  allowedSlurmSpecKeys,
  checkSlurmSpec,
  jobComment,
  jobName,
  ownedFlagsIn,
  parseComment,
  parseMemoryBytes,
  sbatchArgv
} from "./internal/spec.js"

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

const defaultPollIntervalMs = 1000
const defaultKillTimeoutMs = 5000
const defaultCommandTimeoutMs = 30_000
const defaultMemory = "1Gi"
/** How long the scope's release waits for Slurm to confirm a killed job's end. */
const releaseExitWait = Duration.seconds(15)

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const unavailable = (e: SlurmCommandError): BackendUnavailable => new BackendUnavailable({ backend: "slurm", detail: e.message })

/**
 * The job's environment: exactly `request.env`, plus `NODE_PATH` led by the
 * worker runtime's directory and `SLURM_CONF` when the site set one. Slurm adds
 * its own `SLURM_*` variables on the node; nothing of the parent's is added.
 */
export const jobEnvironment = (request: LaunchRequest, slurmConf: string | undefined): Record<string, string> => {
  const env: Record<string, string> = {}
  // sbatch's own input variables would steer the submission: not the job's to set
  for (const [k, v] of Object.entries(request.env)) if (!k.startsWith("SBATCH_")) env[k] = v
  env.NODE_PATH = [request.workerRuntime.nodePath, request.env.NODE_PATH]
    .filter((p): p is string => p !== undefined && p.length > 0)
    .join(path.delimiter)
  if (slurmConf !== undefined) env.SLURM_CONF = slurmConf
  return env
}

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
 * The start-up probe: the clients exist, and the controller answers
 * `scontrol show config`. The failure names the command and Slurm's message.
 */
const probeProblem = (cli: SlurmCli, result: { stdout: string } | SlurmCommandError): BackendUnavailable | undefined => {
  for (const name of ["sbatch", "squeue", "scancel", "scontrol"] as const) {
    const file = cli.paths[name]
    if (!path.isAbsolute(file)) {
      return new BackendUnavailable({ backend: "slurm", detail: `${name}: not found on the PATH (install Slurm's clients, or give slurmBin)` })
    }
    try {
      fs.accessSync(file, fs.constants.X_OK)
    } catch {
      return new BackendUnavailable({ backend: "slurm", detail: `${file}: ${fs.existsSync(file) ? "not executable" : "does not exist"} (slurmBin must hold sbatch, squeue, scancel and scontrol)` })
    }
  }
  if ("_tag" in result) return new BackendUnavailable({ backend: "slurm", detail: `the controller did not answer: ${result.message}` })
  return undefined
}

const showConfig = ["show", "config"] as const

/** States in which a job's processes run on its node, so that `scancel --signal` reaches them (else it is cancelled). */
const isSignallable = (state: string | undefined): boolean => state === "RUNNING" || state === "SUSPENDED" || state === "COMPLETING"

// ---------------------------------------------------------------------------
// the handle

interface HandleParams {
  readonly jobId: LaunchRequest["jobId"]
  readonly slurmId: string
  readonly watch: Watch
  readonly killTimeout: Duration.Duration
  readonly fork: (escalation: Effect.Effect<void>) => Effect.Effect<unknown>
  readonly logs?: JobHandle["logs"]
  readonly info: Readonly<Record<string, string | number>>
}

const makeHandle = (cli: SlurmCli, poller: Poller, params: HandleParams): Effect.Effect<JobHandle> =>
  Effect.gen(function* () {
    const { slurmId, watch } = params
    const terminating = yield* Ref.make(false)
    const known = () => Option.isSome(watch.exit)

    /**
     * scancel with `flags` for a running job. A job that is not running yet
     * (pending, or not yet on its node) cannot be signalled (scancel would retry
     * "Job can not be altered now" until its timeout): it is cancelled instead.
     */
    const signal = (flags: ReadonlyArray<string>, state: string | undefined): Effect.Effect<boolean> =>
      cli.run("scancel", isSignallable(state) ? [...flags, slurmId] : [slurmId]).pipe(
        Effect.as(true),
        Effect.catchAll((e) => {
          if (e.unavailable) {
            return Effect.as(Effect.logWarning(`slurm: could not signal job ${slurmId} (${params.jobId}): ${e.message}`), false)
          }
          // already over: nothing to do
          if (/Invalid job id|already completing|has already finished|Job\/step already completing/i.test(e.detail)) return Effect.succeed(true)
          // "Job can not be altered now": pending or not started; cancelling is all that can be done
          return cli.run("scancel", [slurmId]).pipe(
            Effect.as(true),
            Effect.catchAll((e2) =>
              /Invalid job id|already completing/i.test(e2.detail)
                ? Effect.succeed(true)
                : Effect.as(Effect.logWarning(`slurm: could not cancel job ${slurmId} (${params.jobId}): ${e2.message}`), !e2.unavailable)
            )
          )
        })
      )

    /**
     * The job's state now: the poller's, when it says running; else asked once (a job whose worker has
     * connected runs, though the poller's last tick may still have seen it queued).
     */
    const stateNow: Effect.Effect<string | undefined> = Effect.suspend(() =>
      isSignallable(watch.state)
        ? Effect.succeed(watch.state)
        : cli.run("squeue", ["-h", "-t", "all", "-j", slurmId, "-O", "State"]).pipe(
          Effect.map((out) => out.stdout.trim() || watch.state),
          Effect.orElseSucceed(() => watch.state)
        )
    )

    const terminate = (options?: TerminateOptions): Effect.Effect<void> =>
      Effect.flatMap(Ref.getAndSet(terminating, true), (already) => {
        if (already || known()) return Effect.void
        const killAfter = Duration.toMillis(Duration.decode(options?.killAfter ?? params.killTimeout))
        // the KILL is due killAfter after terminate was called, however long the TERM's scancel took
        // (a job not running yet is cancelled instead: its KILL, for the race where it started meanwhile,
        // comes killAfter after the cancel returned, so a cancel seen ending in time is the only call)
        const due = Date.now() + killAfter
        return Effect.flatMap(stateNow, (state) => {
          const running = isSignallable(state)
          // TERM to every process of the job (not setsid descendants: the cgroup-wide KILL below gets those)
          return signal(["--full", "--signal=TERM"], state).pipe(
            Effect.flatMap((sent) =>
              sent
                ? params.fork(
                  Effect.suspend(() => Effect.sleep(Duration.millis(running ? Math.max(0, due - Date.now()) : killAfter))).pipe(
                    Effect.zipRight(Effect.suspend(() => (known() ? Effect.void : Effect.flatMap(stateNow, (s) => (s !== undefined && isTerminal(s) ? Effect.void : Effect.asVoid(signal(["--batch", "--signal=KILL"], s)))))))
                  )
                )
                : Ref.set(terminating, false) // the controller did not answer: a later terminate tries again
            ),
            Effect.asVoid
          )
        })
      })

    const handle: JobHandle = {
      jobId: params.jobId,
      poll: Effect.sync(() => watch.exit),
      wait: poller.wait(watch),
      terminate,
      ...(params.logs !== undefined ? { logs: params.logs } : {}),
      info: params.info
    }
    return handle
  })

// ---------------------------------------------------------------------------
// make

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
  const cli = resolved.cli
  const probed = cli.runSync("scontrol", showConfig)
  return makeWith(resolved, "_tag" in probed ? undefined : parseShowConfig(probed.stdout), probeProblem(cli, probed))
}

/** `make`, asking the cluster without blocking: fails with `BackendUnavailable` when the cluster cannot be asked. */
export const makeEffect = (options: SlurmLauncherOptions = {}): Effect.Effect<SlurmLauncher, BackendUnavailable> =>
  Effect.gen(function* () {
    const resolved = yield* Effect.try({ try: () => resolveOptions(options), catch: (e) => e as TypeError }).pipe(Effect.orDie)
    const probed = yield* Effect.either(resolved.cli.run("scontrol", showConfig))
    const result = probed._tag === "Right" ? probed.right : probed.left
    const problem = probeProblem(resolved.cli, result)
    if (problem !== undefined) return yield* problem
    return makeWith(resolved, "_tag" in result ? undefined : parseShowConfig(result.stdout), undefined)
  })

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

  /** Cancels whatever of ours is queued under `name` (an sbatch that timed out may still have submitted it). */
  const cancelByName = (name: string): Effect.Effect<void> =>
    cli.run("squeue", ["-h", "--me", "-t", "all", `--name=${name}`, "-O", "JobID:|,State:|,exit_code:|"]).pipe(
      Effect.flatMap((out) => {
        const ids = parseQueue(out.stdout).filter((r) => !isTerminal(r.state)).map((r) => r.slurmId)
        return ids.length === 0 ? Effect.void : Effect.asVoid(cli.run("scancel", ids))
      }),
      Effect.catchAll((e) => Effect.logWarning(`slurm: could not check for a job submitted as ${name}: ${e.message}`))
    )

  const launch = (request: LaunchRequest): Effect.Effect<JobHandle, LaunchFailed | BackendUnavailable, Scope.Scope> =>
    Effect.gen(function* () {
      yield* checkAvailable
      const jobId = request.jobId
      const failed = (reason: string, cause?: unknown): LaunchFailed =>
        new LaunchFailed(cause === undefined ? { jobId, reason } : { jobId, reason, cause })
      const checked = checkSlurmSpec(request.meta, request.site)
      if (checked._tag === "Left") return yield* failed(checked.issues)
      if (request.command.length === 0) return yield* failed("the command is empty")
      const jobDir = request.paths.jobDir
      const dirStat = fs.statSync(jobDir, { throwIfNoEntry: false })
      if (dirStat === undefined || !dirStat.isDirectory()) {
        return yield* failed(`the job directory ${jobDir} does not exist or is not a directory`)
      }
      const runtimeDir = request.paths.runtimeDir
      const wrapper = yield* Effect.try({
        try: () => ensureWrapper(runtimeDir),
        catch: (e) => failed(`cannot write the job wrapper under ${runtimeDir}: ${messageOf(e)}`, e)
      })
      // slurmstepd appends the job's stdout to <log>.stdout and its stderr to <log>.stderr; the parent
      // tails both, labels each line, and appends it to the job log. Something planted at one of these
      // paths that is not a plain single-link file (a symlink, a FIFO, a hard link) is removed first;
      // its target is never touched.
      const logFile = request.paths.logFile
      const stdoutFile = `${logFile}.stdout`
      const stderrFile = `${logFile}.stderr`
      const prepare = (file: string) =>
        Effect.try({ try: () => prepareOutputFile(file), catch: (e) => failed(`cannot prepare the job log ${file}: ${messageOf(e)}`, e) })
      yield* prepare(logFile)
      const stdoutOffset = yield* prepare(stdoutFile)
      const stderrOffset = yield* prepare(stderrFile)
      const sink = yield* Effect.acquireRelease(
        Effect.try({
          try: () => fs.openSync(logFile, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o644),
          catch: (e) => failed(`cannot open the job log ${logFile}: ${messageOf(e)}`, e)
        }),
        (fd) => Effect.sync(() => fs.closeSync(fd))
      )
      const name = jobName(request.instanceId, jobId)
      const argv = sbatchArgv({
        spec: checked.spec,
        site: { partition: resolved.partition, account: resolved.account, qos: resolved.qos, sbatchArgs: resolved.sbatchArgs },
        defaultMemoryBytes: resolved.defaultMemoryBytes,
        allocatedGpus: request.gpus.length,
        jobDir,
        stdoutFile,
        stderrFile,
        name,
        comment: jobComment({ ...request.labels, "flexec.instance": request.instanceId, "flexec.job": jobId }),
        wrapper,
        command: request.command
      })
      const env = jobEnvironment(request, cli.slurmConf)

      const submit = cli.run("sbatch", argv, { env }).pipe(
        Effect.flatMap((out) => {
          // --parsable: "<id>" or "<id>;<cluster>"
          const id = out.stdout.trim().split(";")[0] ?? ""
          return /^[0-9]+$/.test(id)
            ? Effect.succeed(id)
            : Effect.fail(failed(`sbatch printed no job id: ${JSON.stringify(out.stdout.slice(0, 200))}`))
        }),
        Effect.catchTag("SlurmCommandError", (e): Effect.Effect<never, LaunchFailed | BackendUnavailable> =>
          e.unavailable
            ? // it may have reached the controller all the same: nothing of it may stay queued
            Effect.zipRight(cancelByName(name), Effect.fail(unavailable(e)))
            : Effect.fail(failed(`sbatch refused the job: ${e.detail}`, e))
        )
      )

      const record = (slurmId: string): JobRecord => ({
        version: 1,
        slurmJobId: slurmId,
        jobId,
        instanceId: request.instanceId,
        name,
        channelToken: request.channel.token,
        channelDir: request.channel.dir,
        logFile,
        submittedAt: Date.now()
      })

      /** The cgroup-wide KILL of a running job, then a cancel (all a pending job gets). */
      const kill = (slurmId: string, state: string | undefined) =>
        (isSignallable(state) ? cli.run("scancel", ["--batch", "--signal=KILL", slurmId]).pipe(Effect.ignore) : Effect.void).pipe(
          Effect.zipRight(cli.run("scancel", [slurmId]).pipe(Effect.ignore))
        )

      // Submitted → ended and forgotten when the job's scope closes (after the outcome is read).
      const { slurmId, watch } = yield* Effect.acquireRelease(
        Effect.gen(function* () {
          const slurmId = yield* submit
          const file = yield* Effect.try({
            try: () => writeRecord(runtimeDir, record(slurmId)),
            catch: (e) => failed(`cannot write the job record under ${runtimeDir}: ${messageOf(e)}`, e)
          }).pipe(Effect.tapError(() => kill(slurmId, undefined)))
          const watch = yield* poller.watch(slurmId, name)
          watch.onExit.push(() => removeRecord(file))
          launched++
          return { slurmId, watch, file }
        }),
        ({ file, slurmId, watch }) =>
          Effect.gen(function* () {
            if (Option.isNone(watch.exit)) {
              yield* kill(slurmId, watch.state)
              yield* poller.wait(watch).pipe(Effect.retry({ times: 3 }), Effect.timeoutOption(releaseExitWait), Effect.ignore)
            }
            if (Option.isSome(watch.exit)) removeRecord(file)
            poller.unwatch(watch)
            launched--
          })
      )

      const logs = yield* tailLog({
        sources: [
          { file: stdoutFile, offset: stdoutOffset, stream: "stdout" },
          { file: stderrFile, offset: stderrOffset, stream: "stderr" }
        ],
        sink,
        ended: () => Option.isSome(watch.exit),
        // a queued job writes nothing: its file is not polled until the poller sees it leave the queue
        mayWrite: () => watch.state === undefined || !isPending(watch.state)
      })
      const scope = yield* Effect.scope
      return yield* makeHandle(cli, poller, {
        jobId,
        slurmId,
        watch,
        killTimeout: request.killTimeout,
        fork: (escalation) => Effect.forkIn(escalation, scope),
        logs,
        info: { slurmJobId: slurmId, slurmJobName: name, logFile }
      })
    })

  const recover = (instanceId: string): Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable> =>
    Effect.gen(function* () {
      yield* checkAvailable
      const runtimeDir = path.resolve(resolved.runtimeDir ?? defaultRuntimeDir("slurm", instanceId))
      // one call: every job of this user; ours are those whose comment names this instance
      const listed = yield* cli.run("squeue", ["-h", "--me", "-t", "all", "-O", "JobID:|,State:|,exit_code:|,Name:|,Comment:|"]).pipe(
        Effect.map((out) => out.stdout),
        Effect.mapError(unavailable)
      )
      interface Row { readonly slurmId: string; readonly state: string; readonly name: string; readonly labels: Readonly<Record<string, string>> }
      const rows: Array<Row> = []
      for (const line of listed.split("\n")) {
        const [id, state, raw, name, ...comment] = line.split("|")
        if (id === undefined || state === undefined || raw === undefined || name === undefined) continue
        const parsed = parseQueue(`${id}|${state}|${raw}|`)[0]
        if (parsed === undefined) continue
        const labels = parseComment(comment.join("|").replace(/\|$/, "").trim())
        if (labels["flexec.instance"] !== instanceId) continue
        rows.push({ slurmId: parsed.slurmId, state: parsed.state, name: name.trim(), labels })
      }
      const live = rows.filter((r) => !isTerminal(r.state))
      const records = new Map<string, { readonly file: string; readonly record: JobRecord }>()
      for (const entry of readRecords(runtimeDir)) {
        const r = entry.record
        const row = r._tag === "Right" ? live.find((l) => l.slurmId === r.right.slurmJobId) : undefined
        // a record whose job is over, is another's, or was reused by another job: gone
        if (r._tag === "Left" || row === undefined || r.right.instanceId !== instanceId || row.name !== r.right.name) {
          removeRecord(entry.file)
          continue
        }
        records.set(r.right.slurmJobId, { file: entry.file, record: r.right })
      }
      const found: Array<RecoveredJob> = []
      for (const row of live) {
        const jobId = yield* decodeJobId(row.labels["flexec.job"]).pipe(Effect.option)
        if (Option.isNone(jobId) || row.name !== jobName(instanceId, jobId.value)) continue
        const kept = records.get(row.slurmId)
        const watch = yield* poller.watch(row.slurmId, row.name)
        if (kept !== undefined) watch.onExit.push(() => removeRecord(kept.file))
        // no scope owns a recovered job: once its end is seen it is forgotten
        watch.onExit.push(() => poller.unwatch(watch))
        const handle = yield* makeHandle(cli, poller, {
          jobId: jobId.value,
          slurmId: row.slurmId,
          watch,
          killTimeout: resolved.killTimeout,
          fork: Effect.forkDaemon,
          info: { slurmJobId: row.slurmId, slurmJobName: row.name, ...(kept !== undefined ? { logFile: kept.record.logFile } : {}) }
        })
        found.push({
          jobId: jobId.value,
          instanceId,
          handle,
          // without its record (the parent died between sbatch and the write) it can only be reaped
          ...(kept !== undefined ? { channelToken: kept.record.channelToken, channelDir: kept.record.channelDir } : {})
        })
      }
      return found
    })

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

