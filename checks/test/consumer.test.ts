/**
 * The packages as a consumer gets them: every workspace package is packed with
 * `npm pack`, the tarballs are installed in a fresh directory outside the
 * repository (no vitest there: it is an optional peer), and then
 * - every package and subpath export is `require`d and `import`ed;
 * - a CommonJS script drives a mock resource manager and the in-memory backend
 *   through the real engine, and an ES module script uses them too;
 * - a consumer file type-checks under `moduleResolution` node16 (CJS and ESM
 *   files) and bundler, with `skipLibCheck` off.
 */
import { execFile, execFileSync } from "node:child_process"
import { promisify } from "node:util"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const here = path.dirname(fileURLToPath(import.meta.url))
const repoRoot = path.resolve(here, "..", "..")
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")

interface Manifest {
  readonly name: string
  readonly private?: boolean
  readonly exports?: Record<string, unknown>
}

const packages = fs
  .readdirSync(path.join(repoRoot, "packages"))
  .map((dir) => path.join(repoRoot, "packages", dir))
  .filter((dir) => fs.existsSync(path.join(dir, "package.json")))
  .map((dir) => ({ dir, manifest: JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as Manifest }))
  .filter((p) => p.manifest.private !== true)

/** Every entry a consumer can load: `name` and `name/<subpath>` (package.json and assets aside). */
const entries = packages.flatMap(({ manifest }) =>
  Object.keys(manifest.exports ?? { ".": null })
    .filter((key) => key !== "./package.json")
    .map((key) => (key === "." ? manifest.name : `${manifest.name}/${key.slice(2)}`))
)

/**
 * The consumer installs the tarballs' dependencies (effect, dockerode, …) from the npm registry.
 * Without one the check skips loudly; under CI (CI=true) or FLEXEC_REQUIRE_REGISTRY=1 it fails.
 */
const registryProblem = ((): string | undefined => {
  try {
    execFileSync("npm", ["ping"], { stdio: "ignore", timeout: 30_000 })
    return undefined
  } catch (error) {
    return String((error as Error).message ?? error).split("\n")[0]
  }
})()
const registryRequired = process.env.CI === "true" || process.env.FLEXEC_REQUIRE_REGISTRY === "1"
if (registryProblem !== undefined && !registryRequired) {
  console.warn(`consumer.test.ts: SKIPPED: the npm registry does not answer (${registryProblem}); the consumer check needs it to install the packed packages' dependencies. It fails instead under CI=true or FLEXEC_REQUIRE_REGISTRY=1.`)
}

let root = ""
let consumer = ""
const execFileAsync = promisify(execFile)
// asynchronous: a synchronous npm install of over a minute blocks the test worker, whose
// messages to vitest then time out ("Timeout calling onTaskUpdate") although every test passed
const run = async (cmd: string, args: ReadonlyArray<string>, cwd: string): Promise<string> =>
  (await execFileAsync(cmd, [...args], { cwd, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false" } })).stdout

beforeAll(async () => {
  if (registryProblem !== undefined && !registryRequired) return
  root = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-consumer-"))
  const tarballs = path.join(root, "tarballs")
  fs.mkdirSync(tarballs)
  const files: Array<string> = []
  for (const { dir } of packages) files.push(path.join(tarballs, (await (await run("npm", ["pack", "--silent", "--pack-destination", tarballs], dir))).trim().split("\n").pop()!))
  consumer = path.join(root, "consumer")
  fs.mkdirSync(consumer)
  fs.writeFileSync(path.join(consumer, "package.json"), JSON.stringify({ name: "flexec-consumer", private: true, version: "0.0.0" }, null, 2))
  await run("npm", ["install", "--no-package-lock", ...files, "@types/node@^20.19.0"], consumer)
  for (const file of fs.readdirSync(path.join(here, "..", "consumer"))) fs.copyFileSync(path.join(here, "..", "consumer", file), path.join(consumer, file))
})

afterAll(() => {
  if (root !== "") fs.rmSync(root, { recursive: true, force: true })
})

describe.skipIf(registryProblem !== undefined && !registryRequired)("a consumer of the packed packages [needs the npm registry: skipped without it, fails under CI=true]", () => {
  it("has no vitest installed (an optional peer of @flexec/testing), and a 3.x effect", async () => {
    expect(fs.existsSync(path.join(consumer, "node_modules", "vitest"))).toBe(false)
    const effect = JSON.parse(fs.readFileSync(path.join(consumer, "node_modules", "effect", "package.json"), "utf8")) as { version: string }
    expect(effect.version).toMatch(/^3\./)
  })

  it("npm refuses effect 4 beside @flexec/core, naming the peer range (effect ^3.22.4)", async () => {
    const dir = path.join(root, "effect4")
    fs.mkdirSync(dir)
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "flexec-effect4", private: true, version: "0.0.0" }))
    const core = fs.readdirSync(path.join(root, "tarballs")).find((f) => f.startsWith("flexec-core-"))!
    let output = ""
    try {
      await run("npm", ["install", "--no-package-lock", path.join(root, "tarballs", core), "effect@4"], dir)
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string }
      output = `${e.stdout ?? ""}${e.stderr ?? ""}`
    }
    expect(output).toContain("ERESOLVE")
    expect(output).toContain('peer effect@"^3.22.4" from @flexec/core')
  })

  it.each(entries)("requires and imports %s", async (entry) => {
    const loaded = { cjs: -1, esm: -1 }
    loaded.cjs = Number((await run(process.execPath, ["-e", `console.log(Object.keys(require(${JSON.stringify(entry)})).length)`], consumer)).trim())
    loaded.esm = Number(
      (await run(process.execPath, ["--input-type=module", "-e", `const m = await import(${JSON.stringify(entry)}); console.log(Object.keys(m).length)`], consumer)).trim()
    )
    expect(loaded.cjs, `require("${entry}") exports nothing`).toBeGreaterThan(0)
    expect(loaded.esm, `import("${entry}") exports nothing`).toBeGreaterThan(0)
  })

  it("drives a mock resource manager and the in-memory backend from CommonJS, through the engine", async () => {
    const out = JSON.parse((await run(process.execPath, ["drive.cjs"], consumer)).trim().split("\n").pop()!) as Record<string, unknown>
    // aborted (9), the echo's reply, the allocation freed exactly once
    expect(out).toEqual({
      vitest: "absent",
      suite: expect.stringContaining("conformanceSuite needs vitest (an optional peer dependency): npm i -D vitest"),
      reply: { hi: "consumer" },
      returnCode: 9,
      freed: 1
    })
  })

  it("uses the mocks and the in-memory backend from an ES module", async () => {
    const out = JSON.parse((await run(process.execPath, ["drive.mjs"], consumer)).trim()) as Record<string, unknown>
    expect(out).toEqual({
      runJob: "function",
      toPromiseExecutor: "function",
      makeJobExecutor: "function",
      client: expect.any(String),
      check: true,
      launcher: expect.any(String),
      argv: 3
    })
  })

  it("flexec-conformance says vitest is missing (exit 2) instead of failing obscurely", async () => {
    fs.writeFileSync(
      path.join(consumer, "launcher.mjs"),
      `import { InMemoryJobLauncher } from "@flexec/testing"\nexport const makeLauncher = () => InMemoryJobLauncher.unsafeMake()\n`
    )
    const bin = path.join(consumer, "node_modules", ".bin", "flexec-conformance")
    let status = 0
    let output = ""
    try {
      output = await run(bin, ["./launcher.mjs"], consumer)
    } catch (error) {
      // execFile's error carries the exit status as `code`
      const e = error as { code?: unknown; stdout?: string; stderr?: string }
      status = typeof e.code === "number" ? e.code : -1
      output = `${e.stdout ?? ""}${e.stderr ?? ""}`
    }
    expect(status).toBe(2)
    expect(output).toContain("vitest, which is not installed here")
  })

  const source = [
    `import { ClientExecutor, ClientStatus, type JobOutcome } from "@flexec/core"`,
    `import { runJob, ConfigError } from "@flexec/core/worker"`,
    `import { toPromiseExecutor, type PromiseExecutor } from "@flexec/core/promise"`,
    `import { createProcessExecutor, ProcessJobExecutor } from "@flexec/executor-process"`,
    `import { createDockerExecutor, DockerJobExecutor } from "@flexec/executor-docker"`,
    `import { conformanceSuite, InMemoryJobLauncher, MockResourceManager, mockClient } from "@flexec/testing"`,
    `import * as cli from "@flexec/cli"`,
    `export const used = [ClientExecutor, ClientStatus.Started, runJob, ConfigError, toPromiseExecutor, createProcessExecutor,`,
    `  ProcessJobExecutor.layer, createDockerExecutor, DockerJobExecutor, conformanceSuite, InMemoryJobLauncher.unsafeMake, MockResourceManager, mockClient, cli]`,
    `export type Used = [JobOutcome, PromiseExecutor]`,
    `export const started: Promise<PromiseExecutor> = createProcessExecutor({ client: mockClient() })`
  ].join("\n")
  const fixtureSource = `import fixtures = require("@flexec/testing/fixtures/worker.cjs")\nexport const names: ReadonlyArray<string> = Object.keys(fixtures.fixtures)\n`

  it.each([
    { resolution: "node16", files: { "check.cts": source, "check.mts": source, "fixture.cts": fixtureSource } },
    { resolution: "bundler", files: { "check.ts": source } }
  ])("type-checks under moduleResolution $resolution", async ({ resolution, files }) => {
    const dir = path.join(consumer, `tsc-${resolution}`)
    fs.mkdirSync(dir, { recursive: true })
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text)
    const compilerOptions =
      resolution === "node16" ? { module: "node16", moduleResolution: "node16" } : { module: "esnext", moduleResolution: "bundler" }
    fs.writeFileSync(
      path.join(dir, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { ...compilerOptions, target: "es2022", strict: true, noEmit: true, skipLibCheck: false, types: ["node"] }, include: ["*"] })
    )
    let output = ""
    try {
      await run(process.execPath, [tsc, "-p", dir], dir)
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? error)
    }
    expect(output).toBe("")
  })
  // last: it installs vitest into the consumer, which the tests above must not see
  it("with vitest installed, the CJS and the ESM builds register conformance groups into the consumer's vitest run", async () => {
    await run("npm", ["install", "--no-package-lock", "vitest@~3.2.7"], consumer)
    let output = ""
    try {
      output = await run(process.execPath, [path.join("node_modules", "vitest", "vitest.mjs"), "run", "--reporter=verbose", "suite-cjs.test.mjs", "suite-esm.test.mjs"], consumer)
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string }
      throw new Error(`the consumer's vitest run failed:\n${e.stdout ?? ""}${e.stderr ?? ""}`)
    }
    // eslint-disable-next-line no-control-regex
    const plain = output.replace(/\x1b\[[0-9;]*m/g, "")
    const summary = /Tests\s+(\d+) passed/.exec(plain)
    expect(summary, plain).not.toBeNull()
    expect(Number(summary![1])).toBeGreaterThan(2)
    expect(plain).toMatch(/✓ suite-cjs\.test\.mjs > lifecycle > /)
    expect(plain).toMatch(/✓ suite-esm\.test\.mjs > messaging > /)
    expect(plain).not.toMatch(/\d+ failed/)
  })
})
