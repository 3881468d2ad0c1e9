/**
 * The conformance group expected to catch the broken process backend named by
 * FLEXEC_BROKEN (run by conformance.broken.test.ts in a child vitest; skipped otherwise).
 */
import {
  controlTests,
  environmentTests,
  handleTests,
  launchAbortTests,
  lifecycleTests,
  logsTests,
  makeConformanceContext,
  outcomesTests,
  recoveryTests,
  treeTests,
  validateTests
} from "@flexec/testing"
import type { GroupInput } from "@flexec/testing"
import { describe, it } from "vitest"
import { brokenProcessLaunchers, staleRecord } from "./launchers.js"

const groups: Record<string, (input: GroupInput) => void> = {
  lifecycle: lifecycleTests,
  control: controlTests,
  outcomes: outcomesTests,
  logs: logsTests,
  tree: treeTests,
  handle: handleTests,
  environment: environmentTests,
  recovery: recoveryTests,
  "launch abort": launchAbortTests,
  validate: validateTests
}

const name = process.env.FLEXEC_BROKEN

if (name === undefined) {
  it.skip("runs only with FLEXEC_BROKEN=<name> (see conformance.broken.test.ts)", () => undefined)
} else {
  const broken = brokenProcessLaunchers[name]
  if (broken === undefined) throw new Error(`no broken process launcher ${name}`)
  const register = groups[broken.group]
  if (register === undefined) throw new Error(`no group ${broken.group}`)
  const common = makeConformanceContext({
    name: `broken:${name}`,
    makeLauncher: broken.make,
    staleRecord,
    timeouts: { testMs: 10_000, eventMs: 4_000, graceMs: 200, killTimeoutMs: 300, startTimeoutMs: 8_000, processGoneMs: 2_000 }
  })
  describe(`broken:${name}`, () => register(common))
}
