/**
 * `flexec run <job-dir>`: deploys a job folder into a workspace, runs it
 * through a backend, shows its status and log, and exits with its return code.
 *
 * @since 0.1.0
 */
import { Args, Command, Options } from "@effect/cli"
import type { ExecutorEvent, JobHandle, JobLauncher, JobOutcome } from "@flexec/core"
import { decodeClientName, defaultRuntimeDir, JobReturnCode, makeJobExecutor } from "@flexec/core"
import { makeDockerLauncher } from "@flexec/executor-docker"
import { ProcessJobLauncher } from "@flexec/executor-process"
import { Duration, Effect, Option, Queue, Ref, Schedule } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { acquireRunLock, acquireWorkspace, commandFor, deploy, entries, readJobFolder, splitCommand } from "./internal/deploy.js"
import type { JobFolder } from "./internal/deploy.js"
import { CliError, ExitCode } from "./internal/errors.js"
import { ExitStatus } from "./internal/exitStatus.js"
import { onOutputGone, outputGone, writeOut } from "./internal/output.js"
import { slurmLauncher } from "./internal/slurm.js"
import { followFile } from "./internal/tail.js"
import { makeView } from "./internal/view.js"
import type { ViewMode } from "./internal/view.js"

/** The parsed arguments of `flexec run`. */
export interface RunArgs {
  readonly jobDir: string
  readonly backend: "process" | "docker" | "slurm"
  readonly workspace: Option.Option<string>
  readonly site: string
  readonly image: Option.Option<string>
  readonly command?: Option.Option<string>
  readonly grace: number
  readonly startTimeout?: number
  readonly json: boolean
  readonly verbose: boolean
}

/** `--verbose`: stack traces and causes on errors. */
export const verboseOption = Options.boolean("verbose").pipe(
  Options.withDescription("On an error, print its full cause (stack traces included).")
)

/** Why a run is told to stop before its job ends: a signal, or its output is gone. */
type StopReason = NodeJS.Signals | "output gone"

/** The signals that stop a run: Ctrl-C, `kill`, a closed terminal. */
const stopSignals = ["SIGINT", "SIGTERM", "SIGHUP"] as const

/**
 * Listens, while the scope is open, for what must stop the run: SIGINT,
 * SIGTERM, SIGHUP, and stdout/stderr gone (EPIPE, EIO).
 */
const stopQueue = Effect.gen(function* () {
  const queue = yield* Queue.unbounded<StopReason>()
  const onSignal = (signal: NodeJS.Signals) => void Queue.unsafeOffer(queue, signal)
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      for (const s of stopSignals) process.on(s, onSignal)
      return onOutputGone(() => void Queue.unsafeOffer(queue, "output gone"))
    }),
    (stopListening) =>
      Effect.sync(() => {
        for (const s of stopSignals) process.off(s, onSignal)
        stopListening()
      })
  )
  return queue
})

const describeStop = (reason: StopReason): string =>
  reason === "output gone" ? `the output is gone (${outputGone() ?? "EPIPE"})` : reason

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(3))}s`

/** A test hook: `FLEXEC_CLI_FAULT=defect|uncaught` makes the run fail inside once its job has started. */
const injectedFault = process.env.FLEXEC_CLI_FAULT

/** The command the job runs: `--command`, else the one for the entry point found, else the executor's default. */
const jobCommand = (args: RunArgs, job: JobFolder): Effect.Effect<ReadonlyArray<string> | undefined, CliError> =>
  Effect.gen(function* () {
    const given = args.command === undefined ? undefined : Option.getOrUndefined(args.command)
    if (given !== undefined) {
      const argv = splitCommand(given)
      if (argv.length === 0) return yield* new CliError({ message: "--command is empty: give the program and its arguments, e.g. --command \"python3 {appDir}/train.py\"", exitCode: ExitCode.Usage })
      return argv
    }
    if (job.entry === undefined) {
      return yield* new CliError({
        message: `no ${entries.map((e) => `app/${e}`).join(", ")} in ${job.dir}: put the job's entry point there, or give --command (e.g. --command "python3 {appDir}/train.py")`,
        exitCode: ExitCode.ConfigError
      })
    }
    return job.entry === "main.js" ? undefined : commandFor(job.entry, args.backend)
  })

/**
 * Runs a job folder to its end; succeeds with the job's outcome. Ctrl-C,
 * SIGTERM, SIGHUP (the terminal closed) or a closed output (EPIPE) ask the job
 * to abort and wait for its end; a second signal kills it at once. Whatever
 * ends the run, the job is stopped and what the run created is removed.
 */
export const runJobFolder = (args: RunArgs) =>
  Effect.scoped(
    Effect.gen(function* () {
      const t0 = Date.now()
      const site = yield* decodeClientName(args.site)
      const usage = (message: string) => new CliError({ message, exitCode: ExitCode.Usage })
      if (!Number.isFinite(args.grace) || args.grace < 0) return yield* usage(`--grace must be a number of seconds ≥ 0, not ${args.grace}`)
      const startTimeout = args.startTimeout ?? 60
      if (!Number.isFinite(startTimeout) || startTimeout <= 0) return yield* usage(`--start-timeout must be a number of seconds > 0, not ${startTimeout}`)
      if (Option.isSome(args.image) && args.backend !== "docker") {
        return yield* usage("--image is for containers: add --backend docker (the process backend runs the job on this host)")
      }
      const job = yield* readJobFolder(args.jobDir)
      const command = yield* jobCommand(args, job)
      // listening from here on: a signal during the deployment still cleans up what was created
      const stops = yield* stopQueue
      const workspace = yield* acquireWorkspace(Option.getOrUndefined(args.workspace))
      yield* acquireRunLock(workspace, job.jobId)
      const jobDir = yield* deploy(job, workspace, site)
      const mode: ViewMode = args.json ? "json" : process.stdout.isTTY ? "tty" : "plain"
      const view = yield* makeView(mode, job.jobId, t0, writeOut)
      let finished = false

      // The backend, wrapped to keep the job's handle (a second Ctrl-C terminates it at once) and
      // to say when SIGTERM and SIGKILL are sent.
      const handle = yield* Ref.make(Option.none<JobHandle>())
      const backend: JobLauncher = args.backend === "docker"
        ? makeDockerLauncher(Option.match(args.image, { onNone: () => ({}), onSome: (image) => ({ image }) }))
        : args.backend === "slurm"
        ? yield* slurmLauncher()
        : ProcessJobLauncher.make({})
      const announce = (h: JobHandle, defaultKillAfter: Duration.DurationInput): JobHandle => {
        let terminated = false
        return {
          ...h,
          terminate: (options) =>
            Effect.suspend(() => {
              if (terminated) return h.terminate(options)
              terminated = true
              const killAfter = Duration.decode(options?.killAfter ?? defaultKillAfter)
              const killMs = Duration.toMillis(killAfter)
              const saySigkill = Effect.sleep(killAfter).pipe(
                Effect.zipRight(h.poll),
                Effect.flatMap((exit) => (Option.isNone(exit) && !finished ? view.phase("SIGKILL", "sent to the job (it did not exit after SIGTERM)") : Effect.void)),
                Effect.catchAll(() => Effect.void)
              )
              return view.phase("SIGTERM", killMs > 0 ? `sent to the job; SIGKILL in ${seconds(killMs)} if it does not exit` : "and SIGKILL sent to the job").pipe(
                Effect.zipRight(h.terminate(options)),
                Effect.zipRight(killMs > 0 ? Effect.forkDaemon(saySigkill) : Effect.void),
                Effect.asVoid
              )
            })
        }
      }
      const launcher: JobLauncher = {
        ...backend,
        launch: (request) =>
          backend.launch(request).pipe(
            Effect.map((h) => announce(h, request.killTimeout)),
            Effect.tap((h) => Ref.set(handle, Option.some(h)))
          )
      }
      // One executor instance per command, so that runs side by side do not collide; its runtime
      // directory is removed once the executor has closed (finalizers run in reverse order).
      const instanceId = `cli-${process.pid}`
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => fs.rmSync(defaultRuntimeDir(launcher.name, instanceId), { recursive: true, force: true }))
      )
      const executor = yield* makeJobExecutor({
        client: { clientName: site },
        instanceId,
        recover: "off",
        graceMs: Math.round(args.grace * 1000),
        startTimeoutMs: Math.round(startTimeout * 1000),
        ...(command !== undefined ? { command } : {}),
        launcher
      })
      const events = yield* executor.subscribe

      const early = yield* Queue.poll(stops)
      if (Option.isSome(early)) {
        return yield* new CliError({ message: `stopped (${describeStop(early.value)}) before the job was launched; nothing was left running`, exitCode: ExitCode.Aborted })
      }
      yield* Effect.gen(function* () {
        const first = yield* Queue.take(stops)
        yield* view.phase("aborting", `(${describeStop(first)}) the job has ${args.grace}s to stop; press Ctrl-C again to kill it now`)
        yield* Effect.forkDaemon(executor.abortApp(job.jobId))
        // the output going (a closed terminal after its SIGHUP) is no reason to kill: only a second signal is
        let second = yield* Queue.take(stops)
        while (second === "output gone") second = yield* Queue.take(stops)
        yield* view.phase("killing", `(${describeStop(second)})`)
        const h = yield* Ref.get(handle)
        if (Option.isSome(h)) yield* h.value.terminate({ killAfter: 0 })
      }).pipe(Effect.forkScoped)

      const entry = command === undefined ? "app/main.js" : command.join(" ")
      yield* view.phase("starting", `${job.jobId} on ${site} (${launcher.name} backend, workspace ${workspace}, command ${entry})`)
      yield* executor.startApp({ jobId: job.jobId, args: { workspace } })
      const launchedAt = Date.now()
      yield* view.phase("launched", `waiting for the job to connect and report Started (up to ${seconds(startTimeout * 1000)}, --start-timeout)`)

      // The job's stats (ctx.setStats), shown when they change.
      let started = false
      let lastStats = ""
      const pollStats = executor.getRunInfo(job.jobId).pipe(
        Effect.timeout("2 seconds"),
        Effect.flatMap((stats) => {
          const text = JSON.stringify(stats)
          if (text === lastStats || Object.keys(stats).length === 0 || finished) return Effect.void
          lastStats = text
          return view.stats(stats)
        }),
        Effect.catchAll(() => Effect.void)
      )
      yield* Effect.suspend(() => (started && !finished ? pollStats : Effect.void)).pipe(
        Effect.repeat(Schedule.spaced("1 second")),
        Effect.forkScoped
      )

      const log = followFile(path.join(jobDir, "log.txt"))
      let faulted = false
      const fault = Effect.suspend(() => {
        if (faulted || injectedFault === undefined) return Effect.void
        faulted = true
        if (injectedFault === "uncaught") {
          setTimeout(() => {
            throw new Error("FLEXEC_CLI_FAULT=uncaught: an injected uncaught exception")
          }, 10)
          return Effect.void
        }
        return Effect.dieMessage("FLEXEC_CLI_FAULT=defect: an injected internal error")
      })
      const show = (lines: ReadonlyArray<string>) =>
        Effect.forEach(lines, view.log, { discard: true }).pipe(
          // the test hook fires once the job has started and its first line was shown
          Effect.zipRight(started && lines.length > 0 ? fault : Effect.void)
        )
      // The job's last lines may reach log.txt after its Stopped: `stopped` is shown once the job
      // has exited (its output is then complete), or a second after Stopped.
      let stoppedAt: number | undefined
      const showStopped = Effect.suspend(() => {
        if (stoppedAt === undefined) return Effect.void
        stoppedAt = undefined
        return view.phase("stopped")
      })
      const handleEvent = (event: ExecutorEvent): Effect.Effect<Option.Option<JobOutcome>> =>
        Effect.gen(function* () {
          if (event.jobId !== job.jobId) {
            yield* view.event(event)
            return Option.none()
          }
          if (event._tag === "Completed") {
            yield* log.flush.pipe(Effect.flatMap(show))
            yield* showStopped
            yield* view.event(event)
            return Option.some(event.outcome)
          }
          yield* log.read.pipe(Effect.flatMap(show))
          yield* view.event(event)
          if (event._tag === "Started") {
            started = true
            yield* view.phase("started")
          } else if (event._tag === "Stopped") stoppedAt = Date.now()
          return Option.none()
        })
      let outcome: Option.Option<JobOutcome> = Option.none()
      while (Option.isNone(outcome)) {
        const next = yield* Queue.take(events).pipe(Effect.timeout("100 millis"), Effect.option)
        if (Option.isSome(next)) outcome = yield* handleEvent(next.value)
        else {
          yield* log.read.pipe(Effect.flatMap(show))
          if (stoppedAt !== undefined && Date.now() - stoppedAt >= 1000) yield* showStopped
        }
      }
      finished = true
      const o = outcome.value
      if (!started && o.returnCode === JobReturnCode.InfrastructureError && !o.exit.lost) {
        const timedOut = Date.now() - launchedAt >= startTimeout * 1000 && o.exit.signal !== null
        yield* view.note(
          timedOut
            ? `the job did not report Started within ${seconds(startTimeout * 1000)} and was stopped: it never connected to the parent. Does its entry point call runJob (of @flexec/core/worker)? --start-timeout <s> waits longer.`
            : `the job exited before it reported Started: did it call runJob (of @flexec/core/worker)? Its log is above.`
        )
      }
      yield* view.outcome(o)
      return o
    })
  )

/** The `run` subcommand. */
export const runCommand = Command.make(
  "run",
  {
    jobDir: Args.text({ name: "job-dir" }).pipe(
      Args.withDescription("The job folder: meta.json (the job's metadata) and app/ (its code: main.js, main.mjs or main.py).")
    ),
    backend: Options.choice("backend", ["process", "docker", "slurm"]).pipe(
      Options.withDefault("process" as const),
      Options.withDescription("Where the job runs: a child process, a Docker container, or a Slurm batch job (SLURM_CONF from the environment; the job runs on this host).")
    ),
    workspace: Options.text("workspace").pipe(
      Options.optional,
      Options.withDescription("Deploy into this workspace and keep it afterwards (default: a temporary one, removed at the end).")
    ),
    site: Options.text("site").pipe(
      Options.withDefault("site-1"),
      Options.withDescription("The client (site) name the job runs as; its app is deployed as app_<site>.")
    ),
    image: Options.text("image").pipe(
      Options.optional,
      Options.withDescription("--backend docker: the image, when the job's launcher_spec names none.")
    ),
    command: Options.text("command").pipe(
      Options.optional,
      Options.withDescription("The job's command line, placeholders {appDir} {jobDir} {workspace} {jobId} allowed (default: node for app/main.js or app/main.mjs, python3 for app/main.py).")
    ),
    startTimeout: Options.float("start-timeout").pipe(
      Options.withDefault(60),
      Options.withDescription("Seconds the job has to connect and report Started (call runJob) before it is stopped.")
    ),
    grace: Options.float("grace").pipe(
      Options.withDefault(10),
      Options.withDescription("Seconds an aborted job (Ctrl-C) may take to stop before it is terminated.")
    ),
    json: Options.boolean("json").pipe(
      Options.withDescription("Print one JSON object per line: the executor's events, {type:\"log\"} lines, the outcome last.")
    ),
    verbose: verboseOption
  },
  (args) =>
    Effect.gen(function* () {
      const outcome = yield* runJobFolder(args)
      const status = yield* ExitStatus
      yield* Ref.set(status, outcome.returnCode)
    })
).pipe(Command.withDescription("Deploy a job folder into a workspace and run it; exit status = the job's return code."))
