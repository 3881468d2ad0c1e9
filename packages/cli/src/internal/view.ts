/**
 * How `flexec run` shows a job: a live status line with a spinner on a TTY,
 * plain lines otherwise, or one JSON object per line (`--json`).
 *
 * @internal
 */
import type { ExecutorEvent, JobOutcome } from "@flexec/core"
import { reasonOf } from "@flexec/core"
import { Effect, Schedule } from "effect"
import type { Scope } from "effect"

/** How the output looks. */
export type ViewMode = "tty" | "plain" | "json"

/** What `flexec run` reports, whatever the mode. */
export interface View {
  /** A phase of the job: starting, started, stopped, aborting, killing. */
  readonly phase: (phase: string, detail?: string) => Effect.Effect<void>
  /** An executor event (shown as such only in JSON mode). */
  readonly event: (event: ExecutorEvent) => Effect.Effect<void>
  /** A line of the job's log. */
  readonly log: (line: string) => Effect.Effect<void>
  /** The job's stats (`ctx.setStats`), when they changed. */
  readonly stats: (stats: Readonly<Record<string, unknown>>) => Effect.Effect<void>
  /** A note about the run (on stderr-worthy matters it goes to the log of the view). */
  readonly note: (text: string) => Effect.Effect<void>
  /** The outcome: the last thing shown. */
  readonly outcome: (outcome: JobOutcome) => Effect.Effect<void>
}

/** The stats as one short line: `training: round=3 of=5 loss=0.333`. */
export const formatStats = (stats: Readonly<Record<string, unknown>>): string =>
  Object.entries(stats)
    .map(([group, value]) =>
      value !== null && typeof value === "object" && !Array.isArray(value)
        ? `${group}: ${Object.entries(value).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")}`
        : `${group}: ${JSON.stringify(value)}`
    )
    .join("; ")

/** One line describing an outcome. */
export const describeOutcome = (o: JobOutcome): string => {
  const reason = o.reason ?? reasonOf(o.returnCode) ?? (o.returnCode === 0 ? "success" : o.returnCode === 1 ? "execution error" : "unknown")
  const exit = [
    `exit code ${o.exit.code ?? "none"}`,
    `signal ${o.exit.signal ?? "none"}`,
    ...(o.exit.oomKilled ? ["OOM killed"] : []),
    ...(o.exit.lost ? ["lost (no exit record)"] : [])
  ].join(", ")
  return `return code ${o.returnCode} (${reason}); ${exit}`
}

const spinnerFrames = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]

/** Makes the view; `t0` is when the run began (elapsed times count from it). */
export const makeView = (
  mode: ViewMode,
  jobId: string,
  t0: number,
  write: (s: string) => void = (s) => void process.stdout.write(s)
): Effect.Effect<View, never, Scope.Scope> =>
  Effect.gen(function* () {
    const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(2)}s`
    const stamp = () => `[${elapsed().padStart(8)}]`
    if (mode === "json") {
      const line = (o: Record<string, unknown>) => Effect.sync(() => write(`${JSON.stringify(o)}\n`))
      return {
        phase: (phase, detail) => (phase === "aborting" || phase === "killing" ? line({ type: "signal", jobId, action: phase === "aborting" ? "abort" : "kill", time: Date.now(), ...(detail !== undefined ? { detail } : {}) }) : Effect.void),
        stats: (stats) => line({ type: "stats", jobId, time: Date.now(), stats }),
        note: (text) => line({ type: "note", jobId, time: Date.now(), text }),
        event: (event) => {
          const { _tag, ...rest } = event
          return line({ type: _tag, ...rest })
        },
        log: (text) => line({ type: "log", jobId, time: Date.now(), line: text }),
        outcome: (o) => line({ type: "outcome", jobId: o.jobId, returnCode: o.returnCode, reason: o.reason ?? null, exit: o.exit })
      } satisfies View
    }
    if (mode === "plain") {
      const print = (s: string) => Effect.sync(() => write(`${stamp()} ${s}\n`))
      return {
        phase: (phase, detail) => print(detail === undefined ? phase : `${phase.padEnd(9)} ${detail}`),
        event: () => Effect.void,
        log: (text) => print(`| ${text}`),
        stats: (stats) => print(`stats     ${formatStats(stats)}`),
        note: (text) => print(`          ${text}`),
        outcome: (o) => print(`outcome   ${describeOutcome(o)}`)
      } satisfies View
    }
    // TTY: a status line at the bottom, redrawn; everything else is printed above it. Colours
    // unless NO_COLOR is set (https://no-color.org).
    const noColor = (process.env.NO_COLOR ?? "") !== ""
    const paint = (code: string, text: string) => (noColor ? text : `\x1b[${code}m${text}\x1b[0m`)
    let status = "starting"
    let statsLine = ""
    let frame = 0
    let done = false
    const clear = "\r\x1b[2K"
    const draw = () => {
      if (!done) {
        const columns = process.stdout.columns ?? 80
        const text = `${spinnerFrames[frame % spinnerFrames.length]} ${elapsed().padStart(8)}  ${jobId}: ${status}${statsLine === "" ? "" : `  ${statsLine}`}`
        write(`${clear}${text.slice(0, Math.max(20, columns - 1))}`)
      }
    }
    const above = (s: string) =>
      Effect.sync(() => {
        write(`${clear}${s}\n`)
        draw()
      })
    yield* Effect.sync(() => {
      frame++
      draw()
    }).pipe(Effect.repeat(Schedule.spaced("100 millis")), Effect.forkScoped)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (!done) write(clear)
        done = true
      })
    )
    return {
      phase: (phase, detail) =>
        Effect.suspend(() => {
          status = phase
          return above(`${stamp()} ${detail === undefined ? phase : `${phase.padEnd(9)} ${detail}`}`)
        }),
      event: () => Effect.void,
      log: (text) => above(`${" ".repeat(11)}${paint("2", "│")} ${text}`),
      // on the status line only: it is redrawn, not printed again
      stats: (stats) =>
        Effect.sync(() => {
          statsLine = formatStats(stats)
          draw()
        }),
      note: (text) => above(`${" ".repeat(11)} ${text}`),
      outcome: (o) =>
        Effect.sync(() => {
          done = true
          write(`${clear}${stamp()} ${o.returnCode === 0 ? paint("32", "✔") : paint("31", "✘")} ${describeOutcome(o)}\n`)
        })
    } satisfies View
  })
