/**
 * `runJobWith`: the job side of flexec's protocol over injected I/O (connect,
 * hello, Started, `run`, the parent's requests, Stopped, exit). Internal
 * module; the public surface is `./index.ts`.
 */
import { type Config, readConfig } from "./config.js"
import type { Answer } from "./connection.js"
import { isChannelError, isConfigError, messageOf } from "./errors.js"
import { Exit, exitCodeOf, type Settled, writeRcFile } from "./exit.js"
import { ParentLink } from "./link.js"
import { JobState, Status } from "./state.js"
import { Timers } from "./timers.js"
import type { JobContext, JobSpec, RequestOptions, WorkerIO, WorkerMessage } from "./types.js"

/** Default timeout of `ctx.request`. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
/** Per-try timeout of the status notifications. */
const STATUS_TRY_MS = 5_000
/** How long the worker keeps trying to report Started. */
const STARTED_BUDGET_MS = 15_000

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
    connect: (url) => io.connect(url, config.certSha256 === undefined ? {} : { certSha256: config.certSha256 }),
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

/** A promise or any other thenable (a handler may return either). */
const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  (typeof value === "object" || typeof value === "function") && value !== null && typeof (value as { then?: unknown }).then === "function"
