/**
 * The Docker backend against its own promise (docs/SECURITY.md): Docker jobs
 * are untrusted. Job-controlled Docker options are an allowlist (fuzzed: no
 * other key passes validate, and the container body built from what passes
 * adds no privilege, mount or device); on the real engine, a container sees
 * only its own socket directory and job directory, credentials appear in
 * `docker inspect` only in the environment and are removed from the job's
 * process.env, and links planted as log.txt / _process_rc.txt are not followed.
 */
import type { JobMeta } from "@flexec/core"
import { Effect, Exit } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { containerBody, createDockerExecutor, jobSpecKeys, makeDockerLauncher } from "../src/index.js"
import { checkJobSpec } from "../src/internal/spec.js"
import { cleanupRoots, dockerReady, makeRequest, makeRoot, removeRunContainers, runId, runLabels, socketPath, testImage, testUser } from "./helpers.js"
import { waitForStarted, waitUntil } from "@flexec/testing"

const LONG = process.env.FLEXEC_FUZZ_LONG === "1"
const counts = { cases: 0, faults: 0, passed: 0, refused: 0, leaks: 0 }
afterAll(async () => {
  console.log(
    `security: docker cases=${counts.cases} faults-injected=${counts.faults} validate-passed=${counts.passed} validate-refused=${counts.refused} leaks=${counts.leaks}`
  )
  await removeRunContainers()
  cleanupRoots()
})

const SITE = "site1"
const launcher = makeDockerLauncher({
  image: testImage,
  docker: { socketPath: "/nonexistent/docker.sock" },
  allowedImages: ["flexec-node:*"]
})

const hostileKeys = [
  "privileged", "Privileged", "HostConfig", "Binds", "Mounts", "mounts", "volumes", "Devices", "devices", "CapAdd", "cap_add",
  "SecurityOpt", "NetworkMode", "network", "pid", "PidMode", "ipc", "IpcMode", "UsernsMode", "user", "User", "env", "Env", "cmd",
  "labels", "name", "runtime", "Runtime", "DeviceRequests", "Sysctls", "__proto__", "constructor", "toString", "Image "
]
const keyArb = fc.oneof(fc.constantFrom(...jobSpecKeys), fc.constantFrom(...hostileKeys), fc.string({ maxLength: 6 }))
const valueArb = fc.oneof(
  fc.constantFrom<unknown>(true, 0, 1, -1, 2.5, "", "64m", "1.5g", "1e9", testImage, "other:latest", "/", "/var/run/docker.sock:/var/run/docker.sock", ["sh"], [1]),
  fc.jsonValue({ maxDepth: 2 })
)
const dockerEntryArb = fc.oneof(fc.dictionary(keyArb, valueArb, { maxKeys: 4 }), valueArb)
const metaArb = fc
  .record(
    {
      site: fc.option(fc.dictionary(fc.constantFrom("docker", "process", "__proto__"), dockerEntryArb, { maxKeys: 2 }), { nil: undefined }),
      def: fc.option(fc.dictionary(fc.constantFrom("docker", "process"), dockerEntryArb, { maxKeys: 2 }), { nil: undefined }),
      memory: fc.option(fc.constantFrom<unknown>("512Mi", "1Gi", "1Ki", 1024, -5, "lots", 64 * 1024 * 1024), { nil: undefined }),
      byoc: fc.boolean()
    },
    { requiredKeys: ["byoc"] }
  )
  .map(({ byoc, def, memory, site }) => {
    const launcher_spec: Record<string, unknown> = {}
    if (site !== undefined) launcher_spec[SITE] = site
    if (def !== undefined) launcher_spec.default = def
    const meta: Record<string, unknown> = { job_id: "job-1", launcher_spec, byoc }
    if (memory !== undefined) meta.resource_spec = { [SITE]: { memory } }
    // through JSON text, as a deployed meta.json arrives
    return JSON.parse(JSON.stringify(meta)) as JobMeta
  })

const allowed = new Set<string>(jobSpecKeys)
const expectedHostKeys = new Set(["Init", "NetworkMode", "CapDrop", "SecurityOpt", "PidsLimit", "Mounts", "Memory", "MemorySwap", "NanoCpus", "ShmSize"])

describe("security: job-controlled docker options (no engine)", () => {
  it("arbitrary launcher_spec: validate passes only allowlisted keys, and the container body adds no privilege, mount or device", () => {
    const root = makeRoot()
    fs.mkdirSync(path.join(root, "ch"), { mode: 0o700 })
    const channel = {
      dir: path.join(root, "ch"),
      socketName: "s",
      socketPath: path.join(root, "ch", "s"),
      url: `unix://${path.join(root, "ch", "s")}`,
      token: "tok",
      connectInProcess: () => {
        throw new Error("no")
      }
    }
    const request = makeRequest({ root, jobId: "job-1", script: "", channel })
    fc.assert(
      fc.property(metaArb, (meta) => {
        counts.cases++
        counts.faults++
        let failure: { _tag: string } | undefined
        try {
          failure = runSyncExit(launcher.validate!(meta, SITE))
        } catch (error) {
          counts.leaks++
          throw error
        }
        if (failure !== undefined) {
          expect(failure._tag).toBe("InvalidJobMeta")
          counts.refused++
          return
        }
        counts.passed++
        for (const where of ["default", SITE]) {
          const entry = (meta.launcher_spec as Record<string, Record<string, unknown>> | undefined)?.[where]?.docker
          if (typeof entry === "object" && entry !== null) for (const key of Object.keys(entry)) expect(allowed.has(key)).toBe(true)
        }
        const checked = checkJobSpec(meta, SITE)
        expect(checked._tag).toBe("Right")
        if (checked._tag !== "Right") return
        const body = containerBody({
          request,
          image: checked.spec.image ?? testImage,
          spec: checked.spec,
          user: testUser,
          network: "none",
          shareStartup: false,
          shareLocal: false,
          workerModulePath: "/opt/flexec/worker.cjs",
          workerNodePath: "/opt/flexec/node_modules",
          defaultContainerOptions: undefined
        })
        const host = body.HostConfig as Record<string, unknown>
        for (const key of Object.keys(host)) expect(expectedHostKeys.has(key), key).toBe(true)
        expect(host.CapDrop).toEqual(["ALL"])
        expect(host.SecurityOpt).toContain("no-new-privileges")
        expect(host.NetworkMode).toBe("none")
        const mounts = host.Mounts as Array<{ Type: string; Source?: string; Target: string }>
        expect(mounts.map((m) => m.Source ?? m.Type)).toEqual(["tmpfs", request.paths.jobDir, channel.dir])
        expect(body.User).toBe(`${testUser.uid}:${testUser.gid}`)
        expect(body.Image).toMatch(/^flexec-node:/)
        for (const key of ["Privileged", "CapAdd", "Devices", "Binds", "PidMode", "IpcMode", "UsernsMode", "VolumesFrom", "Runtime"]) {
          expect(host[key], key).toBeUndefined()
        }
        if (meta.byoc !== true) expect(body.Entrypoint).toEqual([])
      }),
      { numRuns: LONG ? 250_000 : 5_000 }
    )
  }, 120_000)
})

/** The failure of a validate, or undefined when it passed; a defect is rethrown. */
const runSyncExit = (effect: Effect.Effect<void, { readonly _tag: string }>): { _tag: string } | undefined => {
  const exit = Effect.runSyncExit(effect)
  if (Exit.isSuccess(exit)) return undefined
  if (exit.cause._tag === "Fail") return exit.cause.error
  throw new Error(`validate died: ${String(exit.cause)}`)
}

/** GET on the Engine API (the same JSON as `docker inspect`). */
const engineGet = (p: string) =>
  new Promise<unknown>((resolve, reject) => {
    const req = http.get({ socketPath, path: p }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (d: string) => (body += d))
      res.on("end", () => resolve(JSON.parse(body)))
    })
    req.on("error", reject)
  })

const SECRETS = { token: "FLTOKEN-dock3r-0a1b2c", tokenSignature: "FLSIG-dock3r-3d4e5f", ssid: "FLSSID-dock3r-77" }

const probeApp = (victimHostPath: string) => `
const fs = require("node:fs")
const early = { auth: process.env.FLEXEC_JOB_AUTH_TOKEN, token: process.env.FLEXEC_CHANNEL_TOKEN }
const { runJob } = require("@flexec/core/worker")
const list = (dir) => { try { return fs.readdirSync(dir).sort() } catch (e) { return "error:" + e.code } }
runJob({
  run: async (ctx) => {
    ctx.setStats("probe", {
      received: [early.auth, typeof early.token],
      leftover: ["FLEXEC_CHANNEL_TOKEN", "FLEXEC_JOB_AUTH_TOKEN", "FLEXEC_JOB_TOKEN_SIGNATURE", "FLEXEC_JOB_SSID"].filter((k) => k in process.env),
      runFlexec: list("/run/flexec"),
      workspace: list("/var/tmp/flexec/workspace"),
      dockerSock: fs.existsSync("/var/run/docker.sock") || fs.existsSync("/run/docker.sock"),
      uid: process.getuid()
    })
    await new Promise((resolve) => ctx.signal.aborted ? resolve() : ctx.signal.addEventListener("abort", resolve))
    return 0
  },
  handlers: {
    probe: {
      plant: () => {
        for (const name of ["log.txt", "_process_rc.txt"]) { fs.rmSync(name, { force: true }); fs.symlinkSync(${JSON.stringify(victimHostPath)}, name) }
        console.log("y".repeat(4096))
        return "planted"
      },
      exit: (m) => { setTimeout(() => process.exit(m.payload), 10); return "bye" }
    }
  }
})
`

const ready = dockerReady("security.test.ts")

describe.skipIf(!ready)("security: Docker jobs on the real engine [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("a container sees only its own socket dir and job dir, gets no privilege, and credentials show only in its environment", async () => {
    const root = makeRoot()
    const workspace = path.join(root, "ws")
    const victim = path.join(root, "victim.txt")
    fs.writeFileSync(victim, "0\n")
    fs.chmodSync(root, 0o755)
    const deploy = (jobId: string) => {
      const appDir = path.join(workspace, jobId, "app_site1")
      fs.mkdirSync(appDir, { recursive: true })
      fs.writeFileSync(path.join(workspace, jobId, "meta.json"), JSON.stringify({ job_id: jobId }))
      fs.writeFileSync(path.join(appDir, "main.js"), probeApp(victim))
      fs.chmodSync(path.join(workspace, jobId), 0o777)
    }
    deploy("job-a")
    deploy("job-b")
    const executor = await createDockerExecutor({
      client: { clientName: "site1", ...SECRETS },
      image: testImage,
      docker: { socketPath },
      containerUser: testUser,
      instanceId: `test-${runId}-sec`,
      runtimeDir: path.join(root, "rt"),
      labels: runLabels,
      killTimeoutMs: 2000,
      graceMs: 5000
    })
    try {
      await executor.startApp({ jobId: "job-a", args: { workspace } })
      await executor.startApp({ jobId: "job-b", args: { workspace } })
      type Probe = {
        received: Array<string>
        leftover: Array<string>
        runFlexec: Array<string> | string
        workspace: Array<string> | string
        dockerSock: boolean
        uid: number
      }
      const probeOf = async (jobId: string): Promise<Probe> => {
        await waitForStarted(executor, jobId, 60_000)
        return waitUntil(`${jobId}'s probe`, async () => ((await executor.getRunInfo(jobId)) as { probe?: Probe }).probe, 60_000, 50)
      }
      const a = await probeOf("job-a")
      await probeOf("job-b")
      counts.cases++
      expect(a.received).toEqual([SECRETS.token, "string"])
      expect(a.leftover).toEqual([])
      // its own socket dir only (one socket), its own job dir only, no engine socket
      expect(Array.isArray(a.runFlexec) && a.runFlexec.length).toBe(1)
      expect(a.workspace).toEqual(["job-a"])
      expect(a.dockerSock).toBe(false)
      expect(a.uid).toBe(testUser.uid)

      const containers = (await engineGet(
        `/containers/json?filters=${encodeURIComponent(JSON.stringify({ label: [`flexec.instance=test-${runId}-sec`] }))}`
      )) as Array<{ Id: string }>
      expect(containers.length).toBe(2)
      for (const { Id } of containers) {
        const inspect = (await engineGet(`/containers/${Id}/json`)) as {
          Config: { Env: Array<string>; Labels: Record<string, string> } & Record<string, unknown>
          HostConfig: Record<string, unknown>
          Mounts: Array<{ Type: string; Source: string; Destination: string }>
        }
        // credentials: in Config.Env and nowhere else
        const { Env, ...config } = inspect.Config
        const rest = JSON.stringify({ ...inspect, Config: config })
        for (const secret of Object.values(SECRETS)) {
          expect(Env.some((e) => e.includes(secret))).toBe(secret === SECRETS.token || secret === SECRETS.tokenSignature || secret === SECRETS.ssid)
          if (rest.includes(secret)) counts.leaks++
          expect(rest).not.toContain(secret)
        }
        const channelToken = Env.find((e) => e.startsWith("FLEXEC_CHANNEL_TOKEN="))!.split("=")[1]!
        expect(rest).not.toContain(channelToken)
        // no privilege, device or extra mount
        expect(inspect.HostConfig.Privileged).toBe(false)
        expect(inspect.HostConfig.CapAdd ?? null).toBeNull()
        expect(inspect.HostConfig.CapDrop).toEqual(["ALL"])
        expect(inspect.HostConfig.SecurityOpt).toContain("no-new-privileges")
        expect(inspect.HostConfig.Devices ?? []).toEqual([])
        expect(inspect.HostConfig.NetworkMode).toBe("none")
        const jobId = inspect.Config.Labels["flexec.job_id"]!
        const channelDir = inspect.Config.Labels["flexec.channel_dir"]!
        expect(inspect.Mounts.map((m) => m.Destination).sort()).toEqual(["/run/flexec", `/var/tmp/flexec/workspace`, `/var/tmp/flexec/workspace/${jobId}`].sort())
        expect(inspect.Mounts.find((m) => m.Destination === "/run/flexec")!.Source).toBe(channelDir)
        // the socket dir: per job, 0700, owned by the container user
        const stat = fs.lstatSync(channelDir)
        expect(stat.isDirectory() && !stat.isSymbolicLink()).toBe(true)
        expect(stat.mode & 0o777).toBe(0o700)
        expect(stat.uid).toBe(testUser.uid)
      }

      // links planted by the untrusted job as log.txt and _process_rc.txt
      counts.faults += 2
      await executor.sendToJob({ jobId: "job-a", channel: "probe", topic: "plant", message: { headers: {}, payload: undefined }, timeout: 10_000 })
      await executor.sendToJob({ jobId: "job-a", channel: "probe", topic: "exit", message: { headers: {}, payload: 5 }, timeout: 10_000 })
      const outcome = await executor.awaitCompletion("job-a")
      expect(outcome.exit.code).toBe(5)
      expect(outcome.returnCode).toBe(1)
      expect(fs.readFileSync(victim, "utf8")).toBe("0\n")
      await executor.abortApp("job-b")
      for (const jobId of ["job-a", "job-b"]) {
        const log = path.join(workspace, jobId, "log.txt")
        const text = fs.existsSync(log) && !fs.lstatSync(log).isSymbolicLink() ? fs.readFileSync(log, "utf8") : ""
        for (const secret of Object.values(SECRETS)) expect(text).not.toContain(secret)
      }
    } finally {
      await executor.close()
    }
  }, 120_000)
})
