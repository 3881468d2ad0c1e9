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
      return yield* fail(`no app/ folder in ${dir}: put the job's code there (for Node, app/main.js)`)
    }
    const jobId = yield* decodeJobId(decoded.right.job_id ?? path.basename(dir))
    return { dir, jobId, metaText }
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

/**
 * Deploys the folder into `<workspace>/<jobId>/` (replacing an earlier
 * deployment of the same job there); returns the job directory.
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
