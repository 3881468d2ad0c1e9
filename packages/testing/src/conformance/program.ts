/**
 * The conformance job program: the worker fixtures plus a few topics only the
 * suite needs (a handler that never replies, a handler that throws).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { FixtureName } from "../fixtures.js"
import { deployJob, fixturePath } from "../fixtures.js"
import type { FixtureProgram } from "../internal/fixtureModule.js"

/** The fixture the suite adds: echo, plus `test/stall` (never replies) and `test/fail` (throws). */
export const conformanceEchoFixture = "conformance-echo"

/** Topics of `conformance-echo` on channel `test`. */
export const conformanceTopics = { echo: "echo", stall: "stall", fail: "fail" } as const

/** CommonJS source of the extra fixtures (assigned to `module.exports`). */
const extraSource = `
const aborted = (signal) =>
  new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })))
module.exports = {
  "conformance-echo": {
    main: (h) =>
      h.runJob({
        handlers: {
          test: {
            echo: (message) => message.payload,
            stall: () => new Promise(() => {}),
            fail: () => {
              throw new Error("conformance: handler failed on purpose")
            }
          }
        },
        run: (ctx) => aborted(ctx.signal).then(() => 0)
      })
  }
}
`

const marker = "module.exports = { fixtures, facts, select }"

/**
 * The extra programs, for in-process launchers that run programs by name:
 * `InMemoryJobLauncher.make({ programs: conformancePrograms })`.
 */
export const conformancePrograms: Readonly<Record<string, FixtureProgram>> = (() => {
  const module = { exports: {} as Record<string, FixtureProgram> }
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  new Function("module", extraSource)(module)
  return module.exports
})()

let programSource: string | undefined

/** The `main.js` the suite deploys: `fixtures/worker.cjs` with the extra fixtures added to its table. */
export const conformanceProgramSource = (): string => {
  if (programSource !== undefined) return programSource
  const base = fs.readFileSync(fixturePath, "utf8")
  if (!base.includes(marker)) throw new Error(`conformance: ${fixturePath} no longer ends with "${marker}"`)
  const extra = `Object.assign(fixtures, (() => { const module = { exports: {} }; ${extraSource}; return module.exports })())\n`
  programSource = base.replace(marker, `${extra}${marker}`)
  return programSource
}

/** A fixture the suite can run: one of `fixtures/worker.cjs` or `conformance-echo`. */
export type ConformanceFixture = FixtureName | typeof conformanceEchoFixture

/** Deploys `<workspace>/<jobId>/meta.json` and `app_<client>/main.js` (the conformance program). */
export const deployConformanceJob = (params: {
  readonly workspace: string
  readonly jobId: string
  readonly clientName: string
  readonly fixture: ConformanceFixture
  readonly args?: ReadonlyArray<string | number>
  readonly meta?: Readonly<Record<string, unknown>>
}) =>
  Effect.gen(function* () {
    const job = yield* deployJob({
      workspace: params.workspace,
      jobId: params.jobId,
      clientName: params.clientName,
      fixture: params.fixture as FixtureName,
      ...(params.args ? { args: params.args } : {}),
      ...(params.meta ? { meta: params.meta } : {})
    })
    yield* Effect.sync(() => fs.writeFileSync(path.join(job.appDir, "main.js"), conformanceProgramSource()))
    return job
  })
