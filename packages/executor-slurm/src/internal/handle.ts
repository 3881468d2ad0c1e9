/**
 * A Slurm job's `JobHandle`: wait and poll read the status poller's watch;
 * terminate sends TERM to every process of the job and, when it has not ended
 * by the kill timeout, the cgroup-wide KILL (a job not running yet is
 * cancelled instead).
 *
 * @internal
 */
import { Duration, Effect, Option, Ref } from "effect"
import type { SlurmCli } from "./cli.js"
import type { JobHandle, LaunchRequest, TerminateOptions } from "./core.js"
import { isSignallable, isTerminal } from "./exit.js"
import type { Poller, Watch } from "./poller.js"

/** What `makeHandle` needs of one job. */
export interface HandleParams {
  readonly jobId: LaunchRequest["jobId"]
  readonly slurmId: string
  readonly watch: Watch
  readonly killTimeout: Duration.Duration
  /** Runs the KILL escalation in the background (in the job's scope, or as a daemon for a recovered job). */
  readonly fork: (escalation: Effect.Effect<void>) => Effect.Effect<unknown>
  readonly logs?: JobHandle["logs"]
  readonly info: Readonly<Record<string, string | number>>
}

/** The handle of the Slurm job `params.slurmId`, watched by `poller`. */
export const makeHandle = (cli: SlurmCli, poller: Poller, params: HandleParams): Effect.Effect<JobHandle> =>
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
