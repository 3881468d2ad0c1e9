/** The engine's preparation of a job, without an engine: checks, paths, argv, the LaunchRequest. */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, TestClock } from "effect"
import * as path from "node:path"
import type { ChannelInfo, JobLauncher } from "../src/JobLauncher.js"
import { launchRequestOf, prepareJob } from "../src/internal/engine/prepare.js"
import { settingsOf } from "../src/internal/engine/settings.js"
import { deploy, tempDir } from "./support/setup.js"

const launcher: JobLauncher = {
  name: "test",
  capabilities: { signals: true, oomDetection: false, recover: false, adopt: false, logs: false },
  launch: () => Effect.die("not launched here")
}

const factsFor = (runtimeDir: string, options: Record<string, unknown> = {}) => ({
  options: { client: { clientName: "site-1" }, ...options },
  client: { clientName: "site-1" } as never,
  instanceId: "i1",
  runtimeDir,
  backendSlack: Duration.seconds(1)
})

const channel: ChannelInfo = {
  dir: "/run/ch/x",
  socketName: "ch.sock",
  socketPath: "/run/ch/x/ch.sock",
  url: "unix:///run/ch/x/ch.sock",
  token: "t",
  connectInProcess: () => {
    throw new Error("not here")
  }
}

describe("prepare (no engine)", () => {
  it.scoped("a deployed job: its paths, the site's argv resolved, and a LaunchRequest whose env carries the channel and the job", () =>
    Effect.gen(function* () {
      const workspace = yield* tempDir("flexec-prep-")
      deploy(workspace, "job-1")
      const facts = factsFor("/rt", { command: ["node", "{appDir}/main.js", "--job", "{jobId}"], env: { SITE_VAR: "x" }, reconnectWindowMs: 120_000 })
      const job = yield* prepareJob(facts, launcher, { jobId: "job-1", args: { workspace, set: { lr: 0.1 } } })
      expect(job.paths).toEqual({
        workspace,
        jobDir: path.join(workspace, "job-1"),
        appDir: path.join(workspace, "job-1", "app_site-1"),
        startup: path.join(workspace, "startup"),
        local: path.join(workspace, "local"),
        logFile: path.join(workspace, "job-1", "log.txt"),
        rcFile: path.join(workspace, "job-1", "_process_rc.txt"),
        runtimeDir: "/rt"
      })
      expect(job.command).toEqual(["node", path.join(workspace, "job-1", "app_site-1", "main.js"), "--job", "job-1"])
      const request = launchRequestOf(
        { ...facts, killTimeout: Duration.seconds(2), workerRuntime: { modulePath: "/w/worker.cjs", nodePath: "/w", dir: "/w/x", bundleFile: "/w/x/b", cacheFile: "/w/x/c" } },
        job,
        channel,
        "channel-secret"
      )
      expect(request.env).toMatchObject({
        FLEXEC_PARENT_URL: channel.url,
        FLEXEC_CHANNEL_TOKEN: "channel-secret",
        FLEXEC_JOB_ID: "job-1",
        FLEXEC_CLIENT_NAME: "site-1",
        FLEXEC_INSTANCE_ID: "i1",
        FLEXEC_SET: JSON.stringify({ lr: 0.1 }),
        FLEXEC_WORKER_MODULE: "/w/worker.cjs",
        FLEXEC_RECONNECT_MS: "120000",
        SITE_VAR: "x"
      })
      expect(request.command).toBe(job.command)
      expect(Duration.toMillis(request.killTimeout)).toBe(2000)
      expect(request.env.FLEXEC_CHANNEL_CERT_SHA256).toBeUndefined()

      // a transport's job variables (the TLS pin) join the env; only FLEXEC_CHANNEL_* names, never over the token
      const pin = "ab".repeat(32)
      const overTls = launchRequestOf(
        { ...facts, killTimeout: Duration.seconds(2), workerRuntime: { modulePath: "/w/worker.cjs", nodePath: "/w", dir: "/w/x", bundleFile: "/w/x/b", cacheFile: "/w/x/c" } },
        job,
        { ...channel, url: "tls://node-7:4433", env: { FLEXEC_CHANNEL_CERT_SHA256: pin, FLEXEC_CHANNEL_TOKEN: "forged", PATH: "/evil", FLEXEC_JOB_ID: "other" } },
        "channel-secret"
      )
      expect(overTls.env).toMatchObject({ FLEXEC_PARENT_URL: "tls://node-7:4433", FLEXEC_CHANNEL_CERT_SHA256: pin, FLEXEC_CHANNEL_TOKEN: "channel-secret", FLEXEC_JOB_ID: "job-1" })
      expect(overTls.env.PATH).toBe(request.env.PATH)
    }))

  it.scoped("what is refused, before anything exists: missing meta, an unsendable set, an allocation without its manager, a backend's hanging validate", () =>
    Effect.gen(function* () {
      const workspace = yield* tempDir("flexec-prep-")
      deploy(workspace, "job-1")
      const facts = factsFor("/rt")
      const fail = (params: Parameters<typeof prepareJob>[2], l: JobLauncher = launcher) =>
        Effect.flip(prepareJob(facts, l, params))
      expect(yield* fail({ jobId: "nope", args: { workspace } })).toMatchObject({ _tag: "JobMetaMissing", jobId: "nope" })
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      expect(yield* fail({ jobId: "job-1", args: { workspace, set: cyclic } })).toMatchObject({ _tag: "InvalidJobMeta", issues: "args.set must be JSON-serializable" })
      expect(yield* fail({ jobId: "job-1", args: { workspace }, allocatedResource: { gpu: ["0"] } })).toMatchObject({ _tag: "InvalidJobMeta" })
      const hangs: JobLauncher = { ...launcher, validate: () => Effect.never }
      const pending = yield* Effect.fork(Effect.exit(prepareJob(facts, hangs, { jobId: "job-1", args: { workspace } })))
      yield* TestClock.adjust("1 second")
      const hung = yield* Fiber.join(pending)
      expect(Exit.isFailure(hung)).toBe(true)
      expect(hung).toMatchObject({ cause: { error: { _tag: "LaunchFailed", jobId: "job-1" } } })
    }))
})

describe("settings", () => {
  it("reconnectWindowMs must be a positive integer (a TypeError naming it otherwise)", () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => settingsOf({ client: { clientName: "site-1" }, reconnectWindowMs: bad })).toThrow(/reconnectWindowMs must be a positive integer/)
    }
    expect(() => settingsOf({ client: { clientName: "site-1" }, reconnectWindowMs: 60_000 })).not.toThrow()
  })
})
