/**
 * The conformance group expected to catch the broken launcher named by
 * FLEXEC_BROKEN (run by conformance.broken.test.ts in a child vitest; skipped
 * otherwise). Only that group is registered: every group runs alone.
 */
import { describe, it } from "vitest"
import * as groups from "../../src/conformance/groups/index.js"
import { makeConformanceContext } from "../../src/index.js"
import { brokenLaunchers } from "./launchers.js"
import { groupsByName } from "./run.js"

const name = process.env.FLEXEC_BROKEN

if (name === undefined) {
  it.skip("runs only with FLEXEC_BROKEN=<name> (see conformance.broken.test.ts)", () => undefined)
} else {
  const broken = brokenLaunchers[name]
  if (broken === undefined) throw new Error(`no broken launcher ${name}`)
  const register = groupsByName(groups)[broken.group]
  if (register === undefined) throw new Error(`no group ${broken.group}`)
  const common = makeConformanceContext({ name: `broken:${name}`, makeLauncher: broken.make, timeouts: { testMs: 8_000, eventMs: 3_000, processGoneMs: 2_000 } })
  // the top describe of conformanceSuite, with one group in it
  describe(`broken:${name}`, () => register(common))
}
