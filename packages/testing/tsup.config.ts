import { defineConfig } from "tsup"

export default defineConfig([{
  entry: { index: "src/index.ts" },
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: true,
  clean: false,
  // import.meta.url in the CJS build: fixturePath is resolved relative to the bundle (dist/ → ../fixtures)
  shims: true,
  target: "node20",
  removeNodeProtocol: false,
  // fixtures/worker.cjs is shipped as it is, never bundled; core and its worker runtime stay imports
  external: ["@flexec/core", "@flexec/core/worker", "effect", "vitest", "@effect/vitest"]
}, {
  // the flexec-conformance command (package.json "bin" is ./bin/*.cjs, a committed loader of this file)
  entry: { bin: "src/bin.ts" },
  format: ["cjs"],
  dts: false,
  sourcemap: true,
  clean: false,
  target: "node20",
  removeNodeProtocol: false,
  banner: { js: "#!/usr/bin/env node" },
  external: ["@flexec/core", "@flexec/core/worker", "effect", "vitest", "vitest/node", "@effect/vitest"]
}])
