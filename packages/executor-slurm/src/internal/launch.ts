/**
 * Launching a Slurm job: the checks, the job's log files, the sbatch argv and
 * the submission, the job record, and the scope that ends and forgets the job
 * when it closes.
 *
 * @internal
 */
import { Duration, Effect, Option } from "effect"
import type { Scope } from "effect"
import * as fs from "node:fs"
import type { SlurmCli } from "./cli.js"
import { unavailable } from "./cli.js"
import { LaunchFailed } from "./core.js"
import type { BackendUnavailable, JobHandle, LaunchRequest } from "./core.js"
import { jobEnvironment } from "./environment.js"
import { isPending, isSignallable, isTerminal, parseQueue } from "./exit.js"
import { makeHandle } from "./handle.js"
import { prepareOutputFile, tailLog } from "./logTail.js"
import type { Poller } from "./poller.js"
import { ensureWrapper, removeRecord, writeRecord } from "./record.js"
import type { JobRecord } from "./record.js"
import { checkSlurmSpec, jobComment, jobName, sbatchArgv } from "./spec.js"
import type { SbatchInput } from "./spec.js"

/** How long the scope's release waits for Slurm to confirm a killed job's end. */
const releaseExitWait = Duration.seconds(15)

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** What launches need of the launcher. */
export interface LaunchDeps {
  readonly cli: SlurmCli
  readonly poller: Poller
  /** The site's partition, account, QOS and extra sbatch flags. */
  readonly site: SbatchInput["site"]
  /** `--mem` of a job that names no memory. */
  readonly defaultMemoryBytes: number
  /** Told +1 when a job is submitted and -1 when its scope has ended and forgotten it. */
  readonly count: (delta: 1 | -1) => void
}

/** The launcher's `launch` (without the check that the cluster answered at start). */
export const makeLaunch = (
  deps: LaunchDeps
): ((request: LaunchRequest) => Effect.Effect<JobHandle, LaunchFailed | BackendUnavailable, Scope.Scope>) => {
  const { cli, poller } = deps

  /** Cancels whatever of ours is queued under `name` (an sbatch that timed out may still have submitted it). */
  const cancelByName = (name: string): Effect.Effect<void> =>
    cli.run("squeue", ["-h", "--me", "-t", "all", `--name=${name}`, "-O", "JobID:|,State:|,exit_code:|"]).pipe(
      Effect.flatMap((out) => {
        const ids = parseQueue(out.stdout).filter((r) => !isTerminal(r.state)).map((r) => r.slurmId)
        return ids.length === 0 ? Effect.void : Effect.asVoid(cli.run("scancel", ids))
      }),
      Effect.catchAll((e) => Effect.logWarning(`slurm: could not check for a job submitted as ${name}: ${e.message}`))
    )

  return (request: LaunchRequest): Effect.Effect<JobHandle, LaunchFailed | BackendUnavailable, Scope.Scope> =>
    Effect.gen(function* () {
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
        site: deps.site,
        defaultMemoryBytes: deps.defaultMemoryBytes,
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
          deps.count(1)
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
            deps.count(-1)
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
}
