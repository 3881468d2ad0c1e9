// Run by the consumer check with vitest installed: the ES module build of @flexec/testing registers
// conformance groups into this file's vitest.
import { InMemoryJobLauncher, conformancePrograms, messagingTests } from "@flexec/testing"

messagingTests({ name: "in-memory (ESM build)", makeLauncher: () => InMemoryJobLauncher.make({ programs: conformancePrograms }) })
