import * as fs from "node:fs"
import * as os from "node:os"
import type { JobMeta } from "@flexec/core"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import * as path from "node:path"
import { afterAll } from "vitest"
import { resolveEndpoint } from "../src/DockerClient.js"
import { containerBody, DockerJobExecutor, dockerCapabilities, exitOfState, jobSpecKeys, makeDockerLauncher } from "../src/index.js"
import { checkJobSpec, imageMatcher, parseMemory, parseShmSize } from "../src/internal/spec.js"
import { cleanupRoots, makeRequest, makeRoot } from "./helpers.js"

afterAll(cleanupRoots)

const site = "site1"
const launcher = makeDockerLauncher({
  image: "flexec-node:test",
  docker: { socketPath: "/nonexistent/docker.sock" },
  allowedImages: ["flexec-node:*", "registry.example/fl/*", "plain"]
})
const dockerMeta = (docker: Record<string, unknown>, where = site, extra: Partial<JobMeta> = {}): JobMeta => ({
  job_id: "j1",
  launcher_spec: { [where]: { docker } },
  ...extra
})
const issues = (meta: JobMeta) =>
  Effect.runSync(
    launcher.validate!(meta, site).pipe(
      Effect.match({ onSuccess: () => undefined, onFailure: (e) => `${e._tag}: ${e.issues}` })
    )
  )

describe("validate: the job's docker keys are an allowlist", () => {
  it("accepts the allowed keys and ignores other backends' modes", () => {
    expect(issues(dockerMeta({ image: "flexec-node:test", num_of_gpus: 0, shm_size: "64m" }))).toBeUndefined()
    expect(issues({ job_id: "j1", launcher_spec: { [site]: { process: { command: ["x"], whatever: 1 } } } })).toBeUndefined()
    expect(issues({ job_id: "j1" })).toBeUndefined()
  })

  it("refuses any other key, naming it and the allowed ones, in the site's and in the default entry", () => {
    for (const where of [site, "default"]) {
      const problem = issues(dockerMeta({ image: "flexec-node:test", privileged: true }, where))
      expect(problem).toMatch(/^InvalidJobMeta: /)
      expect(problem).toContain(`launcher_spec.${where}.docker.privileged`)
      expect(problem).toContain(jobSpecKeys.join(", "))
    }
    // another site's entry is not this site's business
    expect(issues(dockerMeta({ privileged: true }, "other-site"))).toBeUndefined()
  })

  it("allows entrypoint only for a BYOC job", () => {
    expect(issues(dockerMeta({ entrypoint: ["/bin/run"] }))).toMatch(/entrypoint is allowed only for a BYOC job/)
    expect(issues(dockerMeta({ entrypoint: ["/bin/run"] }, site, { byoc: true }))).toBeUndefined()
    expect(issues(dockerMeta({ entrypoint: 3 }, site, { byoc: true }))).toMatch(/entrypoint must be a non-blank string or a non-empty array/)
  })

  it("checks num_of_gpus, shm_size, memory and num_of_cpus", () => {
    expect(issues(dockerMeta({ num_of_gpus: -1 }))).toMatch(/num_of_gpus must be a non-negative integer/)
    expect(issues(dockerMeta({ num_of_gpus: 1.5 }))).toMatch(/num_of_gpus/)
    expect(issues(dockerMeta({ shm_size: "64 MB" }))).toMatch(/shm_size "64 MB" must be integer bytes or match/)
    expect(issues(dockerMeta({ shm_size: -5 }))).toMatch(/shm_size/)
    expect(issues({ job_id: "j1", resource_spec: { [site]: { memory: "lots" } } })).toMatch(/resource_spec.site1.memory "lots"/)
    expect(issues({ job_id: "j1", resource_spec: { [site]: { memory: "1Mi" } } })).toMatch(/at least 6Mi/)
    expect(issues({ job_id: "j1", resource_spec: { [site]: { num_of_cpus: 0 } } })).toMatch(/num_of_cpus must be a positive number/)
    expect(issues({ job_id: "j1", resource_spec: { [site]: { memory: "512Mi", num_of_cpus: 0.5 } } })).toBeUndefined()
  })

  it("refuses images outside allowedImages; the site wins over default", () => {
    expect(issues(dockerMeta({ image: "evil/miner:latest" }))).toMatch(/image 'evil\/miner:latest' is not allowed by the site/)
    expect(issues(dockerMeta({ image: "registry.example/fl/trainer:3" }))).toBeUndefined()
    expect(issues(dockerMeta({ image: "plain" }))).toBeUndefined()
    const merged: JobMeta = {
      job_id: "j1",
      launcher_spec: { default: { docker: { image: "evil:1" } }, [site]: { docker: { image: "flexec-node:x" } } }
    }
    expect(issues(merged)).toBeUndefined()
    const defaultOnly: JobMeta = { job_id: "j1", launcher_spec: { default: { docker: { image: "evil:1" } } } }
    expect(issues(defaultOnly)).toMatch(/evil:1/)
  })
})

describe("validate: launcher_spec edge values as NVFlare takes them", () => {
  it("image: null is not set (the site's image is used); a blank or non-string image is refused naming the key and the rule", () => {
    expect(issues(dockerMeta({ image: null }))).toBeUndefined()
    const checked = checkJobSpec(dockerMeta({ image: null }), site)
    expect(checked._tag === "Right" && checked.spec.image).toBeUndefined()
    // a site's null overrides the default's image: not set, so the site's image
    const overridden = checkJobSpec({ launcher_spec: { default: { docker: { image: "plain" } }, [site]: { docker: { image: null } } } }, site)
    expect(overridden._tag === "Right" && overridden.spec.image).toBeUndefined()
    for (const bad of ["", "   ", 3, false, [], {}]) {
      const problem = issues(dockerMeta({ image: bad }))
      expect(problem).toMatch(/^InvalidJobMeta: launcher_spec.<site\|default>.docker.image must be a non-blank string/)
    }
  })

  it("shm_size beyond 2^63 − 1 is refused, as a number or a string, and the message stays short", () => {
    expect(issues(dockerMeta({ shm_size: "9223372036854775807" }))).toBeUndefined()
    for (const bad of ["9223372036854775808", "9".repeat(400), "8589934592g", 2 ** 63, Number.MAX_VALUE]) {
      const problem = issues(dockerMeta({ shm_size: bad }))
      expect(problem).toMatch(/^InvalidJobMeta: launcher_spec.<site\|default>.docker.shm_size .* at most 2\^63 − 1 bytes$/)
      expect(problem!.length).toBeLessThan(200)
    }
    // what reaches Docker is a finite number, never more than was asked
    expect(parseShmSize("9223372036854775807")).toBeLessThanOrEqual(2 ** 63 - 1024)
    expect(Number.isFinite(parseShmSize("8589934591g"))).toBe(true)
    expect(parseShmSize(2 ** 60)).toBe(2 ** 60)
    expect(parseShmSize("8.5g")).toBe(8.5 * 1024 ** 3)
    expect(parseShmSize("0.5gb")).toBe(512 * 1024 ** 2)
    for (const bad of ["8.", ".5g", "8bb", "abc", -1, true, [1], { a: 1 }]) expect(parseShmSize(bad)).toBeUndefined()
  })

  it("a memory limit beyond 2^63 − 1 is refused", () => {
    for (const bad of ["9".repeat(400), "9223372036854775808", "8Ei", "9000000000Gi"]) {
      expect(issues({ job_id: "j1", resource_spec: { [site]: { memory: bad } } })).toMatch(/resource_spec.site1.memory .* at most 2\^63 − 1 bytes/)
    }
  })

  it("entrypoint must be a non-blank string or a non-empty array of non-blank strings", () => {
    const byoc = (entrypoint: unknown) => issues(dockerMeta({ entrypoint }, site, { byoc: true }))
    expect(byoc("/bin/run")).toBeUndefined()
    expect(byoc(["/bin/sh", "-c", "run"])).toBeUndefined()
    for (const bad of ["", "   ", ["/bin/sh", "   "], [], [""], ["/bin/sh", 3], null]) {
      expect(byoc(bad)).toMatch(/^InvalidJobMeta: launcher_spec.<site\|default>.docker.entrypoint must be a non-blank string or a non-empty array of non-blank strings/)
    }
  })

  it("num_of_gpus must be an integer ≥ 0: booleans, strings, fractions, negatives and null are refused naming the value", () => {
    expect(issues(dockerMeta({ num_of_gpus: 0 }))).toBeUndefined()
    for (const bad of [true, "1", 1.5, -1, null]) {
      expect(issues(dockerMeta({ num_of_gpus: bad }))).toMatch(/docker.num_of_gpus must be a non-negative integer, got /)
    }
  })
})

describe("spec parsing", () => {
  it("parses shm_size as Docker does (binary units) and caps it at the memory limit", () => {
    expect(parseShmSize(1024)).toBe(1024)
    expect(parseShmSize("100")).toBe(100)
    expect(parseShmSize("2b")).toBe(2)
    expect(parseShmSize("64m")).toBe(64 * 1024 ** 2)
    expect(parseShmSize("64MB")).toBe(64 * 1024 ** 2)
    expect(parseShmSize("1.5g")).toBe(1.5 * 1024 ** 3)
    expect(parseShmSize("512kb")).toBe(512 * 1024)
    for (const bad of ["", "1t", "m", "1.m", "-1", "1 m", 1.5, -1, null]) expect(parseShmSize(bad)).toBeUndefined()
    const checked = checkJobSpec(
      { resource_spec: { [site]: { memory: "64Mi" } }, launcher_spec: { [site]: { docker: { shm_size: "1g" } } } },
      site
    )
    expect(checked._tag === "Right" && checked.spec.shmSize).toBe(64 * 1024 ** 2)
  })

  it("parses memory quantities", () => {
    expect(parseMemory("512Mi")).toBe(512 * 1024 ** 2)
    expect(parseMemory("2Gi")).toBe(2 * 1024 ** 3)
    expect(parseMemory("1G")).toBe(1e9)
    expect(parseMemory(8 * 1024 ** 2)).toBe(8 * 1024 ** 2)
    for (const bad of ["512MB", "Mi", "-1Gi", 0, "1.5.2Gi"]) expect(parseMemory(bad)).toBeUndefined()
  })

  it("matches image patterns (a bare name is name:latest)", () => {
    const match = imageMatcher(["flexec-node:*", "plain"])
    expect(match("flexec-node:test")).toBe(true)
    expect(match("plain")).toBe(true)
    expect(match("plain:latest")).toBe(true)
    expect(match("plain:2")).toBe(false)
    expect(match("flexec-nodex:test")).toBe(false)
    expect(imageMatcher(undefined)("anything")).toBe(true)
    expect(imageMatcher([])("anything")).toBe(false)
  })

  it("reads the engine address from DOCKER_HOST", () => {
    expect(resolveEndpoint(undefined, {}).socketPath).toBe("/var/run/docker.sock")
    expect(resolveEndpoint(undefined, { DOCKER_HOST: "unix:///tmp/d.sock" }).socketPath).toBe("/tmp/d.sock")
    expect(resolveEndpoint("/x.sock", { DOCKER_HOST: "unix:///tmp/d.sock" }).socketPath).toBe("/x.sock")
    expect(resolveEndpoint(undefined, { DOCKER_HOST: "tcp://127.0.0.1:2376" })).toMatchObject({ host: "127.0.0.1", port: 2376 })
  })
})

describe("the container body", () => {
  const root = makeRoot()
  const channel = {
    dir: path.join(root, "ch"),
    socketName: "ch.sock",
    socketPath: path.join(root, "ch", "ch.sock"),
    url: `unix://${path.join(root, "ch", "ch.sock")}`,
    token: "t",
    connectInProcess: () => {
      throw new Error("no")
    }
  }
  const request = makeRequest({
    root,
    jobId: "job-1",
    script: "",
    channel,
    gpus: ["1", "3"],
    commandTemplate: ["python3", "{appDir}/main.py", "--ws", "{workspace}", "--job", "{jobDir}", "{jobId}", "{startup}"],
    env: { NODE_OPTIONS: "--enable-source-maps", TMPDIR: "/host/tmp" }
  })
  const checked = checkJobSpec(
    {
      resource_spec: { [site]: { memory: "512Mi", num_of_cpus: 1.5 } },
      launcher_spec: { [site]: { docker: { shm_size: "64m" } } }
    },
    site
  )
  if (checked._tag !== "Right") throw new Error(checked.issues)
  const body = containerBody({
    request,
    image: "flexec-node:test",
    spec: checked.spec,
    user: { uid: 1000, gid: 1001 },
    network: "none",
    shareStartup: true,
    shareLocal: false,
    workerModulePath: "/opt/flexec/node_modules/@flexec/core/dist/worker.cjs",
    workerNodePath: "/opt/flexec/node_modules",
    defaultContainerOptions: { HostConfig: { Ulimits: [{ Name: "nofile", Soft: 1024, Hard: 1024 }], SecurityOpt: ["seccomp=unconfined"] } }
  })
  const host = body.HostConfig as Record<string, any>
  const env = Object.fromEntries((body.Env as Array<string>).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]))

  it("gives the GPUs as device requests for exactly the allocated ids", () => {
    expect(host.DeviceRequests).toEqual([{ Driver: "", Count: 0, DeviceIDs: ["1", "3"], Capabilities: [["gpu"]] }])
  })

  it("maps memory, CPUs and shm_size, and keeps the site's extra options", () => {
    expect(host.Memory).toBe(512 * 1024 ** 2)
    expect(host.MemorySwap).toBe(512 * 1024 ** 2)
    expect(host.NanoCpus).toBe(1.5e9)
    expect(host.ShmSize).toBe(64 * 1024 ** 2)
    expect(host.Ulimits).toEqual([{ Name: "nofile", Soft: 1024, Hard: 1024 }])
    expect(host.SecurityOpt).toEqual(["seccomp=unconfined", "no-new-privileges"])
    expect(env.NODE_OPTIONS).toBe("--enable-source-maps --max-old-space-size=384")
  })

  it("resolves the command and the environment to container paths", () => {
    const ws = "/var/tmp/flexec/workspace"
    expect(body.Cmd).toEqual([
      "python3", `${ws}/job-1/app_site1/main.py`, "--ws", ws, "--job", `${ws}/job-1`, "job-1", `${ws}/startup`
    ])
    expect(body.WorkingDir).toBe(`${ws}/job-1`)
    expect(body.User).toBe("1000:1001")
    expect(env.FLEXEC_PARENT_URL).toBe("unix:///run/flexec/ch.sock")
    expect(env.FLEXEC_WORKSPACE).toBe(ws)
    expect(env.FLEXEC_JOB_DIR).toBe(`${ws}/job-1`)
    expect(env.FLEXEC_STARTUP_DIR).toBe(`${ws}/startup`)
    expect(env.FLEXEC_WORKER_MODULE).toBe("/opt/flexec/node_modules/@flexec/core/dist/worker.cjs")
    expect(env.NODE_PATH).toBe("/opt/flexec/node_modules")
    expect(env.TMPDIR).toBe("/tmp")
    expect(env.PATH).toBeUndefined()
    expect(env.FLEXEC_CHANNEL_TOKEN).toBe("t")
    const mounts = host.Mounts as Array<Record<string, unknown>>
    expect(mounts.map((m) => [m.Type, m.Target, m.ReadOnly ?? false])).toEqual([
      ["tmpfs", ws, false],
      ["bind", `${ws}/job-1`, false],
      ["bind", "/run/flexec", true],
      ["bind", `${ws}/startup`, true]
    ])
  })
})

describe("launch refuses before touching the engine", () => {
  const root = makeRoot()
  const channel = {
    dir: path.join(root, "ch"),
    socketName: "ch.sock",
    socketPath: path.join(root, "ch", "ch.sock"),
    url: "unix://x",
    token: "t",
    connectInProcess: () => {
      throw new Error("no")
    }
  }
  const run = (options: Parameters<typeof makeDockerLauncher>[0], meta?: JobMeta) =>
    Effect.runPromiseExit(
      Effect.scoped(
        makeDockerLauncher({ docker: { socketPath: "/nonexistent/docker.sock" }, ...options }).launch(
          makeRequest({ root, script: "", channel, ...(meta ? { meta } : {}) })
        )
      )
    )
  const failure = (exit: Exit.Exit<unknown, unknown>) => (Exit.isFailure(exit) ? JSON.stringify(exit.cause) : "success")

  it("defaultContainerOptions cannot set the launcher's own keys", async () => {
    const exit = await run({ image: "x", defaultContainerOptions: { Env: ["A=1"], HostConfig: { Binds: ["/var/run/docker.sock:/s"] } } })
    expect(failure(exit)).toMatch(/LaunchFailed/)
    expect(failure(exit)).toMatch(/defaultContainerOptions may not set Env, HostConfig.Binds/)
  })

  it("no image anywhere: LaunchFailed saying where to set one", async () => {
    const exit = await run({})
    expect(failure(exit)).toMatch(/LaunchFailed/)
    expect(failure(exit)).toMatch(/launcher_spec.<site\|default>.docker.image/)
  })

  it("an image outside allowedImages, or a num_of_gpus that differs from the allocation", async () => {
    expect(failure(await run({ image: "evil:1", allowedImages: ["good:*"] }))).toMatch(/image 'evil:1' is not allowed/)
    const gpus: JobMeta = { launcher_spec: { [site]: { docker: { num_of_gpus: 2 } } } }
    expect(failure(await run({ image: "x" }, gpus))).toMatch(/num_of_gpus is 2 but 0 GPU/)
  })

  it("an unreachable engine is BackendUnavailable naming the socket", async () => {
    const exit = await run({ image: "x" })
    expect(failure(exit)).toMatch(/BackendUnavailable/)
    expect(failure(exit)).toContain("unix:///nonexistent/docker.sock")
    const recovered = await Effect.runPromiseExit(
      makeDockerLauncher({ docker: { socketPath: "/nonexistent/docker.sock" } }).recover!("test-x")
    )
    expect(failure(recovered)).toMatch(/BackendUnavailable/)
    expect(failure(recovered)).toContain("unix:///nonexistent/docker.sock")
  })

  it("declares its capabilities in one place", () => {
    expect(dockerCapabilities).toEqual({
      signals: true, oomDetection: true, recover: true, adopt: true, logs: true, memoryLimit: true, gpus: true, processes: false
    })
    expect(launcher.capabilities).toBe(dockerCapabilities)
    expect(makeDockerLauncher({ containerUser: "1234:5678" }).runAs).toEqual({ uid: 1234, gid: 5678 })
    expect(makeDockerLauncher({}).runAs).toEqual({ uid: process.getuid!(), gid: process.getgid!() })
  })
})

describe("exits", () => {
  it("keeps codes, reads signals from 128+n, and marks a never-started container lost", () => {
    expect(exitOfState({ status: "exited", exitCode: 7, oomKilled: false })).toEqual({ code: 7, signal: null, oomKilled: false, lost: false })
    expect(exitOfState({ status: "exited", exitCode: 137, oomKilled: true })).toEqual({ code: null, signal: "SIGKILL", oomKilled: true, lost: false })
    expect(exitOfState({ status: "exited", exitCode: 143, oomKilled: false }).signal).toBe("SIGTERM")
    expect(exitOfState({ status: "created", exitCode: 128, oomKilled: false }).lost).toBe(true)
  })
})

describe("the executor option channel", () => {
  it("tcp is refused when the executor is made: containers have no network (a TypeError naming the unix channel); nothing is made", async () => {
    const runtimeDir = path.join(os.tmpdir(), `flexec-docker-ch-${process.pid}`)
    const exit = await Effect.runPromiseExit(
      Effect.scoped(DockerJobExecutor.make({ client: { clientName: "site-1" }, runtimeDir, channel: { transport: "tcp", tls: true } }))
    )
    expect(String(Exit.isFailure(exit) ? Cause.squash(exit.cause) : "")).toContain(`its channel is { transport: "unix" }, not "tcp"`)
    expect(fs.existsSync(runtimeDir)).toBe(false)
  })
})
