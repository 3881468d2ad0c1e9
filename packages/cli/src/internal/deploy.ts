/**
 * Deploying a job folder (`meta.json` + `app/`) into a workspace, as a site
 * receives it: `<workspace>/<jobId>/meta.json` and `<workspace>/<jobId>/app_<site>/`.
 *
 * @internal
 */
import { decodeJobId } from "@flexec/core"
import type { InvalidJobId } from "@flexec/core"
import { Effect, Either, ParseResult, Schema } from "effect"
import type { Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { CliError, ExitCode } from "./errors.js"

/** The part of meta.json the CLI reads (the engine validates the rest). */
const MetaJson = Schema.parseJson(Schema.Struct({ job_id: Schema.optional(Schema.String) }, { key: Schema.String, value: Schema.Unknown }))

/** A job folder, read and checked. */
export interface JobFolder {
  readonly dir: string
  readonly jobId: string
  readonly metaText: string
  /** The entry point found in `app/` (`main.js`, `main.mjs` or `main.py`), if any. */
  readonly entry: Entry | undefined
}

/** The entry points `flexec run` looks for in `app/`, in this order. */
export const entries = ["main.js", "main.mjs", "main.py"] as const

/** An entry point of a job's app. */
export type Entry = (typeof entries)[number]

/**
 * The command for an entry point (placeholders resolved by the executor):
 * Node runs `main.js` / `main.mjs` (`node` in a container, this Node for the
 * process backend), Python 3 runs `main.py`.
 */
export const commandFor = (entry: Entry, backend: "process" | "docker" | "slurm"): ReadonlyArray<string> =>
  entry === "main.py"
    ? ["python3", `{appDir}/${entry}`]
    : [backend === "docker" ? "node" : process.execPath, `{appDir}/${entry}`]

/** Splits a `--command` value into argv: words separated by blanks; single or double quotes group. */
export const splitCommand = (text: string): ReadonlyArray<string> => {
  const words: Array<string> = []
  let word: string | undefined
  let quote: string | undefined
  for (const c of text) {
    if (quote !== undefined) {
      if (c === quote) quote = undefined
      else word = (word ?? "") + c
    } else if (c === "'" || c === '"') {
      quote = c
      word ??= ""
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word)
      word = undefined
    } else {
      word = (word ?? "") + c
    }
  }
  if (word !== undefined) words.push(word)
  return words
}

const fail = (message: string, exitCode: number = ExitCode.ConfigError) => Effect.fail(new CliError({ message, exitCode }))

/** Reads `<dir>/meta.json` and checks `<dir>/app/`; the job id is the meta's `job_id`, else the folder's name. */
export const readJobFolder = (input: string): Effect.Effect<JobFolder, CliError | InvalidJobId> =>
  Effect.gen(function* () {
    const dir = path.resolve(input)
    const stat = fs.statSync(dir, { throwIfNoEntry: false })
    if (stat === undefined) return yield* fail(`job folder ${dir} does not exist: give the folder that holds meta.json and app/`, ExitCode.Usage)
    if (!stat.isDirectory()) return yield* fail(`${dir} is not a folder: give the folder that holds meta.json and app/`, ExitCode.Usage)
    const metaPath = path.join(dir, "meta.json")
    if (!fs.existsSync(metaPath)) return yield* fail(`no meta.json in ${dir}: a job folder holds meta.json (the job's metadata) and app/ (its code)`)
    const metaText = yield* Effect.try({
      try: () => fs.readFileSync(metaPath, "utf8"),
      catch: (e) => new CliError({ message: `cannot read ${metaPath}: ${e instanceof Error ? e.message : String(e)}`, exitCode: ExitCode.ConfigError })
    })
    const decoded = Schema.decodeUnknownEither(MetaJson)(metaText)
    if (Either.isLeft(decoded)) {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
      const where = issue === undefined || issue.path.length === 0 ? "" : ` at ${issue.path.join(".")}`
      return yield* fail(`${metaPath} is not a JSON object with a string job_id${where}: ${(issue?.message ?? "invalid").replace(/\s+/g, " ")}; fix the file`)
    }
    const appDir = path.join(dir, "app")
    if (!fs.statSync(appDir, { throwIfNoEntry: false })?.isDirectory()) {
      return yield* fail(`no app/ folder in ${dir}: put the job's code there (app/main.js, app/main.mjs or app/main.py, or give --command)`)
    }
    const jobId = yield* decodeJobId(decoded.right.job_id ?? path.basename(dir))
    const entry = entries.find((name) => fs.statSync(path.join(appDir, name), { throwIfNoEntry: false })?.isFile() === true)
    return { dir, jobId, metaText, entry }
  })

/**
 * The workspace: the given folder (created if needed, kept afterwards), or a
 * temporary one removed when the scope closes.
 */
export const acquireWorkspace = (given: string | undefined): Effect.Effect<string, CliError, Scope.Scope> =>
  given !== undefined
    ? Effect.try({
      try: () => {
        const dir = path.resolve(given)
        fs.mkdirSync(dir, { recursive: true })
        return dir
      },
      catch: (e) => new CliError({ message: `cannot use workspace ${given}: ${e instanceof Error ? e.message : String(e)}`, exitCode: ExitCode.InfrastructureError })
    })
    : Effect.acquireRelease(
      Effect.try({
        try: () => fs.mkdtempSync(path.join(os.tmpdir(), "flexec-ws-")),
        catch: (e) => new CliError({ message: `cannot create a temporary workspace in ${os.tmpdir()}: ${e instanceof Error ? e.message : String(e)}; set TMPDIR to a writable folder`, exitCode: ExitCode.InfrastructureError })
      }),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )

/** /proc/<pid>/stat field 22 (the start time), or undefined when there is no such process. */
const startTimeOf = (pid: number): string | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]
  } catch {
    return undefined
  }
}

/**
 * Takes `<workspace>/.flexec-run-<jobId>.json` (this process's pid and start
 * time) for the scope's lifetime, so that a second `flexec run` of the same job
 * in the same workspace is refused instead of replacing the running job's
 * folder. A lock whose process is gone is taken over.
 */
export const acquireRunLock = (workspace: string, jobId: string): Effect.Effect<void, CliError, Scope.Scope> => {
  const file = path.join(workspace, `.flexec-run-${jobId}.json`)
  const me = JSON.stringify({ pid: process.pid, startTime: startTimeOf(process.pid) ?? "" })
  const take = Effect.suspend(() => {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        fs.writeFileSync(file, me, { flag: "wx", mode: 0o600 })
        return Effect.void
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
          return fail(`cannot lock ${file}: ${e instanceof Error ? e.message : String(e)}`, ExitCode.InfrastructureError)
        }
      }
      let owner: { pid?: unknown; startTime?: unknown } = {}
      try {
        owner = JSON.parse(fs.readFileSync(file, "utf8")) as typeof owner
      } catch {
        // unreadable: a half-written lock; treated as stale
      }
      if (typeof owner.pid === "number" && owner.pid !== process.pid && startTimeOf(owner.pid) === owner.startTime) {
        return fail(
          `job ${jobId} is already running in workspace ${workspace} (flexec run, pid ${owner.pid}): wait for it to end, stop it, or give another --workspace`,
          ExitCode.InfrastructureError
        )
      }
      fs.rmSync(file, { force: true })
    }
    return fail(`cannot lock ${file}: another flexec run keeps taking it`, ExitCode.InfrastructureError)
  })
  return Effect.acquireRelease(take, () =>
    Effect.sync(() => {
      try {
        if (fs.readFileSync(file, "utf8") === me) fs.rmSync(file, { force: true })
      } catch {
        // already gone
      }
    })
  )
}

/**
 * Deploys the folder into `<workspace>/<jobId>/` (replacing an earlier,
 * finished deployment of the same job there); returns the job directory.
 */
export const deploy = (job: JobFolder, workspace: string, site: string): Effect.Effect<string, CliError> =>
  Effect.try({
    try: () => {
      const jobDir = path.join(workspace, job.jobId)
      fs.rmSync(jobDir, { recursive: true, force: true })
      fs.mkdirSync(jobDir, { recursive: true })
      fs.writeFileSync(path.join(jobDir, "meta.json"), job.metaText)
      fs.cpSync(path.join(job.dir, "app"), path.join(jobDir, `app_${site}`), { recursive: true })
      return jobDir
    },
    catch: (e) => new CliError({ message: `cannot deploy ${job.dir} into ${workspace}: ${e instanceof Error ? e.message : String(e)}`, exitCode: ExitCode.InfrastructureError })
  })
