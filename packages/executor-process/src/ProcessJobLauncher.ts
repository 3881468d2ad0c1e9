/**
 * The process backend: each job is a child process that leads its own process
 * group, started from an argv array without a shell.
 *
 * @since 0.1.0
 */
import { Context, Deferred, Duration, Effect, Exit, FiberId, Layer, Option, PubSub, Ref, Schema, Stream } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess, SpawnOptions } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { defaultRuntimeDir, InvalidJobMeta, JobId, LaunchFailed, launcherSpecFor } from "./internal/core.js"
import type {
  BackendUnavailable,
  Capabilities,
  JobExit,
  JobHandle,
  JobLauncher,
  JobMeta,
  LaunchRequest,
  LogLine,
  RecoveredJob,
  TerminateOptions
} from "./internal/core.js"
import { resolveExecutable } from "./internal/executable.js"
import { signalGroup } from "./internal/group.js"
import { makeSpawnTurns } from "./internal/spawnTurns.js"
import type { ProcessGroup } from "./internal/group.js"
import { killOnExit } from "./internal/exitKill.js"
import { JobLog, LineSplitter } from "./internal/jobLog.js"
import { readPidFiles, removePidFile, writePidFile } from "./internal/pidFile.js"
import type { PidFile } from "./internal/pidFile.js"
import { bootId, environValue, isAlive, readStat, startTimeOf } from "./internal/procfs.js"

/** Options of the process backend. */
export interface ProcessLauncherOptions {
  /** Run jobs as this user id (the parent must be root). Give `gid` with it. */
  readonly uid?: number
  /** Run jobs with this group id (the parent must be root). Give `uid` with it. */
  readonly gid?: number
  /** Rotate `log.txt` when it would pass this size (default 10 MiB). */
  readonly logMaxBytes?: number
  /** Log files kept, `log.txt` included (default 3: `log.txt`, `log.txt.1`, `log.txt.2`). */
  readonly logFiles?: number
  /**
   * The instance's runtime directory, where `recover` looks for pid files
   * (launches use the request's `paths.runtimeDir`). Default
   * `<os tmpdir>/flexec-<uid>/process-<instanceId>`, the engine's default.
   */
  readonly runtimeDir?: string
  /** SIGTERM → SIGKILL for recovered jobs, which carry no request (default 5000 ms). */
  readonly killTimeoutMs?: number
  /**
   * What happens to running jobs when the parent process exits without
   * closing its executor. `"abort"` (default): on the process's `'exit'` the
   * launcher SIGKILLs each job's process group (an `'exit'` listener cannot
   * wait, so there is no SIGTERM first) and removes its pid file and channel
   * directory. `"leave"`: they keep running, for a later parent of the same
   * instance to adopt (`recover: "adopt"`) or reap. A parent killed by a signal
   * emits no `'exit'`: the Promise facade (`createProcessExecutor`) turns
   * SIGINT/SIGTERM/SIGHUP into an orderly close first.
   */
  readonly onParentExit?: "abort" | "leave"
}

/** The process backend's launcher: a `JobLauncher` plus the user jobs run as. */
export interface ProcessLauncher extends JobLauncher {
  readonly name: "process"
  /** Set when jobs run as another user: the engine gives this owner to what the job must reach (its socket dir). */
  readonly runAs?: { readonly uid: number; readonly gid: number }
  readonly validate: (meta: JobMeta, site: string) => Effect.Effect<void, InvalidJobMeta>
  readonly launch: (request: LaunchRequest) => Effect.Effect<JobHandle, LaunchFailed, Scope.Scope>
  readonly recover: (instanceId: string) => Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable>
  readonly workerRuntimeOnHost: true
}

/**
 * What the process backend can do, declared here and only here. No OOM
 * detection and no memory limit: a plain process has no cgroup of its own.
 */
export const processCapabilities: Capabilities = {
  signals: true,
  oomDetection: false,
  recover: true,
  adopt: true,
  logs: true,
  processes: true,
  gpus: true,
  memoryLimit: false
}

/** Keys a job may set in `launcher_spec.<site|default>.process`. */
export const allowedProcessSpecKeys: ReadonlyArray<string> = ["command"]

const defaultLogMaxBytes = 10 * 1024 * 1024
const defaultLogFiles = 3
const defaultKillTimeoutMs = 5000
/** How long the scope's release waits for the exit after SIGKILL. */
const releaseExitWait = Duration.seconds(5)
/** How long the release waits for the output pipes to drain once the job is dead. */
const releaseDrainWait = Duration.seconds(1)
/** Liveness polling of recovered jobs (not our children: no exit event). */
const recoveredPollInterval = Duration.millis(200)
/** Lines kept for subscribers that come late (bounded). */
const logReplay = 256
/** Lines buffered per subscriber; a slow subscriber loses the oldest ones. */
const logCapacity = 1024

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/**
 * The job's environment: exactly `request.env`, plus `CUDA_VISIBLE_DEVICES`
 * from the allocation (empty when it has no GPU) and `NODE_PATH` led by the
 * worker runtime's directory.
 */
export const jobEnvironment = (request: LaunchRequest): Record<string, string> => {
  const env: Record<string, string> = { ...request.env }
  env.CUDA_VISIBLE_DEVICES = request.gpus.join(",")
  const nodePath = [request.workerRuntime.nodePath, request.env.NODE_PATH]
    .filter((p): p is string => p !== undefined && p.length > 0)
    .join(path.delimiter)
  env.NODE_PATH = nodePath
  return env
}

// ---------------------------------------------------------------------------
// validate

const validate = (meta: JobMeta, site: string): Effect.Effect<void, InvalidJobMeta> =>
  Effect.suspend(() => {
    const spec = launcherSpecFor(meta, site, "process")
    if (spec === undefined) return Effect.void
    const own = meta.launcher_spec?.[site]?.process
    const keyPath = (key: string): string =>
      own !== undefined && Object.hasOwn(own, key)
        ? `launcher_spec.${site}.process.${key}`
        : `launcher_spec.default.process.${key}`
    const invalid = (issues: string) => Effect.fail(new InvalidJobMeta({ jobId: meta.job_id ?? "", issues }))
    const unknown = Object.keys(spec).filter((key) => !allowedProcessSpecKeys.includes(key))
    if (unknown.length > 0) {
      return invalid(
        `${unknown.map(keyPath).join(", ")}: not allowed; the keys allowed in launcher_spec.<site|default>.process are: ${allowedProcessSpecKeys.join(", ")}`
      )
    }
    if (Object.hasOwn(spec, "command")) {
      if (meta.byoc !== true) {
        return invalid(
          `${keyPath("command")}: a job may set its own command only with byoc (byoc: true in the deployed meta, at a site that allows BYOC)`
        )
      }
      const command = spec.command
      if (!Array.isArray(command) || command.length === 0 || !command.every((arg) => typeof arg === "string")) {
        return invalid(`${keyPath("command")}: must be a non-empty array of strings`)
      }
    }
    return Effect.void
  })

// ---------------------------------------------------------------------------
// launch

interface Running {
  readonly child: ChildProcess
  readonly pid: number
  readonly group: ProcessGroup
  readonly flushOutput: () => void
}

type LogEvent = Option.Option<LogLine>

/**
 * Publishes from a Node callback, without a fiber while there is room. When a
 * subscriber lags a whole buffer behind, `unsafeOffer` refuses the event (it does
 * not apply the sliding strategy): the event then goes through `PubSub.publish`,
 * which drops the oldest one instead. Losing the newest would lose the end of the
 * output, and a lagging subscriber's stream would never end.
 */
const publishSync = (pubsub: PubSub.PubSub<LogEvent>, event: LogEvent): void => {
  if (pubsub.unsafeOffer(event)) return
  // a sliding PubSub's publish never suspends; a shut-down one refuses (an interruption, ignored)
  Effect.runSyncExit(PubSub.publish(pubsub, event))
}

/** The lines of the job as a Stream that ends when the job's output ends. */
const logStream = (pubsub: PubSub.PubSub<LogEvent>): Stream.Stream<LogLine> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      if (yield* PubSub.isShutdown(pubsub)) return Stream.empty
      const queue = yield* PubSub.subscribe(pubsub)
      return Stream.fromQueue(queue).pipe(Stream.takeWhile(Option.isSome), Stream.map((line) => line.value))
    })
  )

const makeTerminate = (
  group: ProcessGroup,
  defaultKillAfter: Duration.DurationInput,
  terminating: Ref.Ref<boolean>,
  fork: (escalation: Effect.Effect<void>) => Effect.Effect<unknown>
) =>
(options?: TerminateOptions): Effect.Effect<void> =>
  Effect.flatMap(Ref.getAndSet(terminating, true), (already) => {
    if (already) return Effect.void
    const killAfter = Duration.decode(options?.killAfter ?? defaultKillAfter)
    return Effect.sync(() => signalGroup(group, "SIGTERM")).pipe(
      Effect.zipRight(
        fork(Effect.sleep(killAfter).pipe(Effect.zipRight(Effect.sync(() => signalGroup(group, "SIGKILL")))))
      ),
      Effect.asVoid
    )
  })

const launch = (options: ResolvedOptions, spawnTurn: Effect.Effect<void>) => (request: LaunchRequest): Effect.Effect<JobHandle, LaunchFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const jobId = request.jobId
    const failed = (reason: string, cause?: unknown): LaunchFailed =>
      new LaunchFailed(cause === undefined ? { jobId, reason } : { jobId, reason, cause })

    const [program, ...args] = request.command
    if (program === undefined) return yield* failed("the command is empty")
    const jobDir = request.paths.jobDir
    const dirStat = fs.statSync(jobDir, { throwIfNoEntry: false })
    if (dirStat === undefined || !dirStat.isDirectory()) {
      return yield* failed(`the job directory ${jobDir} does not exist or is not a directory`)
    }
    const resolved = resolveExecutable(program, jobDir, request.env.PATH)
    if (resolved._tag === "Missing") return yield* failed(resolved.reason)
    const executable = resolved.path
    const env = jobEnvironment(request)
    const scope = yield* Effect.scope

    const logExisted = fs.lstatSync(request.paths.logFile, { throwIfNoEntry: false }) !== undefined
    // the log and its subscribers' PubSub in one step (released in reverse: the PubSub first)
    const [log, lines] = yield* Effect.acquireRelease(
      Effect.zip(
        Effect.try({
          try: () =>
            new JobLog(request.paths.logFile, { maxBytes: options.logMaxBytes, files: options.logFiles, owner: options.runAs }),
          catch: (e) => failed(`cannot open the job log ${request.paths.logFile}: ${messageOf(e)}`, e)
        }),
        PubSub.sliding<LogEvent>({ capacity: logCapacity, replay: logReplay })
      ),
      ([log, lines]) => Effect.zipRight(PubSub.shutdown(lines), Effect.sync(() => log.close()))
    )
    // completed from Node callbacks
    const exited = Deferred.unsafeMake<JobExit>(FiberId.none)
    const closed = Deferred.unsafeMake<void>(FiberId.none)

    const spawnOptions: SpawnOptions = {
      argv0: program,
      cwd: jobDir,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      windowsHide: true,
      ...(options.runAs !== undefined ? { uid: options.runAs.uid, gid: options.runAs.gid } : {})
    }

    const start = Effect.async<Running, LaunchFailed>((resume) => {
      let child: ChildProcess
      try {
        child = spawn(executable, args, spawnOptions)
      } catch (e) {
        resume(Effect.fail(failed(`cannot spawn ${executable}: ${messageOf(e)}`, e)))
        return
      }
      // read now: a child is reaped on a later turn of the event loop, so /proc still has it
      const pid = child.pid
      const leaderStartTime = pid !== undefined ? startTimeOf(pid) : undefined

      const splitter = (stream: "stdout" | "stderr") =>
        new LineSplitter((line) => {
          log.write(line)
          publishSync(lines, Option.some({ stream, line, time: Date.now() }))
        })
      const out = splitter("stdout")
      const err = splitter("stderr")
      let outputDone = false
      const flushOutput = (): void => {
        if (outputDone) return
        outputDone = true
        out.end()
        err.end()
        publishSync(lines, Option.none())
        Deferred.unsafeDone(closed, Exit.void)
      }
      child.stdout?.on("data", (chunk: Buffer) => out.push(chunk))
      child.stderr?.on("data", (chunk: Buffer) => err.push(chunk))
      child.on("exit", (code, signal) => {
        Deferred.unsafeDone(exited, Exit.succeed({ code, signal, oomKilled: false, lost: false }))
      })
      child.on("close", flushOutput)

      const onError = (e: Error): void => {
        child.removeListener("spawn", onSpawn)
        resume(Effect.fail(failed(`cannot spawn ${executable}: ${e.message}`, e)))
      }
      const onSpawn = (): void => {
        child.removeListener("error", onError)
        // later 'error' events (a failed kill) must not crash the parent; we signal with process.kill
        child.on("error", () => {})
        resume(Effect.succeed({ child, pid: pid!, group: { pgid: pid!, leaderStartTime }, flushOutput }))
      }
      child.once("error", onError)
      child.once("spawn", onSpawn)
    })

    const stop = (running: Running): Effect.Effect<void> =>
      Effect.gen(function* () {
        // the whole group, also when the leader has already exited (a child of it may linger)
        signalGroup(running.group, "SIGKILL")
        yield* Deferred.await(exited).pipe(Effect.timeoutOption(releaseExitWait))
        const drained = yield* Deferred.await(closed).pipe(Effect.timeoutOption(releaseDrainWait))
        if (Option.isNone(drained)) {
          // something outside the group (setsid) still holds the pipes: stop reading them
          running.child.stdout?.destroy()
          running.child.stderr?.destroy()
          running.flushOutput()
        }
      })

    const pidFileContent = (running: Running): PidFile => ({
      version: 1,
      pid: running.pid,
      pgid: running.group.pgid,
      startTime: running.group.leaderStartTime ?? "0",
      bootId: bootId(),
      jobId,
      instanceId: request.instanceId,
      channelToken: request.channel.token,
      channelDir: request.channel.dir,
      startedAt: Date.now(),
      ...(Object.keys(request.labels).length > 0 ? { labels: { ...request.labels } } : {})
    })

    // a launch that fails to spawn leaves no log file it created behind
    const forgetLog = Effect.sync(() => {
      log.close()
      if (!logExisted) fs.rmSync(request.paths.logFile, { force: true })
    })

    // the spawn turn is waited for here, interruptibly, not in the (uninterruptible) acquire:
    // a launch interrupted while it waits takes no turn, spawns nothing and leaves no log file
    yield* Effect.onInterrupt(spawnTurn, () => forgetLog)

    const acquire = Effect.gen(function* () {
      const running = yield* Effect.tapError(start, () => forgetLog)
      const pidFile = yield* Effect.try({
        try: () => writePidFile(request.paths.runtimeDir, pidFileContent(running)),
        catch: (e) => failed(`cannot write the pid file under ${request.paths.runtimeDir}: ${messageOf(e)}`, e)
      }).pipe(Effect.tapError(() => stop(running)))
      return { running, pidFile }
    })

    const { running } = yield* Effect.acquireRelease(
      Effect.map(acquire, (acquired) => ({
        ...acquired,
        unguard: options.onParentExit === "abort"
          ? killOnExit({ group: acquired.running.group, pidFile: acquired.pidFile, channelDir: request.channel.dir })
          : undefined
      })),
      ({ pidFile, running, unguard }) =>
        stop(running).pipe(Effect.ensuring(Effect.sync(() => {
          unguard?.()
          removePidFile(pidFile)
        })))
    )

    const terminating = yield* Ref.make(false)
    const handle: JobHandle = {
      jobId,
      poll: Effect.flatMap(Deferred.poll(exited), (done) =>
        Option.isSome(done) ? Effect.asSome(done.value) : Effect.succeedNone
      ),
      wait: Deferred.await(exited),
      terminate: makeTerminate(running.group, request.killTimeout, terminating, (escalation) =>
        Effect.forkIn(escalation, scope)
      ),
      logs: logStream(lines),
      info: { pid: running.pid, pgid: running.group.pgid, logFile: request.paths.logFile }
    }
    return handle
  })

// ---------------------------------------------------------------------------
// recover

const lostExit: JobExit = { code: null, signal: null, oomKilled: false, lost: true }

/** Why a pid file does not describe a live job of `instanceId`, or `undefined` when it does. */
const pidFileProblem = (file: string, content: PidFile, instanceId: string): string | undefined => {
  if (content.instanceId !== instanceId) return "another instance"
  if (path.basename(file) !== `${content.jobId}.json` || !Schema.is(JobId)(content.jobId)) return "job id mismatch"
  if (content.pgid !== content.pid) return "the job does not lead its group"
  if (content.bootId !== bootId()) return "another boot"
  const stat = readStat(content.pid)
  if (stat === undefined || stat.state === "Z" || stat.state === "X") return "not running"
  if (stat.startTime !== content.startTime) return "pid reused"
  if (stat.pgrp !== content.pgid) return "left its group"
  if (environValue(content.pid, "FLEXEC_JOB_ID") !== content.jobId) return "not this job's process"
  const instance = environValue(content.pid, "FLEXEC_INSTANCE_ID")
  if (instance !== undefined && instance !== instanceId) return "another instance's process"
  return undefined
}

const recoveredHandle = (content: PidFile, file: string, killTimeout: Duration.Duration, terminating: Ref.Ref<boolean>): JobHandle => {
  const group: ProcessGroup = { pgid: content.pgid, leaderStartTime: content.startTime }
  const poll: Effect.Effect<Option.Option<JobExit>> = Effect.sync(() => {
    if (isAlive(content.pid, content.startTime)) return Option.none()
    // as a launched job's release does: what the job left in its group goes with it
    // (signalGroup refuses if the leader's pid was taken by another process)
    signalGroup(group, "SIGKILL")
    removePidFile(file)
    return Option.some(lostExit)
  })
  const wait: Effect.Effect<JobExit> = Effect.flatMap(poll, (exit) =>
    Option.isSome(exit) ? Effect.succeed(exit.value) : Effect.zipRight(Effect.sleep(recoveredPollInterval), wait)
  )
  return {
    jobId: content.jobId as JobId,
    poll,
    wait: Effect.suspend(() => wait),
    terminate: makeTerminate(group, killTimeout, terminating, Effect.forkDaemon),
    info: { pid: content.pid, pgid: content.pgid }
  }
}

const recover = (options: ResolvedOptions) => (instanceId: string): Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable> =>
  Effect.gen(function* () {
    const runtimeDir = path.resolve(options.runtimeDir ?? defaultRuntimeDir("process", instanceId))
    const found: Array<RecoveredJob> = []
    for (const entry of readPidFiles(runtimeDir)) {
      const content = entry.content
      if (content._tag === "Left" || pidFileProblem(entry.file, content.right, instanceId) !== undefined) {
        removePidFile(entry.file)
        continue
      }
      const job = content.right
      const terminating = yield* Ref.make(false)
      found.push({
        jobId: job.jobId as JobId,
        instanceId: job.instanceId,
        handle: recoveredHandle(job, entry.file, options.killTimeout, terminating),
        channelToken: job.channelToken,
        channelDir: job.channelDir
      })
    }
    return found
  })

// ---------------------------------------------------------------------------
// make

interface ResolvedOptions {
  readonly runAs: { readonly uid: number; readonly gid: number } | undefined
  readonly logMaxBytes: number
  readonly logFiles: number
  readonly runtimeDir: string | undefined
  readonly killTimeout: Duration.Duration
  readonly onParentExit: "abort" | "leave"
}

const resolveOptions = (options: ProcessLauncherOptions): ResolvedOptions => {
  if ((options.uid === undefined) !== (options.gid === undefined)) {
    throw new TypeError("ProcessJobLauncher: give uid and gid together")
  }
  if (options.onParentExit !== undefined && options.onParentExit !== "abort" && options.onParentExit !== "leave") {
    throw new TypeError(`ProcessJobLauncher: onParentExit must be "abort" or "leave", not ${JSON.stringify(options.onParentExit)}`)
  }
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    if (value === undefined) return fallback
    if (!Number.isInteger(value) || value < 1) throw new TypeError(`ProcessJobLauncher: ${name} must be a positive integer`)
    return value
  }
  return {
    runAs: options.uid !== undefined && options.gid !== undefined ? { uid: options.uid, gid: options.gid } : undefined,
    logMaxBytes: positive("logMaxBytes", options.logMaxBytes, defaultLogMaxBytes),
    logFiles: positive("logFiles", options.logFiles, defaultLogFiles),
    runtimeDir: options.runtimeDir,
    killTimeout: Duration.millis(positive("killTimeoutMs", options.killTimeoutMs, defaultKillTimeoutMs)),
    onParentExit: options.onParentExit ?? "abort"
  }
}

/**
 * Makes the process backend's launcher. Throws a `TypeError` for invalid
 * options (`uid` without `gid`, a non-positive size).
 */
export const make = (options: ProcessLauncherOptions = {}): ProcessLauncher => {
  const resolved = resolveOptions(options)
  return {
    name: "process",
    capabilities: processCapabilities,
    ...(resolved.runAs !== undefined ? { runAs: resolved.runAs } : {}),
    validate,
    launch: launch(resolved, makeSpawnTurns()),
    recover: recover(resolved),
    workerRuntimeOnHost: true
  }
}

/**
 * The process backend as a service. `ProcessJobLauncher.make(options)` builds
 * the launcher; `ProcessJobLauncher.layer(options)` provides it.
 */
export class ProcessJobLauncher extends Context.Tag("@flexec/executor-process/ProcessJobLauncher")<
  ProcessJobLauncher,
  ProcessLauncher
>() {
  /** Makes the launcher (see `make`). */
  static readonly make = make
  /** A layer providing the launcher. */
  static readonly layer = (options?: ProcessLauncherOptions): Layer.Layer<ProcessJobLauncher> =>
    Layer.sync(ProcessJobLauncher, () => make(options))
  /** The capabilities every process launcher declares. */
  static readonly capabilities = processCapabilities
}
