import { defineConfig, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

// --expose-gc: memory checks read retained memory after a forced collection
// (test/support/memory.ts), never a figure that depends on when the GC ran.
export default mergeConfig(shared, defineConfig({ test: { poolOptions: { forks: { execArgv: ["--expose-gc"] } } } }))
