/**
 * Slurm's command-line clients (`sbatch`, `squeue`, `scancel`, `scontrol`), run
 * without a shell, each call with a timeout, in an environment of our choosing.
 *
 * @internal
 */
import { Data, Effect } from "effect"
import { execFile, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { BackendUnavailable } from "./core.js"

/** The clients the backend runs. */
export type SlurmCommand = "sbatch" | "squeue" | "scancel" | "scontrol"

/** A Slurm command that could not run, or that Slurm answered with an error. */
export class SlurmCommandError extends Data.TaggedError("SlurmCommandError")<{
  /** The command and its arguments, as run (never a secret: credentials are never in argv). */
  readonly command: string
  /** Slurm's message (its stderr), or why it could not run. */
  readonly detail: string
  /** The controller (or the client itself) is unreachable, as opposed to refusing this request. */
  readonly unavailable: boolean
  /** The exit code, when the command ran to its end. */
  readonly exitCode?: number
}> {
  override get message(): string {
    return `${this.command}: ${this.detail}`
  }
}

/** A command the controller could not answer, as the backend reports it: `BackendUnavailable` with the command and Slurm's message. */
export const unavailable = (e: SlurmCommandError): BackendUnavailable => new BackendUnavailable({ backend: "slurm", detail: e.message })

/** What a command that ran printed. */
export interface CommandOutput {
  readonly stdout: string
  readonly stderr: string
}

/**
 * Slurm's ways of saying that the controller cannot be reached (as opposed to
 * refusing a request): these make `BackendUnavailable`, the rest `LaunchFailed`.
 */
const unreachable =
  /Unable to contact slurm controller|Socket timed out|Could not establish a configuration source|Connection refused|Zero Bytes were transmitted|Communication connection failure|Unable to establish|Slurm backup controller in standby|Munge encode failed|authentication failure|Protocol authentication error|Slurmctld.*not responding/i

/** True when Slurm's message says the controller (or its auth) cannot be reached. */
export const isUnreachable = (message: string): boolean => unreachable.test(message)

/** The last meaningful lines of a command's stderr, one line. */
export const slurmMessage = (stderr: string): string =>
  stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .slice(-4)
    .join("; ")

/** How the backend runs Slurm's clients. */
export interface SlurmCli {
  /** The absolute path of each client. */
  readonly paths: Readonly<Record<SlurmCommand, string>>
  /** The environment of every call but sbatch's (the parent's, without Slurm's input variables, plus SLURM_CONF). */
  readonly env: Readonly<Record<string, string>>
  /** SLURM_CONF given to every call, when the site set one (else Slurm's default lookup). */
  readonly slurmConf: string | undefined
  readonly timeoutMs: number
  /** Runs a client; `env` replaces the default environment (sbatch gets the job's). */
  readonly run: (
    command: SlurmCommand,
    args: ReadonlyArray<string>,
    options?: { readonly env?: Readonly<Record<string, string>> }
  ) => Effect.Effect<CommandOutput, SlurmCommandError>
  /** The same, blocking (only for the start-up probe of `SlurmJobLauncher.make`). */
  readonly runSync: (command: SlurmCommand, args: ReadonlyArray<string>) => CommandOutput | SlurmCommandError
}

/** Variables that steer Slurm's clients: never taken from the parent's environment. */
const slurmInput = /^(SLURM_|SBATCH_|SQUEUE_|SCANCEL_|SCONTROL_|SINFO_|SALLOC_|SRUN_)/

const isExecutable = (file: string): boolean => {
  try {
    const stat = fs.statSync(file)
    if (!stat.isFile()) return false
    fs.accessSync(file, fs.constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Where `name` is: in `slurmBin` when given, else on the parent's PATH; the bare name when not found (the call then fails with ENOENT). */
const locate = (name: SlurmCommand, slurmBin: string | undefined): string => {
  if (slurmBin !== undefined) return path.resolve(slurmBin, name)
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir === "") continue
    const file = path.resolve(dir, name)
    if (isExecutable(file)) return file
  }
  return name
}

const describeArgs = (file: string, args: ReadonlyArray<string>): string =>
  [file, ...args].map((a) => (/^[A-Za-z0-9_./:=,@%+-]+$/.test(a) ? a : JSON.stringify(a))).join(" ")

/** Options of `makeCli`. */
export interface CliOptions {
  readonly slurmBin?: string | undefined
  readonly slurmConf?: string | undefined
  readonly timeoutMs: number
}

/** Builds the runner of Slurm's clients. */
export const makeCli = (options: CliOptions): SlurmCli => {
  const paths = {
    sbatch: locate("sbatch", options.slurmBin),
    squeue: locate("squeue", options.slurmBin),
    scancel: locate("scancel", options.slurmBin),
    scontrol: locate("scontrol", options.slurmBin)
  }
  const slurmConf = options.slurmConf ?? process.env.SLURM_CONF
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !slurmInput.test(k)) env[k] = v
  if (slurmConf !== undefined) env.SLURM_CONF = slurmConf
  // dates and numbers as the parsers expect them
  env.LC_ALL = "C"

  const spawnFailure = (shown: string, e: NodeJS.ErrnoException): SlurmCommandError =>
    new SlurmCommandError({
      command: shown,
      detail: e.code === "ENOENT" ? `${e.path ?? "the command"} does not exist` : `cannot run it: ${e.message}`,
      unavailable: true
    })

  const run: SlurmCli["run"] = (command, args, runOptions) =>
    Effect.async<CommandOutput, SlurmCommandError>((resume) => {
      const file = paths[command]
      const shown = describeArgs(file, args)
      const child = execFile(
        file,
        [...args],
        {
          env: runOptions?.env ?? env,
          timeout: options.timeoutMs,
          killSignal: "SIGKILL",
          maxBuffer: 64 * 1024 * 1024,
          encoding: "utf8",
          windowsHide: true
        },
        (error, stdout, stderr) => {
          if (error === null) return resume(Effect.succeed({ stdout, stderr }))
          const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: unknown }
          if (typeof e.code === "string") return resume(Effect.fail(spawnFailure(shown, e)))
          if (e.killed === true || (e.signal !== null && e.signal !== undefined)) {
            return resume(
              Effect.fail(new SlurmCommandError({ command: shown, detail: `no answer within ${options.timeoutMs} ms`, unavailable: true }))
            )
          }
          const message = slurmMessage(stderr) || `exited ${String(e.code)}`
          resume(
            Effect.fail(
              new SlurmCommandError({
                command: shown,
                detail: message,
                unavailable: isUnreachable(message),
                ...(typeof e.code === "number" ? { exitCode: e.code } : {})
              })
            )
          )
        }
      )
      return Effect.sync(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      })
    })

  const runSync: SlurmCli["runSync"] = (command, args) => {
    const file = paths[command]
    const shown = describeArgs(file, args)
    const out = spawnSync(file, [...args], { env, timeout: options.timeoutMs, killSignal: "SIGKILL", encoding: "utf8", maxBuffer: 16 * 1024 * 1024 })
    if (out.error !== undefined) {
      const e = out.error as NodeJS.ErrnoException
      if (e.code === "ETIMEDOUT") return new SlurmCommandError({ command: shown, detail: `no answer within ${options.timeoutMs} ms`, unavailable: true })
      return spawnFailure(shown, e)
    }
    if (out.status === 0) return { stdout: out.stdout, stderr: out.stderr }
    const message = slurmMessage(out.stderr) || `exited ${String(out.status ?? out.signal)}`
    return new SlurmCommandError({
      command: shown,
      detail: message,
      unavailable: isUnreachable(message),
      ...(out.status !== null ? { exitCode: out.status } : {})
    })
  }

  return { paths, env, slurmConf, timeoutMs: options.timeoutMs, run, runSync }
}
