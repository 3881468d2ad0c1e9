// The ES-module side of the consumer check: every package imports without vitest, and the
// mocks and the in-memory backend are usable from a plain script.
import { Effect } from "effect"
import { makeJobExecutor } from "@flexec/core"
import { runJob } from "@flexec/core/worker"
import { toPromiseExecutor } from "@flexec/core/promise"
import { InMemoryJobLauncher, MockResourceManager, mockClient, fixtureArgv } from "@flexec/testing"

const resources = new MockResourceManager()
const check = await Effect.runPromise(resources.checkResources({}))
const launcher = InMemoryJobLauncher.unsafeMake()
console.log(JSON.stringify({
  runJob: typeof runJob,
  toPromiseExecutor: typeof toPromiseExecutor,
  makeJobExecutor: typeof makeJobExecutor,
  client: mockClient().clientName,
  check: check.ok,
  launcher: launcher.name,
  argv: fixtureArgv("echo").length
}))
