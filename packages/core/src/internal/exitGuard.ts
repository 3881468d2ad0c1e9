/**
 * The parent-exit guard of the Promise facade: an embedding program that ends
 * without `close()` aborts its jobs instead of leaving them to pid 1.
 *
 * - SIGINT, SIGTERM, SIGHUP: when no other listener of that signal is
 *   installed (the program has no shutdown plan of its own), every guarded
 *   executor is closed (the real abort: `abort`, the grace period, SIGTERM,
 *   SIGKILL), then the signal is raised again with its default action, so the
 *   program ends by that signal (status 128 + n). A second signal while the
 *   abort runs exits at once (status 128 + n; the backends' `'exit'` hooks kill
 *   what is left).
 * - An uncaught exception or unhandled rejection, when no other
 *   `uncaughtException` listener is installed: printed as Node prints it, the
 *   executors closed, then exit status 1 (Node's own for an uncaught error).
 * - Any other exit (`process.exit()`): an `'exit'` listener cannot wait, so
 *   that is the backends' part (the process backend SIGKILLs its jobs' process
 *   groups synchronously, see `@flexec/executor-process`).
 *
 * The listeners are installed while at least one executor is guarded.
 *
 * @internal
 */
import * as util from "node:util"

/** What the guard does for one executor. */
export interface GuardedExecutor {
  /** How many jobs it runs now (for the message). */
  readonly running: () => number
  /** The real abort: closes the executor (aborts its jobs and waits for them). */
  readonly close: () => Promise<void>
}

const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const
type GuardSignal = (typeof signals)[number]
const signalNumbers: Record<GuardSignal, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }

const guarded = new Set<GuardedExecutor>()
let installed = false
let ending: "signal" | "error" | undefined

const say = (line: string): void => {
  try {
    process.stderr.write(`${line}\n`)
  } catch {
    // stderr is gone: nothing to say it on
  }
}

/** Closes every guarded executor; each failure is only reported. */
const closeAll = async (why: string): Promise<void> => {
  const executors = [...guarded]
  const jobs = executors.reduce((n, e) => n + e.running(), 0)
  if (jobs > 0) say(`flexec: ${why}: aborting ${jobs} job${jobs === 1 ? "" : "s"} before exiting (close() was not called)`)
  await Promise.all(
    executors.map((e) =>
      e.close().catch((error: unknown) => say(`flexec: closing an executor failed: ${util.inspect(error)}`))
    )
  )
}

const onSignal = (signal: GuardSignal): void => {
  // the program listens too: its handler decides (an exit it calls still reaches the backends' 'exit' hooks)
  if (process.listenerCount(signal) > 1) return
  if (ending !== undefined) {
    process.exit(128 + signalNumbers[signal])
  }
  ending = "signal"
  void closeAll(`${signal} received`).then(() => {
    uninstall()
    // ends the program by the signal itself, as if no one had caught it
    process.kill(process.pid, signal)
  })
}

const onUncaught = (error: unknown, origin: string): void => {
  if (process.listenerCount("uncaughtException") > 1) return
  say(origin === "unhandledRejection" ? `Unhandled rejection: ${util.inspect(error)}` : `Uncaught ${util.inspect(error)}`)
  if (ending !== undefined) {
    process.exit(1)
  }
  ending = "error"
  void closeAll(origin === "unhandledRejection" ? "an unhandled rejection" : "an uncaught exception").then(() => {
    process.exit(1)
  })
}

const handlers: Record<GuardSignal, () => void> = {
  SIGINT: () => onSignal("SIGINT"),
  SIGTERM: () => onSignal("SIGTERM"),
  SIGHUP: () => onSignal("SIGHUP")
}

const install = (): void => {
  if (installed) return
  installed = true
  for (const s of signals) process.on(s, handlers[s])
  process.on("uncaughtException", onUncaught)
}

function uninstall(): void {
  if (!installed) return
  installed = false
  for (const s of signals) process.off(s, handlers[s])
  process.off("uncaughtException", onUncaught)
}

/** Guards `executor` until the returned function is called (at its `close()`). */
export const guardExit = (executor: GuardedExecutor): (() => void) => {
  guarded.add(executor)
  install()
  return () => {
    guarded.delete(executor)
    if (guarded.size === 0 && ending === undefined) uninstall()
  }
}
