// Run by the consumer check with vitest installed: the CommonJS build of @flexec/testing, loaded with
// require, registers conformance groups into this file's vitest (the lazy loader's shared instance).
import { createRequire } from "node:module"
const require = createRequire(import.meta.url)
const { InMemoryJobLauncher, conformancePrograms, lifecycleTests } = require("@flexec/testing")

lifecycleTests({ name: "in-memory (CJS build)", makeLauncher: () => InMemoryJobLauncher.make({ programs: conformancePrograms }) })
