/**
 * `conformanceSuite`: registers every group against a launcher factory.
 *
 * @since 0.1.0
 */
import { describe } from "../internal/vitest.js"
import type { ConformanceContext, ConformanceOptions } from "./context.js"
import { makeContext } from "./context.js"
import { allGroups } from "./groups/index.js"

/**
 * Registers the conformance suite (one `describe` named `options.name`, a
 * `describe` per group) against the launchers `makeLauncher` builds, each
 * wrapped by `makeJobExecutor`. Capabilities are read from the launcher;
 * passing `capabilities` throws.
 *
 * @example
 * conformanceSuite({ name: "my-backend", makeLauncher: () => MyLauncher.make() })
 */
export const conformanceSuite = (options: ConformanceOptions): ConformanceContext => {
  const common = makeContext(options)
  describe(options.name, () => {
    for (const group of allGroups) group(common)
  })
  return common
}
