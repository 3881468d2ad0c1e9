import { defineConfig } from "tsup"

export default defineConfig([
  {
    entry: { index: "src/index.ts", promise: "src/promise/index.ts" },
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    clean: true,
    shims: true,
    target: "node20",
    external: ["effect"]
  },
  {
    // The worker runtime: one self-contained file, node: built-ins only.
    entry: { worker: "src/worker/index.ts" },
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    splitting: false,
    shims: false,
    target: "node20",
    noExternal: [/^\./]
  }
])
