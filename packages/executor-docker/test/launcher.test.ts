import { openJobChannel } from "@flexec/core"
import type { JobHandle, JobMeta, LogLine } from "@flexec/core"
import { Duration, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { makeDockerClient } from "../src/DockerClient.js"
import { makeDockerLauncher } from "../src/index.js"
import type { DockerLauncherOptions } from "../src/index.js"
import {
  cleanupRoots,
  dockerReady,
  makeRequest,
  makeRoot,
  makeTestSocket,
  pollUntil,
  removeRunContainers,
  runLabels,
  socketPath,
  testImage,
  testUser
} from "./helpers.js"

const ready = dockerReady("launcher.test.ts")
/** The test image without the worker runtime layer. */
const baseImage = process.env.FLEXEC_BASE_IMAGE ?? "flexec-node:base"
const require = createRequire(import.meta.url)
const client = makeDockerClient({ socketPath })
const launcherWith = (options: DockerLauncherOptions = {}) =>
  makeDockerLauncher({ image: testImage, docker: { socketPath }, containerUser: testUser, ...options })

/** Launches in a fresh scope (closed by the caller). */
const launchIn = async (options: DockerLauncherOptions, request: Parameters<ReturnType<typeof launcherWith>["launch"]>[0]) => {
  const scope = Effect.runSync(Scope.make())
  const exit = await Effect.runPromiseExit(launcherWith(options).launch(request).pipe(Scope.extend(scope)))
  return { scope, exit, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const handleOf = (exit: Exit.Exit<JobHandle, unknown>): JobHandle => {
  if (Exit.isFailure(exit)) throw new Error(`launch failed: ${JSON.stringify(exit.cause)}`)
  return exit.value
}

const errorOf = (exit: Exit.Exit<unknown, unknown>): { _tag: string; [k: string]: unknown } => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (failure === undefined) throw new Error(`not a failure: ${JSON.stringify(exit.cause)}`)
  return failure as { _tag: string }
}

/** Collects the handle's log lines in the background. */
const collect = (handle: JobHandle) => {
  const lines: Array<LogLine> = []
  const fiber = Effect.runFork(Stream.runForEach(handle.logs!, (l) => Effect.sync(() => lines.push(l))))
  return { lines, done: () => Effect.runPromise(Fiber.join(fiber)) }
}

const inspectRaw = (id: string) =>
  fetchJson(`/containers/${id}/json`) as Promise<{ Config: any; HostConfig: any; Mounts: Array<any>; State: any }>

/** A raw Engine API GET (to read what dockerode's typed inspect leaves out). */
const fetchJson = async (urlPath: string): Promise<unknown> => {
  const http = await import("node:http")
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: urlPath, method: "GET" }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (d: string) => (body += d))
      res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${res.statusCode} ${body}`))))
    })
    req.on("error", reject)
    req.end()
  })
}

const containerGone = async (id: string) =>
  (await Effect.runPromise(client.inspect(id).pipe(Effect.as(false), Effect.catchAll(() => Effect.succeed(true)))))

afterAll(async () => {
  await removeRunContainers()
  cleanupRoots()
})

describe.skipIf(!ready)("DockerJobLauncher against a real engine [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("runs the job hardened, with its dirs and socket mounted, and keeps its exit code, logs and log file", async () => {
    const root = makeRoot()
    const socket = await makeTestSocket(path.join(root, "ch"))
    const script = `
      const net = require("node:net")
      const fs = require("node:fs")
      console.log("hello stdout")
      console.error("hello stderr")
      fs.writeFileSync(process.env.FLEXEC_JOB_DIR + "/out.txt", "written by the job")
      let tmpOk = false
      try { fs.writeFileSync("/tmp/probe", "x"); tmpOk = true } catch {}
      const url = process.env.FLEXEC_PARENT_URL
      const s = net.connect(url.slice("unix://".length), () => {
        s.end(JSON.stringify({
          cwd: process.cwd(), uid: process.getuid(), gid: process.getgid(), tmpOk,
          env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("FLEXEC_") || k === "NODE_PATH" || k === "NODE_OPTIONS")),
          argv: process.argv.slice(1)
        }))
      })
      s.on("close", () => setTimeout(() => process.exit(7), 10))
    `
    const meta: JobMeta = { job_id: "job-run", resource_spec: { site1: { memory: "512Mi", num_of_cpus: 1 } } }
    const request = makeRequest({ root, jobId: "job-run", script, channel: socket.info, meta })
    const { exit, close } = await launchIn({}, request)
    const handle = handleOf(exit)
    const logs = collect(handle)
    const id = String(handle.info!.containerId)
    try {
      const jobExit = await Effect.runPromise(handle.wait)
      expect(jobExit).toEqual({ code: 7, signal: null, oomKilled: false, lost: false })
      expect(await Effect.runPromise(handle.poll)).toEqual(Option.some(jobExit))

      // what the job saw
      const seen = JSON.parse(await socket.first)
      const ws = "/var/tmp/flexec/workspace"
      expect(seen.cwd).toBe(`${ws}/job-run`)
      expect([seen.uid, seen.gid]).toEqual([testUser.uid, testUser.gid])
      expect(seen.tmpOk).toBe(true)
      expect(seen.argv).toEqual([`${ws}/job-run/app_site1/main.js`])
      expect(seen.env).toMatchObject({
        FLEXEC_PARENT_URL: "unix:///run/flexec/ch.sock",
        FLEXEC_WORKSPACE: ws,
        FLEXEC_JOB_DIR: `${ws}/job-run`,
        FLEXEC_STARTUP_DIR: `${ws}/startup`,
        FLEXEC_WORKER_MODULE: "/opt/flexec/node_modules/@flexec/core/dist/worker.cjs",
        FLEXEC_JOB_ID: "job-run",
        NODE_PATH: "/opt/flexec/node_modules",
        NODE_OPTIONS: "--max-old-space-size=384"
      })
      expect(fs.readFileSync(path.join(request.paths.jobDir, "out.txt"), "utf8")).toBe("written by the job")

      // how the container was made
      const info = await inspectRaw(id)
      expect(info.Config.Labels).toMatchObject({
        ...runLabels,
        "flexec.job_id": "job-run",
        "flexec.site": "site1",
        "flexec.instance": request.instanceId,
        "flexec.channel_dir": socket.info.dir
      })
      expect(info.Config.User).toBe(`${testUser.uid}:${testUser.gid}`)
      expect(info.HostConfig.CapDrop).toEqual(["ALL"])
      expect(info.HostConfig.SecurityOpt).toContain("no-new-privileges")
      expect(info.HostConfig.PidsLimit).toBe(1024)
      expect(info.HostConfig.Init).toBe(true)
      expect(info.HostConfig.NetworkMode).toBe("none")
      expect(info.HostConfig.Memory).toBe(512 * 1024 ** 2)
      expect(info.HostConfig.MemorySwap).toBe(512 * 1024 ** 2)
      expect(info.HostConfig.NanoCpus).toBe(1e9)
      expect(info.HostConfig.Binds ?? []).toEqual([])
      const mounts = (info.Mounts as Array<{ Type: string; Destination: string; RW: boolean; Source: string }>)
        .map((m) => ({ type: m.Type, target: m.Destination, rw: m.RW }))
        .sort((a, b) => a.target.localeCompare(b.target))
      expect(mounts).toEqual([
        { type: "bind", target: "/run/flexec", rw: false },
        { type: "tmpfs", target: ws, rw: true },
        { type: "bind", target: `${ws}/job-run`, rw: true }
      ])
      for (const m of info.Mounts) expect(String(m.Source)).not.toContain("docker.sock")
      expect(info.Config.Env.join("\n")).not.toContain("docker.sock")

      // its output, demultiplexed, in the stream and in log.txt
      await logs.done()
      expect(logs.lines.map((l) => [l.stream, l.line])).toEqual(
        expect.arrayContaining([["stdout", "hello stdout"], ["stderr", "hello stderr"]])
      )
      const logText = fs.readFileSync(request.paths.logFile, "utf8")
      expect(logText).toContain("hello stdout\n")
      expect(logText).toContain("hello stderr\n")
      expect(fs.statSync(request.paths.logFile).uid).toBe(process.getuid!())
      expect(fs.statSync(request.paths.jobDir).uid).toBe(testUser.uid)
    } finally {
      await close()
      await socket.close()
    }
    // removed once the outcome is read and the job's scope closed
    expect(await containerGone(id)).toBe(true)
  })

  it("reports an OOM kill under a small memory limit", async () => {
    const root = makeRoot()
    const socket = await makeTestSocket(path.join(root, "ch"))
    const script = `const keep = []; for (;;) { keep.push(Buffer.alloc(8 * 1024 * 1024, 1)) }`
    const meta: JobMeta = { job_id: "job-oom", resource_spec: { site1: { memory: "64Mi" } } }
    const { exit, close } = await launchIn({}, makeRequest({ root, jobId: "job-oom", script, channel: socket.info, meta }))
    try {
      const jobExit = await Effect.runPromise(handleOf(exit).wait)
      expect(jobExit.oomKilled).toBe(true)
      expect(jobExit.signal).toBe("SIGKILL")
      expect(jobExit.code).toBeNull()
    } finally {
      await close()
      await socket.close()
    }
  })

  it("terminate stops a job that ignores SIGTERM: SIGKILL after killAfter", async () => {
    const root = makeRoot()
    const socket = await makeTestSocket(path.join(root, "ch"))
    const script = `process.on("SIGTERM", () => console.log("ignoring SIGTERM")); console.log("ready"); setInterval(() => {}, 1000)`
    const { exit, close } = await launchIn({}, makeRequest({ root, jobId: "job-term", script, channel: socket.info }))
    const handle = handleOf(exit)
    const logs = collect(handle)
    try {
      await pollUntil("the job to print ready", () => (logs.lines.some((l) => l.line === "ready") ? true : undefined))
      expect(await Effect.runPromise(handle.poll)).toEqual(Option.none())
      await Effect.runPromise(handle.terminate({ killAfter: Duration.seconds(1) }))
      const jobExit = await Effect.runPromise(handle.wait.pipe(Effect.timeout(Duration.seconds(30))))
      expect(jobExit.signal).toBe("SIGKILL")
      await logs.done()
      expect(logs.lines.map((l) => l.line)).toContain("ignoring SIGTERM")
      // idempotent once it ended
      await Effect.runPromise(handle.terminate())
    } finally {
      await close()
      await socket.close()
    }
  })

  it("a missing image is ImageNotFound naming it, and nothing is created", async () => {
    const root = makeRoot()
    const socket = await makeTestSocket(path.join(root, "ch"))
    const meta: JobMeta = { job_id: "job-noimg", launcher_spec: { site1: { docker: { image: "flexec-missing:never" } } } }
    const { exit, close } = await launchIn({}, makeRequest({ root, jobId: "job-noimg", script: "", channel: socket.info, meta }))
    await close()
    await socket.close()
    const error = errorOf(exit)
    expect(error._tag).toBe("ImageNotFound")
    expect(error.image).toBe("flexec-missing:never")
    const left = await Effect.runPromise(client.listByLabels({ ...runLabels, "flexec.job_id": "job-noimg" }))
    expect(left).toEqual([])
  })

  it("a start that fails removes the container it created (LaunchFailed with the engine's reason)", async () => {
    const root = makeRoot()
    const socket = await makeTestSocket(path.join(root, "ch"))
    // Joining the network of a container that is not running passes create and fails start.
    const holder = await Effect.runPromise(
      client.createContainer(`flexec-test-holder-${Date.now()}`, {
        Image: testImage,
        Cmd: ["node", "-e", ""],
        Labels: runLabels,
        HostConfig: { NetworkMode: "none" }
      })
    )
    const { exit, close } = await launchIn(
      { network: `container:${holder}` },
      makeRequest({ root, jobId: "job-badstart", script: "", channel: socket.info })
    )
    const error = errorOf(exit)
    expect(error._tag).toBe("LaunchFailed")
    expect(String(error.reason)).toMatch(/could not start the container.*non running container/)
    await close()
    await socket.close()
    const left = await Effect.runPromise(client.listByLabels({ ...runLabels, "flexec.job_id": "job-badstart" }))
    expect(left).toEqual([])
    await Effect.runPromise(client.remove(holder))
  })

  it("refuses a log.txt that is a symlink (the parent never writes through the job's paths)", async () => {
    const root = makeRoot()
    const socket = await makeTestSocket(path.join(root, "ch"))
    const request = makeRequest({ root, jobId: "job-link", script: "", channel: socket.info })
    const target = path.join(root, "victim.txt")
    fs.writeFileSync(target, "untouched")
    fs.symlinkSync(target, request.paths.logFile)
    const { exit, close } = await launchIn({}, request)
    await close()
    await socket.close()
    const error = errorOf(exit)
    expect(error._tag).toBe("LaunchFailed")
    expect(String(error.reason)).toMatch(/log/)
    expect(fs.readFileSync(target, "utf8")).toBe("untouched")
  })

  it("mountWorkerRuntime: an image without the runtime gets the host's @flexec/core read-only", async () => {
    const root = makeRoot()
    const socket = await makeTestSocket(path.join(root, "ch"))
    const script = `
      const w = require("@flexec/core/worker")
      let readOnly = false
      try { require("fs").writeFileSync(require.resolve("@flexec/core/package.json"), "x") } catch (e) { readOnly = e.code === "EROFS" }
      console.log(JSON.stringify({ runJob: typeof w.runJob, module: require.resolve(process.env.FLEXEC_WORKER_MODULE), readOnly }))
    `
    const modulePath = require.resolve("@flexec/core/worker")
    const request = {
      ...makeRequest({ root, jobId: "job-mount", script, channel: socket.info }),
      workerRuntime: { modulePath, nodePath: path.dirname(path.dirname(path.dirname(modulePath))) }
    }
    const { exit, close } = await launchIn({ image: baseImage, mountWorkerRuntime: true }, request)
    try {
      const handle = handleOf(exit)
      const logs = collect(handle)
      expect(await Effect.runPromise(handle.wait)).toMatchObject({ code: 0 })
      await logs.done()
      expect(JSON.parse(logs.lines.find((l) => l.line.startsWith("{"))!.line)).toEqual({
        runJob: "function",
        module: "/opt/flexec/node_modules/@flexec/core/dist/worker.cjs",
        readOnly: true
      })
    } finally {
      await close()
      await socket.close()
    }
  })

  it("runs the image's worker runtime: the job connects to a real channel and exits 0", async () => {
    const root = makeRoot()
    const script = `
      const { runJob } = require(process.env.FLEXEC_WORKER_MODULE)
      runJob({ run: async (ctx) => { console.log("job", ctx.jobId, "in", ctx.jobDir); return 0 } })
    `
    const scope = Effect.runSync(Scope.make())
    try {
      const channel = await Effect.runPromise(
        openJobChannel({
          jobId: "job-rt",
          token: "secret-token",
          dir: path.join(root, "ch"),
          onRequest: () => Option.none(),
          owner: testUser
        }).pipe(Scope.extend(scope))
      )
      const request = makeRequest({ root, jobId: "job-rt", script, channel: channel.info })
      const handle = await Effect.runPromise(launcherWith().launch(request).pipe(Scope.extend(scope)))
      const logs = collect(handle)
      await Effect.runPromise(channel.awaitConnected.pipe(Effect.timeout(Duration.seconds(20))))
      const jobExit = await Effect.runPromise(handle.wait)
      await logs.done()
      expect({ jobExit, lines: logs.lines.map((l) => l.line) }).toMatchObject({
        jobExit: { code: 0, signal: null },
        lines: expect.arrayContaining(["job job-rt in /var/tmp/flexec/workspace/job-rt"])
      })
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  })
})

