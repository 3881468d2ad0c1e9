/**
 * `runJob` / `runJobWith`: the job side of flexec's protocol. Internal module;
 * the public surface is `./index.ts`.
 */
import { writeFileSync } from "node:fs"
import { connect } from "node:net"
import { join } from "node:path"
import type { Duplex } from "node:stream"
import { ConfigError, isChannelError, isConfigError, isUnsafeComponentError, messageOf } from "./errors.js"
import { type Answer, ParentLink } from "./link.js"
import { JobReturnCode } from "../Status.js"
import { JobState, Status } from "./state.js"
import { Timers } from "./timers.js"
import type { Credentials, JobContext, JobSpec, RequestOptions, WorkerIO, WorkerMessage } from "./types.js"

/** Default of `FLEXEC_RECONNECT_MS`: how long the worker tries to (re)connect. */
export const DEFAULT_RECONNECT_MS = 10_000
/** Default of `FLEXEC_ABORT_GRACE_MS`: how long `run` has to return after the worker aborted itself. */
export const DEFAULT_ABORT_GRACE_MS = 2_000
/** Default timeout of `ctx.request`. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
/** Per-try timeout of the status notifications. */
const STATUS_TRY_MS = 5_000
/** How long the worker keeps trying to report Started. */
const STARTED_BUDGET_MS = 15_000
/** The name of the rc file in the job directory. */
export const RC_FILE_NAME = "_process_rc.txt"

/** Exit codes of the runtime itself (`JobReturnCode`). */
const Exit = JobReturnCode

/** Environment variables the runtime deletes once read. */
export const SECRET_ENV = [
  "FLEXEC_CHANNEL_TOKEN",
  "FLEXEC_JOB_AUTH_TOKEN",
  "FLEXEC_JOB_TOKEN_SIGNATURE",
  "FLEXEC_JOB_SSID"
] as const

interface Config {
  readonly url: string
  readonly token: string
  readonly jobId: string
  readonly clientName: string | undefined
  readonly workspace: string | undefined
  readonly jobDir: string | undefined
  readonly startupDir: string | undefined
  readonly set: Readonly<Record<string, unknown>>
  readonly credentials: Credentials
  readonly reconnectMs: number
  readonly graceMs: number
}

const positiveInt = (value: string | undefined, name: string, fallback: number): number => {
  if (value === undefined || value === "") return fallback
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n <= 0) throw new ConfigError(`${name} must be a positive integer (milliseconds), got ${JSON.stringify(value)}`)
  return n
}

/** Reads the job's configuration; the secrets are deleted from `env` first, whatever follows. */
const readConfig = (env: Record<string, string | undefined>): Config => {
  const secrets: Partial<Record<(typeof SECRET_ENV)[number], string>> = {}
  for (const name of SECRET_ENV) {
    const value = env[name]
    delete env[name]
    if (value !== undefined && value !== "") secrets[name] = value
  }
  const text = (name: string): string | undefined => {
    const value = env[name]
    return value === undefined || value === "" ? undefined : value
  }
  const url = text("FLEXEC_PARENT_URL")
  if (url === undefined) {
    throw new ConfigError("FLEXEC_PARENT_URL is not set: a flexec job must be started by a flexec executor")
  }
  const token = secrets.FLEXEC_CHANNEL_TOKEN
  if (token === undefined) {
    throw new ConfigError("FLEXEC_CHANNEL_TOKEN is not set: a flexec job must be started by a flexec executor")
  }
  const jobId = text("FLEXEC_JOB_ID")
  if (jobId === undefined) throw new ConfigError("FLEXEC_JOB_ID is not set")
  let set: Record<string, unknown> = {}
  const setText = text("FLEXEC_SET")
  if (setText !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(setText)
    } catch (error) {
      throw new ConfigError(`FLEXEC_SET is not valid JSON: ${messageOf(error)}`)
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError("FLEXEC_SET must be a JSON object")
    }
    set = parsed as Record<string, unknown>
  }
  const credentials: { token?: string; tokenSignature?: string; ssid?: string } = {}
  if (secrets.FLEXEC_JOB_AUTH_TOKEN !== undefined) credentials.token = secrets.FLEXEC_JOB_AUTH_TOKEN
  if (secrets.FLEXEC_JOB_TOKEN_SIGNATURE !== undefined) credentials.tokenSignature = secrets.FLEXEC_JOB_TOKEN_SIGNATURE
  if (secrets.FLEXEC_JOB_SSID !== undefined) credentials.ssid = secrets.FLEXEC_JOB_SSID
  return {
    url,
    token,
    jobId,
    clientName: text("FLEXEC_CLIENT_NAME"),
    workspace: text("FLEXEC_WORKSPACE"),
    jobDir: text("FLEXEC_JOB_DIR"),
    startupDir: text("FLEXEC_STARTUP_DIR"),
    set: Object.freeze(set),
    credentials: Object.freeze(credentials),
    reconnectMs: positiveInt(text("FLEXEC_RECONNECT_MS"), "FLEXEC_RECONNECT_MS", DEFAULT_RECONNECT_MS),
    graceMs: positiveInt(text("FLEXEC_ABORT_GRACE_MS"), "FLEXEC_ABORT_GRACE_MS", DEFAULT_ABORT_GRACE_MS)
  }
}

type Settled = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown }

/** The exit code of `run`'s outcome. */
const exitCodeOf = (settled: Settled, log: (line: string) => void): number => {
  if (settled.ok) {
    const value = settled.value
    if (typeof value !== "number") return 0
    if (Number.isInteger(value) && value >= 0 && value <= 255) return value
    log(`flexec worker: run returned ${value}, which is not an exit code (0-255); exiting 1`)
    return 1
  }
  const error = settled.error
  const code = isConfigError(error)
    ? Exit.ConfigError
    : isUnsafeComponentError(error)
      ? Exit.UnsafeComponent
      : Exit.Exception
  const text = error instanceof Error && error.stack !== undefined ? error.stack : messageOf(error)
  log(`flexec worker: run failed (exit ${code}): ${text}`)
  return code
}

/** Writes the rc file with exclusive create: the first writer wins, a symlink is never followed. */
const writeRcFile = (jobDir: string | undefined, code: number, log: (line: string) => void): void => {
  if (jobDir === undefined) {
    log("flexec worker: work is still alive at exit, but FLEXEC_JOB_DIR is not set: no rc file written")
    return
  }
  try {
    writeFileSync(join(jobDir, RC_FILE_NAME), `${code}\n`, { flag: "wx", mode: 0o644 })
  } catch (error) {
    if ((error as { code?: unknown }).code !== "EEXIST") log(`flexec worker: cannot write the rc file: ${messageOf(error)}`)
  }
}

/**
 * Runs a job against injected I/O instead of `process`: for in-process backends
 * (such as `@flexec/testing`'s `InMemoryJobLauncher`) and tests. It behaves as
 * `runJob` and resolves with the exit code after calling `io.exit` with it.
 *
 * Exit codes: `run`'s result (a number 0–255; anything else is 0); `run` threw a
 * `ConfigError` → 103, an `UnsafeComponentError` → 102, anything else → 101; a
 * missing or bad `FLEXEC_*` setting → 103; no connection to the parent within
 * the reconnect window (`FLEXEC_RECONNECT_MS`, default 10 s), or Started not
 * acknowledged within 15 s, before `run` started → 104; the connection lost for
 * good while `run` runs → the job aborts itself (`ctx.signal`), gives `run`
 * `FLEXEC_ABORT_GRACE_MS` (default 2 s) to return, and exits 104 either way.
 * If `run` has not returned, or `io.workAlive()` says work is still alive, the
 * code is also written to `<FLEXEC_JOB_DIR>/_process_rc.txt` (exclusive create).
 *
 * A dropped connection (or a malformed frame from the parent, which closes it)
 * is retried with the same token and a new hello; requests pending on the old
 * connection fail at once with `target_unreachable`, and replies to the old
 * connection's requests are dropped.
 */
export const runJobWith = async (spec: JobSpec, io: WorkerIO): Promise<number> => {
  const log = io.log ?? ((line: string) => console.error(line))
  const timers = new Timers()
  let exited = false
  const exit = (code: number): number => {
    if (!exited) {
      exited = true
      timers.clearAll()
      io.exit(code)
    }
    return code
  }

  let config: Config
  try {
    config = readConfig(io.env)
  } catch (error) {
    log(`flexec worker: configuration error: ${messageOf(error)}`)
    return exit(Exit.ConfigError)
  }

  const state = new JobState()
  const handlers = spec.handlers ?? {}
  let onGiveUp: () => void = () => undefined

  const ctx: JobContext = {
    jobId: config.jobId,
    clientName: config.clientName,
    set: config.set,
    credentials: config.credentials,
    workspace: config.workspace,
    jobDir: config.jobDir,
    startupDir: config.startupDir,
    signal: state.signal,
    taskSignal: () => state.taskSignal(),
    setStats: (group, value) => state.setStats(group, value),
    reportError: (message, options) => state.reportError(message, options),
    get logLevel() {
      return state.logLevel
    },
    request: (options: RequestOptions): Promise<WorkerMessage> => {
      const timeout =
        typeof options.timeout === "number" && Number.isFinite(options.timeout) && options.timeout > 0
          ? options.timeout
          : DEFAULT_REQUEST_TIMEOUT_MS
      return link.request(options.channel, options.topic, options.message, timeout)
    }
  }

  // A handler that returns a value (not a promise) is answered at once, without
  // a trip through the microtask queue.
  const dispatch = (channel: string, topic: string, message: WorkerMessage): Answer | Promise<Answer> => {
    if (channel === "client_command") {
      const answer = state.builtin(topic, message)
      if (answer !== undefined) return answer
    }
    const byTopic = Object.hasOwn(handlers, channel) ? handlers[channel] : undefined
    const handler = byTopic !== undefined && Object.hasOwn(byTopic, topic) ? byTopic[topic] : undefined
    if (typeof handler !== "function") return { rc: "invalid_request", payload: `the job has no handler for ${channel}/${topic}` }
    let result: unknown
    try {
      result = handler(message, ctx)
    } catch (error) {
      return { rc: "process_exception", payload: messageOf(error) }
    }
    if (!isThenable(result)) return { rc: "ok", payload: result }
    return Promise.resolve(result).then(
      (payload): Answer => ({ rc: "ok", payload }),
      (error: unknown): Answer => ({ rc: "process_exception", payload: messageOf(error) })
    )
  }

  const link: ParentLink = new ParentLink({
    url: config.url,
    jobId: config.jobId,
    token: config.token,
    connect: io.connect,
    reconnectMs: config.reconnectMs,
    helloTimeoutMs: 10_000,
    timers,
    log,
    onRequest: dispatch,
    onGiveUp: () => onGiveUp()
  })

  /** Reports a status until the parent answers, for at most `budgetMs`. */
  const notifyStatus = async (status: number, budgetMs: number): Promise<boolean> => {
    const deadline = Date.now() + budgetMs
    while (Date.now() < deadline) {
      if (!(await link.whenLive())) return false
      try {
        await link.request("admin", "notify_job_status", { payload: { status } }, Math.min(STATUS_TRY_MS, Math.max(1, deadline - Date.now())))
        return true
      } catch (error) {
        if (isChannelError(error) && (error.code === "target_unreachable" || error.code === "timeout")) continue
        // the parent answered, though not with ok: it is there, go on
        log(`flexec worker: notify_job_status ${status}: ${messageOf(error)}`)
        return true
      }
    }
    return false
  }

  const finish = async (code: number, runPending: boolean): Promise<number> => {
    await link.close()
    timers.clearAll()
    const alive = runPending || (io.workAlive?.() ?? false)
    if (alive) writeRcFile(config.jobDir, code, log)
    return exit(code)
  }

  // `run` begins once Started is acknowledged. From the pipelined report it
  // begins synchronously, as the acknowledgement is read: an abort the parent
  // sends right behind it (it counts the job as started at once) finds `run`
  // running.
  let runPending = false
  let settled: Promise<Settled> | undefined
  const beginRun = (): void => {
    if (settled !== undefined) return
    state.status = Status.Started
    io.started?.()
    runPending = true
    settled = (async () => spec.run(ctx))().then(
      (value): Settled => ({ ok: true, value }),
      (error: unknown): Settled => ({ ok: false, error })
    )
    void settled.then(() => {
      runPending = false
    })
  }

  // Started goes out with the hello (pipelined), one round trip earlier than
  // after hello_ok; when that fails, notifyStatus below tries again.
  const startedWithHello = link
    .requestAfterHello("admin", "notify_job_status", { payload: { status: Status.Started } }, STATUS_TRY_MS, beginRun)
    .then(
      () => true,
      (error: unknown) => {
        if (isChannelError(error) && (error.code === "target_unreachable" || error.code === "timeout")) return false
        // the parent answered, though not with ok: it is there, go on
        log(`flexec worker: notify_job_status ${Status.Started}: ${messageOf(error)}`)
        return true
      }
    )
  try {
    await link.start()
  } catch (error) {
    if (isConfigError(error)) {
      log(`flexec worker: configuration error: ${messageOf(error)}`)
      return finish(Exit.ConfigError, false)
    }
    log(`flexec worker: ${messageOf(error)}`)
    return finish(Exit.InfrastructureError, false)
  }

  if (!(await startedWithHello) && !(await notifyStatus(Status.Started, Math.max(STARTED_BUDGET_MS, config.reconnectMs)))) {
    log("flexec worker: could not report Started to the parent; exiting without running the job")
    return finish(Exit.InfrastructureError, false)
  }
  beginRun()
  const running = settled!
  const gaveUp = new Promise<"lost">((resolve) => {
    onGiveUp = () => resolve("lost")
  })
  const first = await Promise.race([running, gaveUp])

  if (first === "lost") {
    log(
      `flexec worker: the connection to the parent could not be re-established within ${config.reconnectMs} ms; aborting the job`
    )
    state.abortJob(Object.assign(new Error("the connection to the parent was lost"), { name: "AbortError" }))
    const second = await Promise.race([running, timers.sleep(config.graceMs).then(() => "grace" as const)])
    if (second === "grace") log(`flexec worker: run did not return within ${config.graceMs} ms of the abort; exiting`)
    state.status = Status.Stopped
    return finish(Exit.InfrastructureError, runPending)
  }

  const code = exitCodeOf(first, log)
  state.status = Status.Stopped
  onGiveUp = () => undefined
  await notifyStatus(Status.Stopped, Math.max(STATUS_TRY_MS, config.reconnectMs))
  return finish(code, false)
}

/** Connects to `unix://<path>`; any other URL is a `ConfigError`. */
export const connectUnix = (url: string): Duplex => {
  if (!url.startsWith("unix://") || url.length <= "unix://".length) {
    throw new ConfigError(`FLEXEC_PARENT_URL must be unix://<socket path>, got ${JSON.stringify(url)}`)
  }
  return connect({ path: url.slice("unix://".length) })
}

/** The multiset difference `now - baseline` of resource names. */
const extraResources = (now: ReadonlyArray<string>, baseline: ReadonlyArray<string>): Array<string> => {
  const counts = new Map<string, number>()
  for (const name of baseline) counts.set(name, (counts.get(name) ?? 0) + 1)
  const extra: Array<string> = []
  for (const name of now) {
    const left = counts.get(name) ?? 0
    if (left > 0) counts.set(name, left - 1)
    else extra.push(name)
  }
  return extra
}

/**
 * Runs the job in this process: reads and deletes its `FLEXEC_*` secrets from
 * `process.env`, connects to `FLEXEC_PARENT_URL` (`unix://<path>`), says hello,
 * reports Started, runs `run(ctx)` while answering the built-in topics and
 * `handlers`, reports Stopped, flushes the socket and exits the process with
 * the exit code (see `runJobWith` for the codes).
 *
 * Work still alive at exit — handles that would keep Node running, other than
 * the runtime's own and those open when `runJob` was called (stdio) — makes it
 * write the code to `<FLEXEC_JOB_DIR>/_process_rc.txt` first (NVFlare's rule).
 */
export const runJob = (spec: JobSpec): Promise<never> => {
  let baseline = process.getActiveResourcesInfo()
  // A job whose parent went away (and was adopted by a new one) has no reader on
  // its stdout/stderr any more: a write must not kill it with EPIPE. Guarded once
  // Started is acknowledged (or before the runtime's first diagnostic), not
  // before: creating the stdio streams costs about 2 ms on the way to Started.
  // The handles they create join the baseline of `workAlive`.
  let guarded = false
  const guardStdio = (): void => {
    if (guarded) return
    guarded = true
    const before = process.getActiveResourcesInfo()
    process.stdout.on("error", () => undefined)
    process.stderr.on("error", () => undefined)
    baseline = baseline.concat(extraResources(process.getActiveResourcesInfo(), before))
  }
  return runJobWith(spec, {
    env: process.env,
    connect: connectUnix,
    exit: (code) => process.exit(code),
    workAlive: () => extraResources(process.getActiveResourcesInfo(), baseline).length > 0,
    log: (line) => {
      guardStdio()
      console.error(line)
    },
    started: guardStdio
  }) as Promise<never>
}

/** A promise or any other thenable (a handler may return either). */
const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  (typeof value === "object" || typeof value === "function") && value !== null && typeof (value as { then?: unknown }).then === "function"
