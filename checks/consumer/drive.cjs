// Run by the consumer check in a directory that installed the packed packages and no vitest:
// CommonJS drives a mock resource manager and the in-memory backend through the real engine.
"use strict"
const fs = require("node:fs")
const os = require("node:os")
const path = require("node:path")
const { Effect, Layer } = require("effect")
const { ClientExecutor, makeJobExecutor } = require("@flexec/core")
const { toPromiseExecutor } = require("@flexec/core/promise")
const { InMemoryJobLauncher, MockResourceManager, conformanceSuite, deployJob, mockClient, waitForStarted, waitUntil, fixtureFacts } = require("@flexec/testing")

const main = async () => {
  let vitest = "absent"
  try {
    require.resolve("vitest/package.json")
    vitest = "present"
  } catch {
    // not installed: what a consumer of the packed packages should see
  }
  // without vitest, the suite says what to install instead of failing obscurely
  let suite = "registered"
  try {
    conformanceSuite({ name: "x", makeLauncher: () => InMemoryJobLauncher.make() })
  } catch (error) {
    suite = String(error && error.message)
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-consumer-"))
  const client = mockClient()
  const layer = Layer.scoped(
    ClientExecutor,
    Effect.flatMap(InMemoryJobLauncher.make(), (launcher) =>
      makeJobExecutor({ client, launcher, runtimeDir: path.join(root, "rt"), graceMs: 200, killTimeoutMs: 200 })
    )
  )
  const executor = await toPromiseExecutor(layer)
  const workspace = path.join(root, "ws")
  const job = await Effect.runPromise(deployJob({ workspace, jobId: "job-1", clientName: client.clientName, fixture: "echo" }))
  const resources = new MockResourceManager()
  const { token } = await Effect.runPromise(resources.checkResources({ cpu: 1 }))
  const allocatedResource = await Effect.runPromise(resources.allocateResources({ cpu: 1 }, token))
  await executor.startApp({ jobId: "job-1", jobMeta: job.meta, args: { workspace, set: job.set }, resourceManager: resources, allocatedResource, token })
  await waitForStarted(executor, "job-1", 10_000)
  const reply = await executor.sendToJob({
    jobId: "job-1", channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: { headers: {}, payload: { hi: "consumer" } }, timeout: 5000
  })
  await executor.abortApp("job-1")
  const outcome = await executor.awaitCompletion("job-1")
  await waitUntil("no job registered", async () => ((await executor.jobs()).length === 0 ? true : undefined), 5000)
  await executor.close()
  fs.rmSync(root, { recursive: true, force: true })
  console.log(JSON.stringify({ vitest, suite, reply: reply.payload, returnCode: outcome.returnCode, freed: resources.freedTokens().get(token) ?? 0 }))
}
main().catch((error) => {
  console.error(error)
  process.exit(1)
})
