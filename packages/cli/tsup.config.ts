import { defineConfig } from "tsup"

// Two configs (the library and the bin); no `clean` here: the build script does `rm -rf dist && tsup`.
export default defineConfig([{
  entry: { index: "src/index.ts" },
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: true,
  clean: false,
  // import.meta.url in the CJS build (conformanceBin resolves @flexec/testing from here)
  shims: true,
  target: "node20",
  removeNodeProtocol: false
}, {
  // the flexec command (package.json "bin" is ./bin/*.cjs, a committed loader of this file)
  entry: { bin: "src/bin.ts" },
  format: ["cjs"],
  dts: false,
  sourcemap: true,
  clean: false,
  shims: true,
  target: "node20",
  removeNodeProtocol: false,
  banner: { js: "#!/usr/bin/env node" }
}])
