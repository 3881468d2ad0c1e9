import { defineConfig } from "tsup"

export default defineConfig([
  {
    entry: { index: "src/index.ts", promise: "src/promise/index.ts" },
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    // no `clean`: the build script empties dist first; tsup's clean in this config's
    // .d.ts build would delete the worker config's worker.d.ts/.d.cts (they run in parallel)
    shims: true,
    target: "node20",
    removeNodeProtocol: false,
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
    removeNodeProtocol: false,
    noExternal: [/^\./]
  }
])
