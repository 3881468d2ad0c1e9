/**
 * `InMemoryJobLauncher`: the reference backend. Its jobs are in-process async
 * programs (the worker fixtures, or programs you give it) running the real
 * worker runtime (`runJobWith`) over the channel's in-memory duplex, so they
 * speak the real protocol with the engine. Signals are simulated: `terminate`
 * delivers a SIGTERM the program may handle (and so ignore), then a SIGKILL
 * after `killAfter` that ends it for good.
 *
 * Fixtures that need an OS process (`spawn-grandchild`, `allocate-until-oom`)
 * are refused with `LaunchFailed`; `capabilities.processes` is false so a
 * conformance suite skips them.
 *
 * @since 0.1.0
 */
import type { Capabilities, JobExit, JobHandle, JobLauncher, JobMeta, LaunchRequest, LogLine, TerminateOptions } from "@flexec/core"
import { InvalidJobMeta, LaunchFailed } from "@flexec/core"
import { ConfigError, runJobWith } from "@flexec/core/worker"
import { Context, Deferred, Duration, Effect, Exit, Layer, Option, Scope, Stream } from "effect"
import * as fs from "node:fs"
import type { Duplex } from "node:stream"
import { fixtureModule } from "./fixtures.js"
import type { FixtureHost, FixtureProgram } from "./internal/fixtureModule.js"

/** A program the in-memory launcher can run: `main(host, args)` returns the exit code (see `FixtureHost`). */
export type InMemoryProgram = FixtureProgram

/** Options of `InMemoryJobLauncher.make`. */
export interface InMemoryJobLauncherOptions {
  /** The launcher's name (default `"in-memory"`). */
  readonly name?: string
  /** More programs by name, beside (or replacing) the fixtures. */
  readonly programs?: Readonly<Record<string, InMemoryProgram>>
  /** Log lines kept per job for late `logs` subscribers (default 10000). */
  readonly logBuffer?: number
}

/** The in-memory launcher: a `JobLauncher` that can also say how many of its jobs are alive. */
export interface InMemoryLauncher extends JobLauncher {
  /** Jobs launched and not yet ended (for leak checks). */
  readonly running: () => number
}

/** What the in-memory launcher declares. */
export const inMemoryCapabilities: Capabilities = {
  signals: true,
  oomDetection: false,
  recover: false,
  adopt: false,
  logs: true,
  memoryLimit: false,
  gpus: false,
  processes: false
}

const exitOf = (code: number | null, signal: string | null): JobExit => ({ code, signal, oomKilled: false, lost: false })

/** One in-process job: its simulated process state. */
class Job {
  private ended = false
  private terminated = false
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  private readonly streams = new Set<Duplex>()
  private readonly sigterm: Array<() => void> = []
  private readonly lines: Array<LogLine> = []
  private readonly listeners = new Set<(line: LogLine | undefined) => void>()
  private readonly partial: Record<LogLine["stream"], string> = { stdout: "", stderr: "" }

  constructor(
    readonly exit: Deferred.Deferred<JobExit>,
    private readonly logBuffer: number,
    private readonly onEnd: () => void,
    private readonly logFile: string | undefined
  ) {}

  get isEnded(): boolean {
    return this.ended
  }

  /** The program ended (an exit code) or was killed (a signal). Only the first call counts. */
  end(result: JobExit): void {
    if (this.ended) return
    // the output's unterminated last line is a line too
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.partial[stream] !== "") this.log(stream, this.partial[stream])
      this.partial[stream] = ""
    }
    this.ended = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    for (const stream of this.streams) stream.destroy()
    this.streams.clear()
    for (const listener of this.listeners) listener(undefined)
    this.listeners.clear()
    Deferred.unsafeDone(this.exit, Exit.succeed(result))
    this.onEnd()
  }

  kill(signal: string): void {
    this.end(exitOf(null, signal))
  }

  /**
   * A simulated SIGTERM: handled by the program's handlers if it has any, else the
   * default action (death). True when this was the first SIGTERM and the job survived it.
   */
  sigTerm(): boolean {
    if (this.ended || this.terminated) return false
    this.terminated = true
    if (this.sigterm.length === 0) {
      this.kill("SIGTERM")
      return false
    }
    for (const handler of this.sigterm) {
      try {
        handler()
      } catch (error) {
        this.log("stderr", `uncaught exception in a SIGTERM handler: ${String(error)}`)
        this.end(exitOf(1, null))
      }
    }
    return !this.ended
  }

  /** Output without a newline added: whole lines are logged, the rest waits for the next write or the end. */
  write(stream: LogLine["stream"], text: string): void {
    if (this.ended) return
    const all = this.partial[stream] + String(text)
    const cut = all.lastIndexOf("\n")
    if (cut < 0) {
      this.partial[stream] = all
      return
    }
    this.partial[stream] = all.slice(cut + 1)
    this.log(stream, all.slice(0, cut).replace(/\r$/, ""))
  }

  log(stream: LogLine["stream"], text: string): void {
    if (this.ended) return
    const lines = String(text).split(/\r?\n/)
    if (this.logFile !== undefined) {
      try {
        // as a process backend's job log: every line, stdout and stderr together
        fs.appendFileSync(this.logFile, `${lines.join("\n")}\n`)
      } catch {
        // the job directory is gone: the log is best effort
      }
    }
    for (const line of lines) {
      const entry: LogLine = { stream, line, time: Date.now() }
      this.lines.push(entry)
      if (this.lines.length > this.logBuffer) this.lines.shift()
      for (const listener of this.listeners) listener(entry)
    }
  }

  /** All lines kept so far, then the live ones, until the job ends. */
  readonly logs: Stream.Stream<LogLine> = Stream.asyncPush<LogLine>(
    (emit) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          for (const line of this.lines) emit.single(line)
          if (this.ended) {
            emit.end()
            return undefined
          }
          const listener = (line: LogLine | undefined): void => {
            if (line === undefined) emit.end()
            else emit.single(line)
          }
          this.listeners.add(listener)
          return listener
        }),
        (listener) => Effect.sync(() => listener && this.listeners.delete(listener))
      ),
    { bufferSize: "unbounded" }
  )

  host(request: LaunchRequest, env: Record<string, string | undefined>): FixtureHost {
    const connect = (): Duplex => {
      // the program is dead: a branded ConfigError stops the runtime's reconnect loop at once
      if (this.ended) throw new ConfigError("the in-memory job has ended")
      const stream = request.channel.connectInProcess()
      this.streams.add(stream)
      stream.once("close", () => this.streams.delete(stream))
      return stream
    }
    return {
      real: false,
      env,
      runJob: (spec) =>
        runJobWith(spec, {
          env,
          connect,
          exit: (code) => this.end(exitOf(code, null)),
          log: (line) => this.log("stderr", line)
        }),
      exit: (code) => this.end(exitOf(Number.isInteger(code) ? code & 0xff : 1, null)),
      log: (line) => this.log("stdout", line),
      logError: (line) => this.log("stderr", line),
      write: (stream, text) => this.write(stream, text),
      cwd: () => request.paths.jobDir,
      sleep: (ms) =>
        new Promise<void>((resolve) => {
          if (this.ended) return
          const timer = setTimeout(() => {
            this.timers.delete(timer)
            resolve()
          }, ms)
          this.timers.add(timer)
        }),
      forever: () => new Promise<never>(() => undefined),
      onSigterm: (handler) => {
        this.sigterm.push(handler)
      },
      connect
    }
  }
}

/** Which program a launch request names: the argv after `[node, script]` if it names one, else `set.fixture`. */
const selectProgram = (
  request: LaunchRequest,
  programs: Readonly<Record<string, InMemoryProgram>>
): { readonly name: string; readonly args: ReadonlyArray<string> } | undefined => {
  const argv = request.command.slice(2)
  const first = argv[0]
  if (first !== undefined && Object.hasOwn(programs, first)) return { name: first, args: argv.slice(1) }
  const fixture = request.set.fixture
  if (typeof fixture === "string" && Object.hasOwn(programs, fixture)) {
    const args = Array.isArray(request.set.args) ? request.set.args.map(String) : []
    return { name: fixture, args }
  }
  return undefined
}

const makeLauncher = (options: InMemoryJobLauncherOptions, live: Set<Job>): InMemoryLauncher => {
  const name = options.name ?? "in-memory"
  const programs: Readonly<Record<string, InMemoryProgram>> = { ...fixtureModule().fixtures, ...options.programs }
  const logBuffer = options.logBuffer ?? 10_000

  const launch = (request: LaunchRequest): Effect.Effect<JobHandle, LaunchFailed, Scope.Scope> =>
    Effect.gen(function* () {
      const selected = selectProgram(request, programs)
      if (selected === undefined) {
        return yield* new LaunchFailed({
          jobId: request.jobId,
          reason: `the in-memory launcher runs only named programs (one of: ${Object.keys(programs).join(", ")}); ` +
            `name one in the argv after the script or as args.set.fixture`
        })
      }
      const program = programs[selected.name]!
      if (program.process === true) {
        return yield* new LaunchFailed({
          jobId: request.jobId,
          reason: `fixture ${selected.name} needs a real process backend`
        })
      }
      const scope = yield* Effect.scope
      const exit = yield* Deferred.make<JobExit>()
      const job = new Job(exit, logBuffer, () => live.delete(job), request.paths.logFile)
      live.add(job)
      // closing the launch's scope kills the job
      yield* Effect.addFinalizer(() => Effect.sync(() => job.kill("SIGKILL")))

      const host = job.host(request, { ...request.env })
      yield* Effect.sync(() => {
        void Promise.resolve()
          .then(() => program.main(host, selected.args))
          .then(
            (code) => job.end(exitOf(typeof code === "number" && Number.isInteger(code) ? code & 0xff : 0, null)),
            (error: unknown) => {
              job.log("stderr", `uncaught exception: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
              job.end(exitOf(1, null))
            }
          )
      })

      const terminate = (terminateOptions?: TerminateOptions): Effect.Effect<void> =>
        Effect.suspend(() => {
          if (!job.sigTerm()) return Effect.void
          const killAfter = Duration.decode(terminateOptions?.killAfter ?? request.killTimeout)
          return Effect.sleep(killAfter).pipe(
            Effect.andThen(Effect.sync(() => job.kill("SIGKILL"))),
            Effect.forkIn(scope),
            Effect.asVoid
          )
        })

      const handle: JobHandle = {
        jobId: request.jobId,
        poll: Deferred.poll(exit).pipe(
          Effect.flatMap(Option.match({ onNone: () => Effect.succeedNone, onSome: (done) => Effect.asSome(done) }))
        ),
        wait: Deferred.await(exit),
        terminate,
        logs: job.logs,
        info: { backend: name, program: selected.name }
      }
      return handle
    })

  /** Its own `launcher_spec.<site|default>.<name>` mode has no key a job may set. */
  const validate = (meta: JobMeta, site: string): Effect.Effect<void, InvalidJobMeta> =>
    Effect.suspend(() => {
      const specs = meta.launcher_spec ?? {}
      const issues: Array<string> = []
      for (const where of [site, "default"]) {
        const own = (specs as Record<string, Record<string, unknown> | undefined>)[where]?.[name]
        if (own === undefined) continue
        if (typeof own !== "object" || own === null || Array.isArray(own)) issues.push(`launcher_spec.${where}.${name}: must be an object`)
        else for (const key of Object.keys(own)) issues.push(`launcher_spec.${where}.${name}.${key}: not allowed`)
      }
      if (issues.length === 0) return Effect.void
      return Effect.fail(
        new InvalidJobMeta({
          jobId: meta.job_id ?? "",
          issues: `${issues.join("; ")} (the ${name} launcher takes no key in launcher_spec.<site|default>.${name})`
        })
      )
    })

  return { name, capabilities: inMemoryCapabilities, validate, launch, running: () => live.size }
}

/**
 * The reference backend as a service. `InMemoryJobLauncher.make(options)` builds
 * one (closing its scope kills what still runs); `InMemoryJobLauncher.layer(options)`
 * provides it; `InMemoryJobLauncher.unsafeMake(options)` builds one outside Effect
 * (its jobs still end with their launch scopes).
 *
 * @example
 * const launcher = yield* InMemoryJobLauncher.make()
 * const executor = yield* makeJobExecutor({ client: mockClient(), launcher })
 * // deploy fixtureJob("echo") and startApp with args.set = job.set
 */
export class InMemoryJobLauncher extends Context.Tag("@flexec/testing/InMemoryJobLauncher")<
  InMemoryJobLauncher,
  InMemoryLauncher
>() {
  /** A launcher whose remaining jobs are killed when the scope closes. */
  static readonly make = (options: InMemoryJobLauncherOptions = {}): Effect.Effect<InMemoryLauncher, never, Scope.Scope> =>
    Effect.gen(function* () {
      const live = new Set<Job>()
      yield* Effect.addFinalizer(() => Effect.sync(() => [...live].forEach((job) => job.kill("SIGKILL"))))
      return makeLauncher(options, live)
    })

  /** A launcher outside Effect. */
  static readonly unsafeMake = (options: InMemoryJobLauncherOptions = {}): InMemoryLauncher => makeLauncher(options, new Set())

  /** Provides the launcher as `InMemoryJobLauncher`. */
  static readonly layer = (options: InMemoryJobLauncherOptions = {}): Layer.Layer<InMemoryJobLauncher> =>
    Layer.scoped(InMemoryJobLauncher, InMemoryJobLauncher.make(options))
}
