import { defineConfig, mergeConfig } from "vitest/config"
import shared from "../vitest.shared.js"

// npm pack + npm install in a fresh directory: minutes, not seconds, on a cold cache
export default mergeConfig(shared, defineConfig({ test: { testTimeout: 600_000, hookTimeout: 600_000 } }))
