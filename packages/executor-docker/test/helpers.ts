/**
 * The one place Docker tests decide whether an engine is there, and the
 * fixtures they share: a per-run label, hand-built launch requests with a real
 * job directory and a real unix socket, and cleanup of what a run created.
 */
import type { ChannelInfo, JobId, JobMeta, LaunchRequest } from "@flexec/core"
import { Duration, Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { engineReady, waitUntil } from "@flexec/testing"
import { dockerProblem, makeDockerClient, resolveEndpoint } from "../src/DockerClient.js"

/** The image the tests run (built by `bash scripts/build-test-image.sh`). */
export const testImage = process.env.FLEXEC_TEST_IMAGE ?? "flexec-node:test"
/** The non-root user of the test image. */
export const testUser = { uid: Number(process.env.FLEXEC_TEST_UID ?? 1000), gid: Number(process.env.FLEXEC_TEST_GID ?? 1000) }
/** The engine the tests use (`DOCKER_HOST` or `/var/run/docker.sock`). */
export const socketPath = resolveEndpoint().socketPath ?? "/var/run/docker.sock"
/** Labels every container of this run carries. */
export const runId = `${process.pid}-${crypto.randomBytes(3).toString("hex")}`
export const runLabels = { "flexec.test-run": runId }

const problem = await Effect.runPromise(dockerProblem({ socketPath, image: testImage }))

/**
 * `true` when the engine answers and the test image exists. Otherwise the
 * Docker tests skip loudly, except with `FLEXEC_REQUIRE_DOCKER=1` (CI), where
 * this throws and the file fails.
 */
export const dockerReady = (file: string): boolean =>
  engineReady({ file, problem, what: `usable Docker engine at ${socketPath}`, how: howToStartDocker })

/** How to get an engine and the test image on this machine. */
export const howToStartDocker = "start one with `bash scripts/docker-up.sh && bash scripts/build-test-image.sh`"

/** Removes every container this run created (by its label); returns how many there were. */
export const removeRunContainers = async (): Promise<number> => {
  const client = makeDockerClient({ socketPath })
  return Effect.runPromise(
    Effect.gen(function* () {
      const list = yield* client.listByLabels(runLabels)
      yield* Effect.forEach(list, (c) => client.remove(c.id), { discard: true })
      return list.length
    }).pipe(Effect.catchAll(() => Effect.succeed(0)))
  )
}

/** A real unix socket the job connects to; collects what each connection sent. */
export interface TestSocket {
  readonly info: ChannelInfo
  /** Everything received on connections that have ended. */
  readonly received: Array<string>
  /** Resolves with the first complete connection's data. */
  readonly first: Promise<string>
  readonly close: () => Promise<void>
}

/** A socket dir (0700, chowned to `owner`) with a listening socket `ch.sock`. */
export const makeTestSocket = async (dir: string, owner = testUser): Promise<TestSocket> => {
  fs.mkdirSync(dir, { mode: 0o700 })
  const socketPath = path.join(dir, "ch.sock")
  const received: Array<string> = []
  let resolveFirst!: (s: string) => void
  const first = new Promise<string>((r) => (resolveFirst = r))
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    let data = ""
    socket.setEncoding("utf8")
    socket.on("data", (d: string) => (data += d))
    socket.on("close", () => {
      sockets.delete(socket)
      received.push(data)
      resolveFirst(data)
    })
    socket.on("error", () => {})
  })
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  fs.chownSync(dir, owner.uid, owner.gid)
  fs.chownSync(socketPath, owner.uid, owner.gid)
  return {
    info: {
      dir,
      socketName: "ch.sock",
      socketPath,
      url: `unix://${socketPath}`,
      token: "test-token",
      connectInProcess: () => {
        throw new Error("not in-process")
      }
    },
    received,
    first,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      })
  }
}

/** A fresh temporary root for one test (removed by `cleanupRoots`). */
const roots: Array<string> = []
export const makeRoot = (): string => {
  const root = fs.mkdtempSync("/tmp/fx-dk-")
  roots.push(root)
  return root
}
export const cleanupRoots = () => {
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true })
}

/** Parameters of `makeRequest`. */
export interface RequestParams {
  readonly root: string
  readonly jobId?: string
  readonly site?: string
  readonly instanceId?: string
  /** The job's `app_<site>/main.js`. */
  readonly script: string
  readonly meta?: JobMeta
  readonly channel: ChannelInfo
  readonly gpus?: ReadonlyArray<string>
  readonly commandTemplate?: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  readonly killTimeout?: Duration.DurationInput
}

/** A launch request over a real workspace under `root`. */
export const makeRequest = (p: RequestParams): LaunchRequest => {
  const jobId = (p.jobId ?? `job-${crypto.randomBytes(3).toString("hex")}`) as JobId
  const site = p.site ?? "site1"
  const workspace = path.join(p.root, "ws")
  const jobDir = path.join(workspace, jobId)
  const appDir = path.join(jobDir, `app_${site}`)
  fs.mkdirSync(appDir, { recursive: true })
  fs.writeFileSync(path.join(appDir, "main.js"), p.script)
  const meta: JobMeta = p.meta ?? { job_id: jobId }
  fs.writeFileSync(path.join(jobDir, "meta.json"), JSON.stringify(meta))
  const paths = {
    workspace,
    jobDir,
    appDir,
    startup: path.join(workspace, "startup"),
    local: path.join(workspace, "local"),
    logFile: path.join(jobDir, "log.txt"),
    rcFile: path.join(jobDir, "_process_rc.txt"),
    runtimeDir: path.join(p.root, "rt")
  }
  return {
    jobId,
    client: { clientName: site },
    site,
    instanceId: p.instanceId ?? `test-${runId}`,
    meta,
    paths,
    allocation: {},
    gpus: p.gpus ?? [],
    commandTemplate: p.commandTemplate,
    command: ["node", path.join(appDir, "main.js")],
    env: {
      PATH: process.env.PATH ?? "/usr/bin",
      LANG: "C.UTF-8",
      FLEXEC_PARENT_URL: p.channel.url,
      FLEXEC_CHANNEL_TOKEN: p.channel.token,
      FLEXEC_JOB_ID: jobId,
      FLEXEC_CLIENT_NAME: site,
      FLEXEC_WORKSPACE: workspace,
      FLEXEC_JOB_DIR: jobDir,
      FLEXEC_STARTUP_DIR: paths.startup,
      FLEXEC_SET: "{}",
      FLEXEC_WORKER_MODULE: "/host/path/worker.cjs",
      ...p.env
    },
    channel: p.channel,
    set: {},
    labels: runLabels,
    killTimeout: Duration.decode(p.killTimeout ?? Duration.seconds(2)),
    workerRuntime: { modulePath: "/host/path/worker.cjs", nodePath: "/host/path" }
  }
}

/** Polls `check` until it returns a value or the deadline passes. */
export const pollUntil = <A>(what: string, check: () => A | undefined | Promise<A | undefined>, timeoutMs = 20_000): Promise<A> =>
  waitUntil(what, check, timeoutMs, 50)
