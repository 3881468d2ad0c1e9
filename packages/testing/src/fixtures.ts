/**
 * Worker fixtures: small job programs (one plain CommonJS file, shipped in the
 * package) that any backend can run, and the helpers that run or deploy them.
 * A backend author gets the argv for each from one function, so fixtures run
 * the same way under the process backend, Docker, or any other launcher.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { FixtureHost, FixtureModule } from "./internal/fixtureModule.js"

/** The names of the fixtures in `fixtures/worker.cjs`. */
export const fixtureNames = [
  "exit-on-abort",
  "echo",
  "crash-at-start",
  "crash-later",
  "exit-with",
  "write-rc",
  "ignore-abort",
  "slow-start",
  "never-connect",
  "spawn-grandchild",
  "allocate-until-oom",
  "malformed-frame",
  "huge-payload",
  "report-errors",
  "long-task",
  "call-parent"
] as const

/** A fixture name. */
export type FixtureName = (typeof fixtureNames)[number]

/** The absolute path of the fixture program (`@flexec/testing/fixtures/worker.cjs`). */
export const fixturePath: string = fileURLToPath(new URL("../fixtures/worker.cjs", import.meta.url))

let loaded: FixtureModule | undefined

/** The fixture module itself (its table of programs), loaded once. @internal */
export const fixtureModule = (): FixtureModule => (loaded ??= createRequire(import.meta.url)(fixturePath) as FixtureModule)

/**
 * Constants the fixtures use: the `test` channel and its `echo` / `huge` topics,
 * `call-parent`'s `parent` / `hello`, what `report-errors` reports, and the
 * fixtures' distinctive exit codes.
 */
export const fixtureFacts = {
  channel: "test",
  echoTopic: "echo",
  hugeTopic: "huge",
  parentChannel: "parent",
  parentTopic: "hello",
  reportErrors: {
    stats: { progress: { round: 3, of: 10 } },
    /** `show_errors` values are `"<ISO time>: <message>"`; these are the messages. */
    errors: { general: { error: "second failure" }, io: { warning: "disk almost full" } }
  },
  exitCodes: {
    /** No fixture of that name (a configuration error). */
    unknownFixture: 103,
    /** `call-parent`: the request failed. */
    callParentFailed: 3,
    /** `malformed-frame`: the parent did not close the connection within 10 s. */
    notClosed: 2,
    /** `malformed-frame`: the parent did not answer the hello with `hello_ok`. */
    noHelloOk: 4,
    /** `allocate-until-oom`: reached its cap without being killed. */
    oomCap: 77
  }
} as const

/** Fixtures that need a real OS process (the in-memory backend refuses them). */
export const processOnlyFixtures: ReadonlyArray<FixtureName> = fixtureNames.filter(
  (name) => fixtureModule().fixtures[name]?.process === true
)

/**
 * The argv that runs a fixture directly: `[node, fixturePath, name, ...args]`.
 * The program loads the worker runtime from `FLEXEC_WORKER_MODULE` (or
 * `require("@flexec/core/worker")`).
 */
export const fixtureArgv = (name: FixtureName, ...args: ReadonlyArray<string | number>): ReadonlyArray<string> => [
  process.execPath,
  fixturePath,
  name,
  ...args.map(String)
]

/** A fixture packaged as a job app: `set` for `startApp`'s `args.set`, `files` for the app directory. */
export interface FixtureJob {
  /** `{ fixture, args }`: the program reads it from `FLEXEC_SET` when its argv names no fixture. */
  readonly set: { readonly fixture: FixtureName; readonly args: ReadonlyArray<string> }
  /** `main.js` (the fixture program) and a `package.json` that keeps it CommonJS. */
  readonly files: Readonly<Record<string, string>>
}

let source: string | undefined

/**
 * A fixture as an app: with the engine's default command `[node, "{appDir}/main.js"]`
 * (or Docker's `["node", "{appDir}/main.js"]`) it runs `name` with `args`.
 */
export const fixtureJob = (name: FixtureName, ...args: ReadonlyArray<string | number>): FixtureJob => ({
  set: { fixture: name, args: args.map(String) },
  files: {
    "main.js": (source ??= fs.readFileSync(fixturePath, "utf8")),
    "package.json": `${JSON.stringify({ type: "commonjs", private: true })}\n`
  }
})

/** Parameters of `deployJob`. */
export interface DeployJobParams {
  readonly workspace: string
  readonly jobId: string
  readonly clientName: string
  /** The deployed meta (written as `meta.json`); `job_id` defaults to `jobId`. */
  readonly meta?: Readonly<Record<string, unknown>>
  readonly fixture: FixtureName
  readonly args?: ReadonlyArray<string | number>
}

/** A deployed fixture job. */
export interface DeployedJob {
  readonly jobDir: string
  readonly appDir: string
  /** The meta written to `meta.json` (pass it as `startApp`'s `jobMeta`). */
  readonly meta: Readonly<Record<string, unknown>>
  /** Pass as `startApp`'s `args.set`. */
  readonly set: FixtureJob["set"]
}

/**
 * Deploys a fixture the way NVFlare lays out a job: `<workspace>/<jobId>/meta.json`
 * and `<workspace>/<jobId>/app_<clientName>/main.js`. Dies if the files cannot be written.
 */
export const deployJob = (params: DeployJobParams): Effect.Effect<DeployedJob> =>
  Effect.sync(() => {
    const job = fixtureJob(params.fixture, ...(params.args ?? []))
    const jobDir = path.join(params.workspace, params.jobId)
    const appDir = path.join(jobDir, `app_${params.clientName}`)
    const meta = { job_id: params.jobId, ...params.meta }
    fs.mkdirSync(appDir, { recursive: true })
    fs.writeFileSync(path.join(jobDir, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`)
    for (const [file, contents] of Object.entries(job.files)) fs.writeFileSync(path.join(appDir, file), contents)
    return { jobDir, appDir, meta, set: job.set }
  })

export type { FixtureHost }
