import { defineConfig, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

// Docker test files share one engine: run them one at a time.
export default mergeConfig(shared, defineConfig({ test: { fileParallelism: false } }))
