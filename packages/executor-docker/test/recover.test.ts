import { Duration, Effect, Exit, Scope } from "effect"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { makeDockerClient } from "../src/DockerClient.js"
import { makeDockerLauncher } from "../src/index.js"
import {
  cleanupRoots,
  dockerReady,
  makeRequest,
  makeRoot,
  makeTestSocket,
  removeRunContainers,
  runId,
  socketPath,
  testImage,
  testUser
} from "./helpers.js"

const ready = dockerReady("recover.test.ts")
const client = makeDockerClient({ socketPath })

afterAll(async () => {
  await removeRunContainers()
  cleanupRoots()
})

describe.skipIf(!ready)("recover [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("finds only this instance's containers, with their channel token and dir, and reaps them", async () => {
    const launcher = () => makeDockerLauncher({ image: testImage, docker: { socketPath }, containerUser: testUser })
    const mine = `test-${runId}-rec`
    const other = `test-${runId}-other`
    // A parent that "died": its scope is never closed while we recover.
    const deadParent = Effect.runSync(Scope.make())
    const root = makeRoot()
    const sockets = []
    const launched: Array<{ jobId: string; instanceId: string; dir: string; id: string }> = []
    try {
      for (const [jobId, instanceId] of [["job-a", mine], ["job-b", mine], ["job-c", other]] as const) {
        const socket = await makeTestSocket(path.join(root, `ch-${jobId}`))
        sockets.push(socket)
        const request = makeRequest({ root, jobId, instanceId, script: "setInterval(() => {}, 1000)", channel: socket.info })
        const handle = await Effect.runPromise(launcher().launch(request).pipe(Scope.extend(deadParent)))
        launched.push({ jobId, instanceId, dir: socket.info.dir, id: String(handle.info!.containerId) })
      }

      const found = await Effect.runPromise(launcher().recover!(mine))
      expect(found.map((j) => j.jobId).sort()).toEqual(["job-a", "job-b"])
      for (const job of found) {
        const origin = launched.find((l) => l.jobId === job.jobId)!
        expect(job.instanceId).toBe(mine)
        expect(job.channelToken).toBe("test-token")
        expect(job.channelDir).toBe(origin.dir)
        expect(await Effect.runPromise(job.handle.poll)).toMatchObject({ _tag: "None" })
      }

      // reap: terminate, read the outcome; the container goes once it is read
      for (const job of found) {
        await Effect.runPromise(job.handle.terminate({ killAfter: Duration.seconds(1) }))
        const exit = await Effect.runPromise(job.handle.wait.pipe(Effect.timeout(Duration.seconds(30))))
        expect(exit.signal).toBe("SIGTERM")
        const id = String(job.handle.info!.containerId)
        const gone = await Effect.runPromise(client.inspect(id).pipe(Effect.as(false), Effect.catchAll(() => Effect.succeed(true))))
        expect(gone).toBe(true)
        // the outcome stays readable
        expect(await Effect.runPromise(job.handle.wait)).toEqual(exit)
      }

      // the other instance's job was not touched
      const otherId = launched.find((l) => l.instanceId === other)!.id
      expect((await Effect.runPromise(client.inspect(otherId))).running).toBe(true)
      expect(await Effect.runPromise(launcher().recover!(`test-${runId}-nobody`))).toEqual([])
    } finally {
      await Effect.runPromise(Scope.close(deadParent, Exit.void))
      for (const s of sockets) await s.close()
    }
  })
})
