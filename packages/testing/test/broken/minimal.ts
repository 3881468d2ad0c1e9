/**
 * A small real process launcher (the shape of WRITING_A_BACKEND.md §4) with
 * switches that break it the way hand-written process launchers break: the
 * scope's release skips a leader that already exited (the docs' own launcher
 * did this), signals reach the leader only, the output pipes are never read.
 */
import type { JobHandle, JobLauncher, JobMeta, LaunchRequest } from "@flexec/core"
import { InvalidJobMeta, LaunchFailed } from "@flexec/core"
import { Deferred, Duration, Effect, Exit, Option } from "effect"
import { spawn } from "node:child_process"

/** How the launcher is broken (all false: it passes the suite). */
export interface MinimalFlaws {
  /** The release kills only a leader still alive: what a leader that exited left keeps running. */
  readonly releaseSkipsExited?: boolean
  /** Signals go to the leader's pid, not its group. */
  readonly leaderOnly?: boolean
  /** stdout and stderr are pipes nobody reads. */
  readonly pipesUnread?: boolean
  /** No validate. */
  readonly noValidate?: boolean
}

const validate = (meta: JobMeta, site: string) => {
  const keys = [site, "default"].flatMap((where) => Object.keys(meta.launcher_spec?.[where]?.minimal ?? {}))
  return keys.length === 0 ? Effect.void : Effect.fail(new InvalidJobMeta({ jobId: meta.job_id ?? "", issues: `launcher_spec.minimal.${keys.join(", ")}: not allowed` }))
}

/** The minimal process launcher with `flaws`. */
export const minimalLauncher = (flaws: MinimalFlaws = {}): JobLauncher => {
  const signal = (pid: number | undefined, sig: NodeJS.Signals) => {
    try {
      if (pid !== undefined) process.kill(flaws.leaderOnly ? pid : -pid, sig)
    } catch {
      // gone
    }
  }
  return {
    name: "minimal",
    capabilities: { signals: true, oomDetection: false, recover: false, adopt: false, logs: false, processes: true },
    ...(flaws.noValidate ? {} : { validate }),
    launch: (req: LaunchRequest) =>
      Effect.gen(function* () {
        const exited = yield* Deferred.make<{ code: number | null; signal: string | null }>()
        const child = yield* Effect.acquireRelease(
          Effect.try({
            try: () => {
              const [file, ...args] = req.command
              const c = spawn(file!, args, { cwd: req.paths.jobDir, env: { ...req.env }, stdio: flaws.pipesUnread ? ["ignore", "pipe", "pipe"] : "ignore", detached: true })
              c.once("exit", (code, sig) => Deferred.unsafeDone(exited, Exit.succeed({ code, signal: sig })))
              return c
            },
            catch: (e) => new LaunchFailed({ jobId: req.jobId, reason: String(e) })
          }),
          (c) =>
            Effect.sync(() => {
              if (flaws.releaseSkipsExited && (c.exitCode !== null || c.signalCode !== null)) return
              signal(c.pid, "SIGKILL")
              if (flaws.pipesUnread) {
                c.stdout?.destroy()
                c.stderr?.destroy()
              }
            })
        )
        yield* Effect.async<void, LaunchFailed>((resume) => {
          child.once("spawn", () => resume(Effect.void))
          child.once("error", (e) => resume(Effect.fail(new LaunchFailed({ jobId: req.jobId, reason: e.message }))))
        })
        const toExit = (e: { code: number | null; signal: string | null }) => ({ ...e, oomKilled: false, lost: false })
        const handle: JobHandle = {
          jobId: req.jobId,
          poll: Effect.flatMap(
            Deferred.poll(exited),
            Option.match({ onNone: () => Effect.succeedNone, onSome: (done) => Effect.map(done, (e) => Option.some(toExit(e))) })
          ),
          wait: Effect.map(Deferred.await(exited), toExit),
          terminate: (opts) =>
            Effect.gen(function* () {
              if (yield* Deferred.isDone(exited)) return
              signal(child.pid, "SIGTERM")
              const after = Duration.decode(opts?.killAfter ?? req.killTimeout)
              yield* Effect.forkDaemon(Effect.sleep(after).pipe(Effect.zipRight(Effect.sync(() => signal(child.pid, "SIGKILL")))))
            })
        }
        return handle
      })
  }
}
