/**
 * The suite must fail on broken backends: each launcher of test/broken runs the
 * whole suite in a child vitest (--bail=1, JSON report), which must fail, and
 * the first failed test must belong to the expected group.
 */
import { describe, expect, it } from "vitest"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { BrokenName } from "./broken/launchers.js"
import { brokenLaunchers } from "./broken/launchers.js"

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const vitestBin = path.join(packageDir, "node_modules", ".bin", "vitest")
const bin = fs.existsSync(vitestBin) ? vitestBin : path.resolve(packageDir, "../../node_modules/.bin/vitest")

interface JsonReport {
  readonly success: boolean
  readonly numFailedTests: number
  readonly testResults: ReadonlyArray<{
    readonly assertionResults: ReadonlyArray<{ readonly ancestorTitles: ReadonlyArray<string>; readonly title: string; readonly status: string }>
  }>
}

const runBroken = (name: BrokenName): Promise<{ report: JsonReport; code: number | null }> => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "flxc-broken-")), "report.json")
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      ["run", "test/broken/broken-suite.test.ts", "--reporter=json", `--outputFile=${out}`, "--bail=1"],
      { cwd: packageDir, env: { ...process.env, FLEXEC_BROKEN: name }, timeout: 110_000 },
      (error) => {
        try {
          const report = JSON.parse(fs.readFileSync(out, "utf8")) as JsonReport
          fs.rmSync(path.dirname(out), { recursive: true, force: true })
          resolve({ report, code: error ? ((error as { code?: number }).code ?? 1) : 0 })
        } catch (e) {
          reject(new Error(`the child vitest for ${name} left no report: ${String(error ?? e)}`))
        }
      }
    )
  })
}

/** Runs at most `limit` children at a time (2 cores). */
const limited = <A>(limit: number) => {
  let active = 0
  const queue: Array<() => void> = []
  return (f: () => Promise<A>): Promise<A> =>
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

const names = Object.keys(brokenLaunchers) as Array<BrokenName>
const run = limited<{ report: JsonReport; code: number | null }>(2)
const results = new Map<BrokenName, Promise<{ report: JsonReport; code: number | null }>>()
const resultOf = (name: BrokenName) => {
  let r = results.get(name)
  if (r === undefined) {
    r = run(() => runBroken(name))
    results.set(name, r)
  }
  return r
}

describe("the conformance suite catches broken launchers", { concurrent: true }, () => {
  it("keeps at least ten broken launchers", () => {
    expect(names.length).toBeGreaterThanOrEqual(10)
  })

  for (const name of names) {
    const expected = brokenLaunchers[name].group
    it(`${name}: fails, first in group "${expected}"`, async () => {
      const { report, code } = await resultOf(name)
      expect(report.success).toBe(false)
      expect(code).not.toBe(0)
      const failed = report.testResults.flatMap((f) => f.assertionResults).filter((t) => t.status === "failed")
      expect(failed.length).toBeGreaterThan(0)
      const first = failed[0]!
      expect(first.ancestorTitles[0]).toBe(`broken:${name}`)
      expect(first.ancestorTitles[1], `first failure: ${first.title}`).toBe(expected)
    }, 120_000)
  }
})
