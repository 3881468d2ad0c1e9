/**
 * The conformance suite of @flexec/testing against DockerJobLauncher on the
 * real engine (image flexec-node:test, the worker fixture as `main.js`, run by
 * the backend's default command `node {appDir}/main.js`).
 *
 * Capabilities are the backend's own. None of the suite's groups exercises
 * `gpus` (this machine has no GPU); `adopt` is not exercised either (the
 * recovery group tests `recover: "reap"`).
 *
 * Leak checks beyond the suite's per-test ones: when each test's launcher is
 * released, no socket directory is left under its runtime dir (the recovery
 * test's second runtime dir included); after the suite, no container labelled
 * with this run is left (asked of the engine).
 */
import { conformanceSuite } from "@flexec/testing"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { makeDockerClient } from "../src/DockerClient.js"
import { makeDockerLauncher } from "../src/index.js"
import { dockerReady, socketPath, testImage, testUser } from "./helpers.js"

const ready = dockerReady("conformance.test.ts")
const client = makeDockerClient({ socketPath })

/** Socket directories found under a runtime dir when its launcher was released. */
const leftSocketDirs: Array<string> = []

const runLabel = (runId: string) => ({ "flexec.test-run": runId })
const containersOf = (runId: string) => Effect.runPromise(client.listByLabels(runLabel(runId)))

describe.skipIf(!ready)("docker conformance", () => {
  const common = conformanceSuite({
    name: "docker",
    makeLauncher: ({ runtimeDir }) =>
      Effect.acquireRelease(
        Effect.sync(() => makeDockerLauncher({ image: testImage, docker: { socketPath }, containerUser: testUser })),
        () =>
          Effect.sync(() => {
            const ch = path.join(runtimeDir, "ch")
            if (fs.existsSync(ch)) for (const name of fs.readdirSync(ch)) leftSocketDirs.push(path.join(ch, name))
          })
      ),
    // Short enough for a few dozen containers; `docker stop` rounds the kill timeout up to whole seconds.
    timeouts: { graceMs: 300, killTimeoutMs: 300, startTimeoutMs: 15_000, shortStartTimeoutMs: 1_500, testMs: 30_000 }
  })

  afterAll(async () => {
    // Whatever a failing test left: removed, so the engine stays clean (the test below reports it).
    const left = await containersOf(common.runId).catch(() => [])
    await Effect.runPromise(Effect.forEach(left, (c) => Effect.ignore(client.remove(c.id)), { discard: true }))
  })

  describe("not exercised here", () => {
    // The suite has no GPU test; the DeviceRequest a job's GPUs become is checked in validate.test.ts.
    it.skip("capabilities.gpus: a job gets exactly its allocated GPUs [skipped: this machine has no GPU]", () => undefined)
  })

  describe("leaks after the suite", () => {
    it("no container labelled with this run is left, per the engine", async () => {
      const left = await containersOf(common.runId)
      expect(left.map((c) => `${c.names.join(",")} (${c.state})`)).toEqual([])
    })

    it("no socket directory was left when a test's launcher was released", () => {
      expect(leftSocketDirs).toEqual([])
    })
  })
})
