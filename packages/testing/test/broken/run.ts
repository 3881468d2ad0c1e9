/**
 * Runs one conformance group against a broken launcher in a child vitest (JSON
 * report) and reads which tests failed, with their messages.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { GroupInput } from "../../src/conformance/groups/index.js"

type Groups = typeof import("../../src/conformance/groups/index.js")

/** The groups by the name of their describe. */
export const groupsByName = (g: Groups): Record<string, (input: GroupInput) => void> => ({
  lifecycle: g.lifecycleTests,
  messaging: g.messagingTests,
  control: g.controlTests,
  outcomes: g.outcomesTests,
  handlers: g.handlersTests,
  resources: g.resourcesTests,
  isolation: g.isolationTests,
  logs: g.logsTests,
  tree: g.treeTests,
  handle: g.handleTests,
  environment: g.environmentTests,
  recovery: g.recoveryTests,
  "launch abort": g.launchAbortTests,
  validate: g.validateTests
})

/** A test of the child's report. */
export interface ReportedTest {
  readonly ancestorTitles: ReadonlyArray<string>
  readonly title: string
  readonly status: string
  readonly failureMessages: ReadonlyArray<string>
}

/** What the child vitest reported. */
export interface BrokenRun {
  readonly success: boolean
  readonly code: number | null
  readonly tests: ReadonlyArray<ReportedTest>
}

/** Runs `file` (in `packageDir`) with FLEXEC_BROKEN=name; resolves to its report. */
export const runBroken = (packageDir: string, file: string, name: string): Promise<BrokenRun> => {
  const local = path.join(packageDir, "node_modules", ".bin", "vitest")
  const bin = fs.existsSync(local) ? local : path.resolve(packageDir, "../../node_modules/.bin/vitest")
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flxc-broken-"))
  const out = path.join(dir, "report.json")
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      ["run", file, "--reporter=json", `--outputFile=${out}`],
      { cwd: packageDir, env: { ...process.env, FLEXEC_BROKEN: name }, timeout: 170_000, maxBuffer: 64 * 1024 * 1024 },
      (error) => {
        try {
          const report = JSON.parse(fs.readFileSync(out, "utf8")) as {
            readonly success: boolean
            readonly testResults: ReadonlyArray<{ readonly assertionResults: ReadonlyArray<ReportedTest> }>
          }
          resolve({ success: report.success, code: error ? ((error as { code?: number }).code ?? 1) : 0, tests: report.testResults.flatMap((f) => f.assertionResults) })
        } catch (e) {
          reject(new Error(`the child vitest for ${name} left no report: ${String(error ?? e)}`))
        } finally {
          fs.rmSync(dir, { recursive: true, force: true })
        }
      }
    )
  })
}

/** Runs at most `limit` children at a time (2 cores). */
export const limited = (limit: number) => {
  let active = 0
  const queue: Array<() => void> = []
  return <A>(f: () => Promise<A>): Promise<A> =>
    new Promise<A>((resolve, reject) => {
      const go = () => {
        active++
        f().then(resolve, reject).finally(() => {
          active--
          queue.shift()?.()
        })
      }
      if (active < limit) go()
      else queue.push(go)
    })
}
