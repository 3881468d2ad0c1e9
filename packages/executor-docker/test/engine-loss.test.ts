import type { JobHandle } from "@flexec/core"
import { Duration, Effect, Exit, Scope } from "effect"
import * as net from "node:net"
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
  socketPath,
  testImage,
  testUser
} from "./helpers.js"

const ready = dockerReady("engine-loss.test.ts")

/** A unix-socket proxy the test owns in front of the engine; it can cut every connection. */
const makeProxy = async (proxyPath: string) => {
  const sockets = new Set<net.Socket>()
  let answering!: () => void
  /** Resolves once the engine started answering a wait request (its headers came back). */
  const waitAnswering = new Promise<void>((resolve) => (answering = resolve))
  const server = net.createServer((downstream) => {
    const upstream = net.connect(socketPath)
    sockets.add(downstream)
    sockets.add(upstream)
    let waiting = false
    downstream.on("data", (d: Buffer) => {
      if (d.toString("latin1").includes("/wait?")) waiting = true
      upstream.write(d)
    })
    upstream.on("data", (d: Buffer) => {
      downstream.write(d)
      if (waiting) answering()
    })
    downstream.on("close", () => upstream.destroy())
    upstream.on("close", () => downstream.destroy())
    downstream.on("error", () => {})
    upstream.on("error", () => {})
  })
  await new Promise<void>((resolve) => server.listen(proxyPath, resolve))
  return {
    waitAnswering,
    cut: () => {
      server.close()
      for (const s of sockets) s.destroy()
    }
  }
}

afterAll(async () => {
  await removeRunContainers()
  cleanupRoots()
})

describe.skipIf(!ready)("the engine going away [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("a connection cut in the middle of the wait is BackendUnavailable from wait, not an exit", async () => {
    const root = makeRoot()
    const socket = await makeTestSocket(path.join(root, "ch"))
    const proxyPath = path.join(root, "proxy.sock")
    const proxy = await makeProxy(proxyPath)
    const launcher = makeDockerLauncher({ image: testImage, docker: { socketPath: proxyPath }, containerUser: testUser })
    const request = makeRequest({ root, jobId: "job-cut", script: "setInterval(() => {}, 1000)", channel: socket.info })
    const scope = Effect.runSync(Scope.make())
    try {
      const handle: JobHandle = await Effect.runPromise(launcher.launch(request).pipe(Scope.extend(scope)))
      const waited = Effect.runPromiseExit(handle.wait)
      await proxy.waitAnswering
      proxy.cut()
      const exit = await waited
      expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag).toBe("BackendUnavailable")
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") expect(exit.cause.error.detail).toContain(proxyPath)
      // the next ask fails the same way (the engine behind it is unreachable now)
      const polled = await Effect.runPromiseExit(handle.poll)
      expect(Exit.isFailure(polled) && polled.cause._tag === "Fail" && polled.cause.error._tag).toBe("BackendUnavailable")
      // and the job really is still running
      const direct = makeDockerClient({ socketPath })
      const state = await Effect.runPromise(direct.inspect(String(handle.info!.containerId)))
      expect(state.running).toBe(true)
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void).pipe(Effect.timeout(Duration.seconds(40)), Effect.ignore))
      await socket.close()
    }
  })

  it("an engine that does not answer at all is BackendUnavailable naming its socket", async () => {
    const root = makeRoot()
    const socket = await makeTestSocket(path.join(root, "ch"))
    const missing = path.join(root, "no-engine.sock")
    const launcher = makeDockerLauncher({ image: testImage, docker: { socketPath: missing }, containerUser: testUser })
    const exit = await Effect.runPromiseExit(
      Effect.scoped(launcher.launch(makeRequest({ root, jobId: "job-none", script: "", channel: socket.info })))
    )
    await socket.close()
    expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag).toBe("BackendUnavailable")
    if (Exit.isFailure(exit) && exit.cause._tag === "Fail") expect(exit.cause.error.message).toContain(`unix://${missing}`)
  })
})
