/**
 * A small in-memory launcher for the engine's tests: each job is an async
 * program in this process. Worker programs speak the real protocol through
 * `runJobWith` over the channel's in-process connector.
 */
import { Deferred, Duration, Effect, Exit, Option, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Capabilities, JobExit, JobHandle, JobLauncher, LaunchRequest, RecoveredJob } from "../../src/JobLauncher.js"
import { BackendUnavailable, LaunchFailed } from "../../src/Errors.js"
import { runJobWith } from "../../src/worker/index.js"
import type { JobSpec } from "../../src/worker/types.js"

/** What a test program can do. */
export interface JobControl {
  readonly request: LaunchRequest
  /** Ends the job with an exit code. */
  exit(code: number): void
  /** Ends the job by a signal. */
  kill(signal: string): void
  /** Ends the job with no exit record. */
  lose(): void
  /** Runs a worker (the real runtime) in this job; its exit code ends the job. */
  worker(spec: JobSpec): void
  /** Called on a simulated SIGTERM; return "ignore" to survive it. */
  onTerminate(handler: () => "ignore" | void): void
  /** Writes the rc file. */
  writeRc(code: number): void
}

/** A test program. */
export type Program = (control: JobControl) => void

const exitOf = (code: number | null, signal: string | null, lost = false): JobExit => ({ code, signal, oomKilled: false, lost })

/** The launcher and what it recorded. */
export interface MemoryLauncher extends JobLauncher {
  readonly launches: Array<LaunchRequest>
  readonly terminations: Array<string>
  readonly live: () => number
  /** Makes the next `wait` calls of every handle fail `BackendUnavailable` this many times. */
  failWaits: number
  recovered: Array<RecoveredJob>
}

/** Builds the launcher; `programFor` picks each job's program from its request. */
export const makeMemoryLauncher = (
  programFor: (request: LaunchRequest) => Program | "fail" | "hang",
  capabilities: Partial<Capabilities> = {},
  hooks: { onLaunchScopeClosed?: (jobId: string) => void } = {}
): MemoryLauncher => {
  let live = 0
  const self: MemoryLauncher = {
    name: "memory",
    capabilities: { signals: true, oomDetection: false, recover: true, adopt: false, logs: false, ...capabilities },
    launches: [],
    terminations: [],
    live: () => live,
    failWaits: 0,
    recovered: [],
    recover: () => Effect.succeed(self.recovered),
    launch: (request) =>
      Effect.gen(function* () {
        self.launches.push(request)
        yield* Effect.addFinalizer(() => Effect.sync(() => hooks.onLaunchScopeClosed?.(request.jobId)))
        const program = programFor(request)
        if (program === "fail") return yield* new LaunchFailed({ jobId: request.jobId, reason: "scripted launch failure" })
        if (program === "hang") return yield* Effect.never
        const done = yield* Deferred.make<JobExit>()
        let onTerm: (() => "ignore" | void) | undefined
        live++
        let finished = false
        const end = (exit: JobExit) => {
          if (finished) return
          finished = true
          live--
          Deferred.unsafeDone(done, Exit.succeed(exit))
        }
        const control: JobControl = {
          request,
          exit: (code) => end(exitOf(code, null)),
          kill: (signal) => end(exitOf(null, signal)),
          lose: () => end(exitOf(null, null, true)),
          worker: (spec) => {
            void runJobWith(spec, {
              env: { ...request.env },
              connect: () => request.channel.connectInProcess(),
              exit: (code) => end(exitOf(code, null)),
              log: () => undefined
            })
          },
          onTerminate: (handler) => {
            onTerm = handler
          },
          writeRc: (code) => fs.writeFileSync(path.join(request.paths.jobDir, "_process_rc.txt"), String(code))
        }
        program(control)
        // the job's scope closing while it runs: hard stop
        yield* Effect.addFinalizer(() => Effect.sync(() => end(exitOf(null, "SIGKILL"))))
        let terminating = false
        const handle: JobHandle = {
          jobId: request.jobId,
          logs: Stream.make({ stream: "stdout" as const, line: `hello from ${request.jobId}`, time: 0 }),
          poll: Effect.flatMap(Deferred.poll(done), (o) => (Option.isSome(o) ? Effect.asSome(o.value) : Effect.succeedNone)),
          wait: Effect.suspend(() => {
            if (self.failWaits > 0) {
              self.failWaits--
              return Effect.fail(new BackendUnavailable({ backend: "memory", detail: "scripted outage" }))
            }
            return Deferred.await(done)
          }),
          terminate: (options) =>
            Effect.gen(function* () {
              self.terminations.push(request.jobId)
              if (finished || terminating) return
              terminating = true
              if (onTerm?.() !== "ignore") {
                end(exitOf(null, "SIGTERM"))
                return
              }
              const killAfter = options?.killAfter ?? request.killTimeout
              yield* Effect.sleep(Duration.decode(killAfter)).pipe(
                Effect.andThen(Effect.sync(() => end(exitOf(null, "SIGKILL")))),
                Effect.forkDaemon
              )
            })
        }
        return handle
      })
  }
  return self
}
