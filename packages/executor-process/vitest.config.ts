import { defineConfig, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

// These files start real processes by the hundred (chaos, conformance, crash recovery): on a
// 2-core machine, running them side by side starves each other's jobs. One file at a time.
export default mergeConfig(shared, defineConfig({ test: { fileParallelism: false } }))
