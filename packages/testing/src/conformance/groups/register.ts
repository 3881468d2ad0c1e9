/**
 * How a group registers its tests: a vitest test per promise, run in a fresh
 * harness, whose failure names the promise; a skip names the missing capability.
 *
 * @internal
 *
 * @since 0.1.0
 */
import type { Capabilities } from "@flexec/core"
import { Effect, Scope } from "effect"
import { describe, it } from "../../internal/vitest.js"
import type { Harness, HarnessOptions } from "../harness.js"
import { runTest, vitestTimeout } from "../harness.js"
import type { ConformanceContext, ConformanceOptions } from "../context.js"
import { makeContext } from "../context.js"

/** A test body: runs in a fresh harness, in its own scope. */
export type Body = (h: Harness) => Effect.Effect<void, unknown, Scope.Scope>

/** The context of a group: an already resolved one, or options to resolve. */
export type GroupInput = ConformanceContext | ConformanceOptions

/** The context a group runs with: its input if already resolved, else its options resolved. */
export const contextOf = (input: GroupInput): ConformanceContext => ("runId" in input ? input : makeContext(input))

/** A test's failure names the promise it checks (its title) before the detail. */
const namingPromise = (name: string) => (error: unknown): never => {
  const e = error instanceof Error ? error : new Error(String(error))
  const [first = "", ...rest] = String(e.message).split("\n")
  const named = new Error([`broken promise "${name}": ${first}`, ...rest].join("\n"), { cause: error })
  named.stack = `${named.message}\n${(e.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l)).join("\n")}`
  throw named
}

/** Registers `name` as a vitest test running `body` in a fresh harness; its failure names the promise. */
export const test = (common: ConformanceContext, name: string, body: Body, options?: HarnessOptions) =>
  it(name, () => runTest(common, (h) => Effect.scoped(body(h)), options).catch(namingPromise(name)), vitestTimeout(common))

/** Registers `name`, or `it.skip` naming the missing (or, on this host, unavailable) capability. */
export const testWith = (
  common: ConformanceContext,
  caps: Capabilities,
  capability: keyof Capabilities | ReadonlyArray<keyof Capabilities>,
  name: string,
  body: Body,
  options?: HarnessOptions
) => {
  const needed = typeof capability === "string" ? [capability] : capability
  const missing = needed.find((c) => caps[c] !== true)
  if (missing !== undefined) return it.skip(`${name} [skipped: capabilities.${missing}=${String(caps[missing] ?? false)}]`, () => undefined)
  const unavailable = needed.find((c) => common.unavailable[c] !== undefined)
  if (unavailable !== undefined) {
    return it.skip(`${name} [skipped: capabilities.${unavailable} unavailable on this host: ${common.unavailable[unavailable]}]`, () => undefined)
  }
  return test(common, name, body, options)
}


/** Registers a group's `describe` whose tests are registered once the launcher's capabilities are read. */
export const withCaps = (common: ConformanceContext, name: string, register: (caps: Capabilities) => void) =>
  describe(name, async () => {
    register(await common.capabilities())
  })
