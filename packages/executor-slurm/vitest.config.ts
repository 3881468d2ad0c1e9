import { defineConfig, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

// Every file submits real jobs to the one local cluster (16 declared CPUs): one file at a time.
export default mergeConfig(shared, defineConfig({ test: { fileParallelism: false } }))
