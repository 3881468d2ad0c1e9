/**
 * The environment group: what the job really got (its environment, its working
 * directory, its GPUs), not what the suite built for it.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { MockResourceManager, mockClient } from "../../mocks.js"
import type { Harness } from "../harness.js"
import { conformanceJobFacts, conformanceJobFixture } from "../program.js"
import type { GroupInput } from "./register.js"
import { contextOf, test, testWith, withCaps } from "./register.js"
import { check, show, requestOf, ask } from "./probes.js"

/** What the job really got: its environment, its working directory, its GPUs. */
export const environmentTests = (input: GroupInput): void => {
  const common = contextOf(input)
  const siteVar = "CONFORMANCE_SITE_VARIABLE"
  /** The documented additions any backend may make to the request's env. */
  const additions = new Set(["CUDA_VISIBLE_DEVICES", "NODE_PATH", "NODE_OPTIONS", ...common.jobEnvAdditions.filter((n) => !n.endsWith("*"))])
  /** Prefixes of `jobEnvAdditions` entries ending in `*` (a scheduler's `SLURM_*`). */
  const prefixes = common.jobEnvAdditions.filter((n) => n.endsWith("*")).map((n) => n.slice(0, -1))
  const isAddition = (k: string): boolean => additions.has(k) || prefixes.some((p) => p.length > 0 && k.startsWith(p))
  /** Keys whose value a backend may translate for the job's filesystem (a container's paths), or replace with its image's. */
  const translated = new Set(["FLEXEC_PARENT_URL", "FLEXEC_WORKSPACE", "FLEXEC_JOB_DIR", "FLEXEC_STARTUP_DIR", "FLEXEC_WORKER_MODULE", "NODE_PATH", "PATH", "HOME", "TMPDIR", "NODE_OPTIONS"])
  const mayDrop = new Set(["PATH", "HOME", "TMPDIR"])

  interface Reported {
    readonly env: Readonly<Record<string, string>>
    readonly cwd: string
    readonly metaJobId: string | null
    readonly argv: ReadonlyArray<string>
  }
  const reported = (h: Harness, jobId: string) => ask(h, jobId, conformanceJobFacts.topics.env).pipe(Effect.map((p) => p as unknown as Reported))

  /** Sets a parent variable for the test's duration. */
  const parentVariable = (name: string, value: string) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const before = process.env[name]
        process.env[name] = value
        return before
      }),
      (before) => Effect.sync(() => (before === undefined ? delete process.env[name] : (process.env[name] = before)))
    )

  withCaps(common, "environment", (caps) => {
    test(
      common,
      "the job's environment is exactly the request's env plus documented additions: no parent variable, FL credentials and site env present",
      (h) =>
        Effect.gen(function* () {
          const canary = `CONFORMANCE_PARENT_CANARY_${common.runId}`
          const canaryValue = `the parent's own ${common.runId}`
          yield* parentVariable(canary, canaryValue)
          const jobId = yield* h.start(conformanceJobFixture)
          yield* h.waitEvent("Started", jobId)
          const { env } = yield* reported(h, jobId)
          const request = requestOf(h, jobId).env
          yield* check(!(canary in env), `the parent's variable ${canary} reached the job: the job's environment must be the request's env, never the parent's`)
          const carrying = Object.keys(env).filter((k) => env[k] === canaryValue).sort()
          yield* check(carrying.length === 0, `the job's ${carrying.join(", ")} carry the parent's variable ${canary}'s value: no addition may copy the parent's environment`)
          const extra = Object.keys(env).filter((k) => !(k in request) && !isAddition(k)).sort()
          yield* check(extra.length === 0, `the job got variables the request's env does not hold (the parent's environment leaks?): ${extra.join(", ")}`)
          const missing = Object.keys(request).filter((k) => !(k in env) && !mayDrop.has(k)).sort()
          yield* check(missing.length === 0, `the job lacks variables of the request's env: ${missing.join(", ")}`)
          const client = mockClient()
          const credentials = { FLEXEC_JOB_AUTH_TOKEN: client.token, FLEXEC_JOB_TOKEN_SIGNATURE: client.tokenSignature, FLEXEC_JOB_SSID: client.ssid }
          for (const [k, v] of Object.entries(credentials)) yield* check(env[k] === v, `the FL credential ${k} did not reach the job (got ${show(env[k])})`)
          const { argv } = yield* reported(h, jobId)
          const inArgv = Object.keys(credentials).filter((k) => argv.some((a) => a.includes(credentials[k as keyof typeof credentials]!)))
          yield* check(inArgv.length === 0, `the FL credentials ${inArgv.join(", ")} are in the job's argv: credentials go through the environment only`)
          yield* check(env[siteVar] === "from-the-site", `the site's env variable ${siteVar} did not reach the job (got ${show(env[siteVar])})`)
          const changed = Object.keys(request).filter((k) => !translated.has(k) && k in env && env[k] !== request[k]).sort()
          yield* check(changed.length === 0, `the job got other values than the request's for: ${changed.join(", ")}`)
        }),
      { executorOptions: { env: { [siteVar]: "from-the-site" } } }
    )

    test(common, "the job runs in its job directory (paths.jobDir)", (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start(conformanceJobFixture)
        yield* h.waitEvent("Started", jobId)
        const { cwd, env, metaJobId } = yield* reported(h, jobId)
        const jobDir = requestOf(h, jobId).paths.jobDir
        yield* check(
          (cwd === jobDir || cwd === env.FLEXEC_JOB_DIR) && metaJobId === jobId,
          `the job ran in ${cwd} (its meta.json names ${show(metaJobId)}), not in its job directory ${jobDir}`
        )
      }))

    testWith(common, caps, "gpus", "a job with GPUs sees exactly its allocation in CUDA_VISIBLE_DEVICES; one without sees none of the parent's", (h) =>
      Effect.gen(function* () {
        yield* parentVariable("CUDA_VISIBLE_DEVICES", "7")
        const rm = new MockResourceManager()
        const withGpus = yield* h.start(conformanceJobFixture, [], { allocatedResource: { gpus: ["1", "3"] }, token: "conformance-gpus", resourceManager: rm })
        const without = yield* h.start(conformanceJobFixture)
        yield* h.waitEvent("Started", withGpus)
        yield* h.waitEvent("Started", without)
        const a = (yield* reported(h, withGpus)).env.CUDA_VISIBLE_DEVICES
        const b = (yield* reported(h, without)).env.CUDA_VISIBLE_DEVICES
        yield* check(a === "1,3", `a job allocated GPUs 1 and 3 saw CUDA_VISIBLE_DEVICES=${show(a)}: the allocation must reach it`)
        yield* check(b === undefined || b === "", `a job allocated no GPU saw CUDA_VISIBLE_DEVICES=${show(b)}: the parent's GPUs must not reach it`)
      }))
  })
}
