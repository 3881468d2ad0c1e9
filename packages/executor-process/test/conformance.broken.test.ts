/**
 * The suite must fail on broken process backends (test/broken): the group
 * expected to catch each runs in a child vitest, which must fail, with the
 * expected test among its failures and a message naming the promise. Each is
 * also shown to misbehave by a direct probe, which the unbroken backend passes.
 */
import { makeConformanceContext, runConformanceTest } from "@flexec/testing"
import type { LauncherContext } from "@flexec/testing"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import type { Probe } from "./broken/launchers.js"
import { brokenProcessLaunchers, real } from "./broken/launchers.js"

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const local = path.join(packageDir, "node_modules", ".bin", "vitest")
const bin = fs.existsSync(local) ? local : path.resolve(packageDir, "../../node_modules/.bin/vitest")

interface Reported {
  readonly ancestorTitles: ReadonlyArray<string>
  readonly title: string
  readonly status: string
  readonly failureMessages: ReadonlyArray<string>
}

const runBroken = (name: string): Promise<{ success: boolean; code: number | null; tests: ReadonlyArray<Reported> }> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flxc-broken-"))
  const out = path.join(dir, "report.json")
  return new Promise((resolve, reject) => {
    execFile(bin, ["run", "test/broken/broken-suite.test.ts", "--reporter=json", `--outputFile=${out}`], { cwd: packageDir, env: { ...process.env, FLEXEC_BROKEN: name }, timeout: 170_000 }, (error) => {
      try {
        const report = JSON.parse(fs.readFileSync(out, "utf8")) as { success: boolean; testResults: ReadonlyArray<{ assertionResults: ReadonlyArray<Reported> }> }
        resolve({ success: report.success, code: error ? ((error as { code?: number }).code ?? 1) : 0, tests: report.testResults.flatMap((f) => f.assertionResults) })
      } catch (e) {
        reject(new Error(`the child vitest for ${name} left no report: ${String(error ?? e)}`))
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  })
}

/** One child at a time here (each runs real processes; the machine has 2 cores). */
let queue: Promise<unknown> = Promise.resolve()
const results = new Map<string, ReturnType<typeof runBroken>>()
const resultOf = (name: string) => {
  let r = results.get(name)
  if (r === undefined) {
    r = queue.then(() => runBroken(name))
    queue = r.catch(() => undefined)
    results.set(name, r)
  }
  return r
}

const probe = (name: string, make: (context: LauncherContext) => ReturnType<typeof real>, p: Probe) => {
  let seen: string | undefined
  const common = makeConformanceContext({ name: `probe:${name}`, makeLauncher: make, timeouts: { eventMs: 4_000, killTimeoutMs: 300, graceMs: 200 } })
  return runConformanceTest(common, (h) => Effect.map(p(h, make), (s) => void (seen = s)), { skipLeakChecks: true }).then(
    () => seen,
    (error: unknown) => {
      if (seen !== undefined) return seen
      throw error
    }
  )
}

const names = Object.keys(brokenProcessLaunchers)

describe("the conformance suite catches broken process backends", { concurrent: true }, () => {
  for (const name of names) {
    const broken = brokenProcessLaunchers[name]!
    it(`${name} (point ${broken.point}): caught by ${broken.group} > "${broken.test}…"`, async () => {
      const result = await resultOf(name)
      expect(result.success, `the suite passed the broken backend ${name}`).toBe(false)
      const failed = result.tests.filter((t) => t.status === "failed")
      const hit = failed.find((t) => t.ancestorTitles[1] === broken.group && t.title.includes(broken.test))
      expect(hit, `expected "${broken.group} > …${broken.test}…" among ${JSON.stringify(failed.map((t) => t.title))}`).toBeDefined()
      expect(hit!.failureMessages.join("\n"), "the failure names the broken promise").toContain(`broken promise "${hit!.title}"`)
      expect(hit!.failureMessages.join("\n")).not.toMatch(/the test body did not finish within/)
    }, 300_000)
  }
})

describe("each broken process backend misbehaves, by a direct probe", () => {
  const probes = [...new Set(names.map((n) => brokenProcessLaunchers[n]!.probe))]
  it(`the unbroken process backend passes all ${probes.length} probes`, async () => {
    for (const p of probes) expect(await probe("base", real, p)).toBeUndefined()
  }, 120_000)

  for (const name of names) {
    it(`${name}: the probe sees it misbehave`, async () => {
      const broken = brokenProcessLaunchers[name]!
      expect(await probe(name, broken.make as never, broken.probe), `the probe saw nothing wrong with ${name}`).toBeTypeOf("string")
    }, 30_000)
  }
})
