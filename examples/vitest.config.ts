import { defineConfig, mergeConfig } from "vitest/config"
import shared from "../vitest.shared.js"

// One file at a time: the examples start real processes and containers on a shared 2-core machine.
export default mergeConfig(shared, defineConfig({ test: { fileParallelism: false } }))
