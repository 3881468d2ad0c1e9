/**
 * The conformance suite against the broken launcher named by FLEXEC_BROKEN
 * (run by conformance.broken.test.ts in a child vitest; skipped otherwise).
 */
import { it } from "vitest"
import { conformanceSuite } from "../../src/index.js"
import type { BrokenName } from "./launchers.js"
import { brokenLaunchers } from "./launchers.js"

const name = process.env.FLEXEC_BROKEN as BrokenName | undefined

if (name === undefined) {
  it.skip("runs only with FLEXEC_BROKEN=<name> (see conformance.broken.test.ts)", () => undefined)
} else {
  const broken = brokenLaunchers[name]
  if (broken === undefined) throw new Error(`no broken launcher ${name}`)
  conformanceSuite({ name: `broken:${name}`, makeLauncher: broken.make, timeouts: { testMs: 4_000, eventMs: 2_000 } })
}
