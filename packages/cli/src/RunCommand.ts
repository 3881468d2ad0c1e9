/**
 * `flexec run <job-dir>`: deploys a job folder into a workspace, runs it
 * through a backend, shows its status and log, and exits with its return code.
 *
 * @since 0.1.0
 */
import { Args, Command, Options } from "@effect/cli"
import type { ExecutorEvent, JobHandle, JobLauncher, JobOutcome } from "@flexec/core"
import { decodeClientName, defaultRuntimeDir, makeJobExecutor } from "@flexec/core"
import { makeDockerLauncher } from "@flexec/executor-docker"
import { ProcessJobLauncher } from "@flexec/executor-process"
import { Effect, Option, Queue, Ref } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { acquireWorkspace, deploy, readJobFolder } from "./internal/deploy.js"
import { CliError, ExitCode } from "./internal/errors.js"
import { ExitStatus } from "./internal/exitStatus.js"
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
  readonly grace: number
  readonly json: boolean
  readonly verbose: boolean
}

/** `--verbose`: stack traces and causes on errors. */
export const verboseOption = Options.boolean("verbose").pipe(
  Options.withDescription("On an error, print its full cause (stack traces included).")
)

/** Listens for SIGINT and SIGTERM while the scope is open. */
const signalQueue = Effect.gen(function* () {
  const queue = yield* Queue.unbounded<NodeJS.Signals>()
  const onSignal = (signal: NodeJS.Signals) => void Queue.unsafeOffer(queue, signal)
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)
    }),
    () =>
      Effect.sync(() => {
        process.off("SIGINT", onSignal)
        process.off("SIGTERM", onSignal)
      })
  )
  return queue
})

/**
 * Runs a job folder to its end; succeeds with the job's outcome. Ctrl-C (or
 * SIGTERM) asks the job to abort; a second one kills it at once.
 */
export const runJobFolder = (args: RunArgs) =>
  Effect.scoped(
    Effect.gen(function* () {
      const t0 = Date.now()
      const site = yield* decodeClientName(args.site)
      if (!Number.isFinite(args.grace) || args.grace < 0) {
        return yield* new CliError({ message: `--grace must be a number of seconds ≥ 0, not ${args.grace}`, exitCode: ExitCode.Usage })
      }
      const job = yield* readJobFolder(args.jobDir)
      const workspace = yield* acquireWorkspace(Option.getOrUndefined(args.workspace))
      const jobDir = yield* deploy(job, workspace, site)
      const mode: ViewMode = args.json ? "json" : process.stdout.isTTY ? "tty" : "plain"
      const view = yield* makeView(mode, job.jobId, t0)

      // The backend, wrapped to keep the job's handle (a second Ctrl-C terminates it at once).
      const handle = yield* Ref.make(Option.none<JobHandle>())
      const backend: JobLauncher = args.backend === "docker"
        ? makeDockerLauncher(Option.match(args.image, { onNone: () => ({}), onSome: (image) => ({ image }) }))
        : args.backend === "slurm"
        ? yield* slurmLauncher()
        : ProcessJobLauncher.make({})
      const launcher: JobLauncher = {
        ...backend,
        launch: (request) => backend.launch(request).pipe(Effect.tap((h) => Ref.set(handle, Option.some(h))))
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
        launcher
      })
      const events = yield* executor.subscribe

      const signals = yield* signalQueue
      yield* Effect.gen(function* () {
        const first = yield* Queue.take(signals)
        yield* view.phase("aborting", `(${first}) the job has ${args.grace}s to stop; press Ctrl-C again to kill it now`)
        yield* Effect.forkDaemon(executor.abortApp(job.jobId))
        const second = yield* Queue.take(signals)
        yield* view.phase("killing", `(${second})`)
        const h = yield* Ref.get(handle)
        if (Option.isSome(h)) yield* h.value.terminate({ killAfter: 0 })
      }).pipe(Effect.forkScoped)

      yield* view.phase("starting", `${job.jobId} on ${site} (${launcher.name} backend, workspace ${workspace})`)
      yield* executor.startApp({ jobId: job.jobId, args: { workspace } })

      const log = followFile(path.join(jobDir, "log.txt"))
      const show = (lines: ReadonlyArray<string>) => Effect.forEach(lines, view.log, { discard: true })
      const handleEvent = (event: ExecutorEvent): Effect.Effect<Option.Option<JobOutcome>> =>
        Effect.gen(function* () {
          if (event.jobId !== job.jobId) {
            yield* view.event(event)
            return Option.none()
          }
          if (event._tag === "Completed") {
            yield* log.flush.pipe(Effect.flatMap(show))
            yield* view.event(event)
            return Option.some(event.outcome)
          }
          yield* log.read.pipe(Effect.flatMap(show))
          yield* view.event(event)
          if (event._tag === "Started") yield* view.phase("started")
          else if (event._tag === "Stopped") yield* view.phase("stopped")
          return Option.none()
        })
      let outcome: Option.Option<JobOutcome> = Option.none()
      while (Option.isNone(outcome)) {
        const next = yield* Queue.take(events).pipe(Effect.timeout("100 millis"), Effect.option)
        if (Option.isSome(next)) outcome = yield* handleEvent(next.value)
        else yield* log.read.pipe(Effect.flatMap(show))
      }
      yield* view.outcome(outcome.value)
      return outcome.value
    })
  )

/** The `run` subcommand. */
export const runCommand = Command.make(
  "run",
  {
    jobDir: Args.text({ name: "job-dir" }).pipe(
      Args.withDescription("The job folder: meta.json (the job's metadata) and app/ (its code, for Node app/main.js).")
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
