/**
 * Where jobs find `@flexec/core/worker` on the host.
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

const requireHere = createRequire(import.meta.url)

/** The absolute path of the CommonJS worker runtime (`@flexec/core/worker`). */
export const workerModulePath = (): string => requireHere.resolve("@flexec/core/worker")

/** The root directory of the `@flexec/core` package. */
export const corePackageRoot = (): string => path.dirname(requireHere.resolve("@flexec/core/package.json"))

/**
 * Makes `<runtimeDir>/node_modules/@flexec/core` a link to this package, so
 * `NODE_PATH=<runtimeDir>/node_modules` lets `require("@flexec/core/worker")` work.
 */
export const prepareWorkerRuntime = (runtimeDir: string): { modulePath: string; nodePath: string } => {
  const nodePath = path.join(runtimeDir, "node_modules")
  const scopeDir = path.join(nodePath, "@flexec")
  fs.mkdirSync(scopeDir, { recursive: true, mode: 0o700 })
  const link = path.join(scopeDir, "core")
  const target = corePackageRoot()
  let current: string | undefined
  try {
    current = fs.readlinkSync(link)
  } catch {
    current = undefined
  }
  if (current !== target) {
    fs.rmSync(link, { force: true, recursive: true })
    fs.symlinkSync(target, link, "dir")
  }
  return { modulePath: workerModulePath(), nodePath }
}
