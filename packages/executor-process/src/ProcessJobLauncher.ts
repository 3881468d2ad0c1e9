/**
 * The process backend: each job is a child process that leads its own process
 * group, started from an argv array without a shell.
 *
 * @since 0.1.0
 */
import { Context, Deferred, Duration, Effect, Exit, FiberId, Layer, Option, PubSub, Ref } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess, SpawnOptions } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { InvalidJobMeta, LaunchFailed, launcherSpecFor } from "./internal/core.js"
import type {
  BackendUnavailable,
  Capabilities,
  JobExit,
  JobHandle,
  JobLauncher,
  JobMeta,
  LaunchRequest,
  RecoveredJob
} from "./internal/core.js"
import { resolveExecutable } from "./internal/executable.js"
import { signalGroup } from "./internal/group.js"
import { makeSpawnTurns } from "./internal/spawnTurns.js"
import type { ProcessGroup } from "./internal/group.js"
import { killOnExit } from "./internal/exitKill.js"
import { logCapacity, logReplay, logStream, publishSync } from "./internal/logEvents.js"
import type { LogEvent } from "./internal/logEvents.js"
import { resolveOptions } from "./internal/options.js"
import type { ProcessLauncherOptions, ResolvedOptions } from "./internal/options.js"
import { recover } from "./internal/recover.js"
import { makeTerminate } from "./internal/terminate.js"
import { JobLog, LineSplitter } from "./internal/jobLog.js"
import { removePidFile, writePidFile } from "./internal/pidFile.js"
import type { PidFile } from "./internal/pidFile.js"
import { bootId, startTimeOf } from "./internal/procfs.js"

export type { ProcessLauncherOptions } from "./internal/options.js"


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

/** How long the scope's release waits for the exit after SIGKILL. */
const releaseExitWait = Duration.seconds(5)
/** How long the release waits for the output pipes to drain once the job is dead. */
const releaseDrainWait = Duration.seconds(1)

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
// make

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
