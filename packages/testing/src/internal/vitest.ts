/**
 * vitest, loaded when the conformance suite first uses it, never when
 * `@flexec/testing` loads: mocks, fixtures and the in-memory backend work
 * under any runner (jest, node:test, mocha) or none, without vitest installed,
 * from ESM and CommonJS.
 *
 * vitest ships as ES modules only (its CommonJS entry throws), so it is
 * loaded with `require` of its ESM entry (Node ≥ 20.19 loads ES modules
 * synchronously), which shares Node's module cache with the `import` of the
 * test file: the same vitest instance, collecting into the same suite.
 *
 * @internal
 */
import { createRequire } from "node:module"
import * as path from "node:path"
import type * as Vitest from "vitest"

/** The parts of vitest the suite uses. */
export type VitestApi = Pick<typeof Vitest, "describe" | "it" | "expect">

let loaded: VitestApi | undefined

const load = (): VitestApi => {
  if (loaded !== undefined) return loaded
  const require = createRequire(import.meta.url)
  let manifest: string
  try {
    manifest = require.resolve("vitest/package.json")
  } catch {
    throw new Error(
      "@flexec/testing: conformanceSuite needs vitest (an optional peer dependency): npm i -D vitest@~3.2.0. " +
        "Mocks, fixtures and InMemoryJobLauncher need no vitest."
    )
  }
  const pkg = require(manifest) as { exports?: { ".": { import?: { default?: string } } } }
  const entry = path.join(path.dirname(manifest), pkg.exports?.["."]?.import?.default ?? "./dist/index.js")
  try {
    loaded = require(entry) as VitestApi
  } catch (error) {
    const code = (error as { code?: string }).code
    if (code === "ERR_REQUIRE_ESM" || code === "ERR_REQUIRE_ASYNC_MODULE") {
      throw new Error(`@flexec/testing: conformanceSuite loads vitest synchronously, which needs Node ≥ 20.19 on 20.x, ≥ 22.12 on 22.x (this is ${process.version})`)
    }
    throw error
  }
  return loaded
}

/** A function-valued export of vitest that is loaded when first called or read. */
const lazy = <K extends keyof VitestApi>(key: K): VitestApi[K] =>
  new Proxy(function () {} as unknown as VitestApi[K], {
    apply: (_target, self, args) => Reflect.apply(load()[key] as (...a: Array<unknown>) => unknown, self, args),
    get: (_target, property) => Reflect.get(load()[key] as object, property)
  })

/** vitest's `describe`, loaded on first use. */
export const describe: VitestApi["describe"] = lazy("describe")
/** vitest's `it`, loaded on first use. */
export const it: VitestApi["it"] = lazy("it")
/** vitest's `expect`, loaded on first use. */
export const expect: VitestApi["expect"] = lazy("expect")
