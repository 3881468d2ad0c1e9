/**
 * A parent that calls `process.exit()` without closing its executor (a real
 * process, test/support/adopt-parent.ts): its container does not outlive it
 * (the launcher's `'exit'` hook force-removes it), nor does its channel
 * directory — unless the site chose `onParentExit: "leave"`.
 */
import { conformanceEchoFixture, deployConformanceJob, mockClient } from "@flexec/testing"
import { Cause, Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { makeDockerClient } from "../src/DockerClient.js"
import { cleanupRoots, dockerReady, makeRoot, pollUntil, removeRunContainers, runId, runLabels, socketPath, testImage } from "./helpers.js"
import { spawnParent } from "./support/spawn-parent.js"
import type { SpawnedParent } from "./support/spawn-parent.js"

const ready = dockerReady("parent-exit.test.ts")
const client = makeDockerClient({ socketPath })
const parents: Array<SpawnedParent> = []

afterAll(async () => {
  for (const p of parents) await p.kill()
  await removeRunContainers()
  cleanupRoots()
})

const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> =>
  Effect.runPromiseExit(effect).then((exit) => {
    if (Exit.isSuccess(exit)) return exit.value
    throw new Error(Cause.pretty(exit.cause))
  })

/** Starts a parent whose job is Started, then lets it exit as `then` says; resolves once it has exited. */
const exitingParent = async (name: string, then: "exit" | "exit-leave") => {
  const root = makeRoot()
  const workspace = path.join(root, "ws")
  const runtimeDir = path.join(root, "rt")
  const instanceId = `test-${runId}-${name}`
  const jobId = `job-${name}`
  const job = await run(deployConformanceJob({ workspace, jobId, clientName: mockClient().clientName, fixture: "long-task" as typeof conformanceEchoFixture }))
  const parent = spawnParent({ workspace, runtimeDir, instanceId, jobId, image: testImage, socketPath, job, client: mockClient(), labels: runLabels, then })
  parents.push(parent)
  const code = await new Promise<number | null>((resolve) => parent.child.once("close", (c) => resolve(c)))
  expect(parent.output(), parent.output()).toContain("STARTED")
  expect(code).toBe(0)
  return { instanceId, runtimeDir }
}

const containersOf = (instanceId: string) => run(client.listByLabels({ "flexec.instance": instanceId }))
const channelDirs = (runtimeDir: string) => (fs.existsSync(path.join(runtimeDir, "ch")) ? fs.readdirSync(path.join(runtimeDir, "ch")) : [])

describe.skipIf(!ready)("a parent that exits without close() [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("onParentExit \"abort\" (the default): its container is removed by the time it has exited, and its channel directory", async () => {
    const { instanceId, runtimeDir } = await exitingParent("exit", "exit")
    // the hook ran synchronously inside the parent's exit: nothing to wait for
    expect(await containersOf(instanceId)).toEqual([])
    expect(channelDirs(runtimeDir)).toEqual([])
  }, 120_000)

  it("onParentExit \"leave\": the container keeps running, for a later parent to adopt or reap", async () => {
    const { instanceId } = await exitingParent("leave", "exit-leave")
    const left = await containersOf(instanceId)
    expect(left).toHaveLength(1)
    await pollUntil("the container to be running", async () => (await run(client.inspect(left[0]!.id))).running, 10_000)
  }, 120_000)
})
