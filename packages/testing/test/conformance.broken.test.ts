/**
 * The suite must fail on broken backends: for each launcher of test/broken, the
 * group expected to catch it runs in a child vitest, which must fail, and the
 * expected test must be among the failures with a message naming its promise.
 * Each broken launcher is also shown to misbehave by a direct probe (which the
 * unbroken launcher passes), so a "caught" cannot come from a broken harness.
 */
import { Effect } from "effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { makeConformanceContext, runConformanceTest } from "../src/index.js"
import type { Broken } from "./broken/launchers.js"
import { baseLauncher, brokenLaunchers } from "./broken/launchers.js"
import type { BrokenRun } from "./broken/run.js"
import { limited, runBroken } from "./broken/run.js"

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const names = Object.keys(brokenLaunchers)
const run = limited(2)
const results = new Map<string, Promise<BrokenRun>>()
const resultOf = (name: string) => {
  let r = results.get(name)
  if (r === undefined) {
    r = run(() => runBroken(packageDir, "test/broken/broken-suite.test.ts", name))
    results.set(name, r)
  }
  return r
}

/** Runs a probe in a fresh harness on `make`'s launcher. */
const probe = (name: string, broken: Pick<Broken, "make" | "probe">) => {
  let seen: string | undefined
  const common = makeConformanceContext({ name: `probe:${name}`, makeLauncher: broken.make, timeouts: { eventMs: 4_000 } })
  return runConformanceTest(common, (h) => Effect.map(broken.probe(h), (s) => void (seen = s)), { skipLeakChecks: true }).then(
    () => seen,
    // a broken launcher may also fail the harness's cleanup: what the probe saw stands
    (error: unknown) => {
      if (seen !== undefined) return seen
      throw error
    }
  )
}

/** Asserts the child run caught `name` in its group and test, with a message naming the promise. */
export const expectCaught = (name: string, broken: Pick<Broken, "group" | "test">, result: BrokenRun) => {
  expect(result.success, `the suite passed the broken launcher ${name}`).toBe(false)
  expect(result.code).not.toBe(0)
  const failed = result.tests.filter((t) => t.status === "failed")
  const titles = failed.map((t) => `${t.ancestorTitles.slice(1).join(" > ")} > ${t.title}`)
  const hit = failed.find((t) => t.ancestorTitles[1] === broken.group && t.title.includes(broken.test))
  expect(hit, `expected "${broken.group} > …${broken.test}…" among the failures: ${JSON.stringify(titles)}`).toBeDefined()
  expect(hit!.ancestorTitles[0]).toBe(`broken:${name}`)
  expect(hit!.failureMessages.join("\n"), "the failure names the broken promise").toContain(`broken promise "${hit!.title}"`)
  expect(hit!.failureMessages.join("\n")).not.toMatch(/the test body did not finish within/)
}

describe("the conformance suite catches broken launchers", { concurrent: true }, () => {
  it("keeps at least thirty broken launchers (and packages/executor-process keeps more)", () => {
    expect(names.length).toBeGreaterThanOrEqual(30)
  })

  for (const name of names) {
    const broken = brokenLaunchers[name]!
    it(`${name} (point ${broken.point}): caught by ${broken.group} > "${broken.test}…"`, async () => {
      expectCaught(name, broken, await resultOf(name))
    }, 180_000)
  }
})

describe("each broken launcher misbehaves, by a direct probe", () => {
  const pairs = new Map<string, Pick<Broken, "make" | "probe">>()
  const ids = new Map<unknown, number>()
  const id = (x: unknown) => (ids.has(x) ? ids.get(x)! : (ids.set(x, ids.size), ids.size - 1))
  for (const n of names) {
    const b = brokenLaunchers[n]!
    const make = b.baseline ?? baseLauncher
    pairs.set(`${id(b.probe)}:${id(make)}`, { make, probe: b.probe })
  }
  it(`the unbroken launchers pass all ${pairs.size} probes`, async () => {
    for (const [key, pair] of pairs) expect(await probe("base", pair), `probe ${key} on an unbroken launcher`).toBeUndefined()
  }, 120_000)

  for (const name of names) {
    it(`${name}: the probe sees it misbehave`, async () => {
      const seen = await probe(name, brokenLaunchers[name]!)
      expect(seen, `the probe saw nothing wrong with ${name}`).toBeTypeOf("string")
    }, 30_000)
  }
})
