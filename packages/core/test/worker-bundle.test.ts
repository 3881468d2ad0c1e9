/**
 * The built worker entry (`dist/worker.js`, `dist/worker.cjs`; run `npm run build`
 * first): self-contained, free of Effect, importing only Node built-ins, and
 * loadable as `@flexec/core/worker` from CommonJS and ESM.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { isBuiltin } from "node:module"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const packageDir = resolve(__dirname, "..")
const dist = join(packageDir, "dist")
const repoNodeModules = resolve(packageDir, "../../node_modules")
const builds = { esm: join(dist, "worker.js"), cjs: join(dist, "worker.cjs") } as const

/** Every module specifier a bundle loads: `require(...)`, `import ... from`, bare `import "..."`, `import(...)`. */
const specifiers = (code: string): Array<string> => {
  const found: Array<string> = []
  const patterns = [
    /\brequire\(\s*(["'`])([^"'`]+)\1\s*\)/g,
    /\bfrom\s*(["'])([^"']+)\1/g,
    /\bimport\s*(["'])([^"']+)\1/g,
    /\bimport\(\s*(["'`])([^"'`]+)\1\s*\)/g
  ]
  for (const pattern of patterns) for (const match of code.matchAll(pattern)) found.push(match[2]!)
  return found
}

/** Runs node with a script; resolves with its stdout. */
const node = (args: ReadonlyArray<string>, options: { cwd: string; env?: Record<string, string> }): Promise<string> =>
  new Promise((resolveRun, reject) => {
    execFile(
      process.execPath,
      [...args],
      { cwd: options.cwd, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...options.env }, timeout: 20_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolveRun(stdout))
    )
  })

describe("the worker bundle", () => {
  let outside = ""

  beforeAll(() => {
    for (const file of Object.values(builds)) {
      if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` in packages/core first`)
    }
    outside = mkdtempSync(join(tmpdir(), "fxw-load-"))
  })
  afterAll(() => {
    if (outside) rmSync(outside, { recursive: true, force: true })
  })

  it.each(Object.entries(builds))("%s build loads only Node built-ins and never effect", (_format, file) => {
    const code = readFileSync(file, "utf8")
    expect(code).not.toMatch(/require\(\s*["']effect/)
    expect(code).not.toMatch(/from\s*["']effect/)
    expect(code).not.toMatch(/import\(\s*["']effect/)
    const loaded = specifiers(code)
    // it does load something (the parser works), and each is a built-in: no effect, no shared chunk
    expect(loaded.length).toBeGreaterThan(0)
    expect(loaded.filter((s) => !isBuiltin(s))).toEqual([])
  })

  it("the declaration files do not reference effect either", () => {
    for (const file of ["worker.d.ts", "worker.d.cts"]) {
      const dts = readFileSync(join(dist, file), "utf8")
      expect(dts).not.toMatch(/["']effect["'/]/)
      expect(dts).toMatch(/runJob/)
    }
  })

  it("require(\"@flexec/core/worker\") exposes runJob (NODE_PATH, as the process backend sets it), without loading effect", async () => {
    const out = await node(
      [
        "-e",
        `const w = require("@flexec/core/worker")
        const loaded = Object.keys(require.cache)
        console.log(JSON.stringify({
          runJob: typeof w.runJob, runJobWith: typeof w.runJobWith,
          ConfigError: typeof w.ConfigError, UnsafeComponentError: typeof w.UnsafeComponentError,
          resolved: require.resolve("@flexec/core/worker"),
          effect: loaded.filter((p) => p.includes("/node_modules/effect/")).length,
          modules: loaded.length }))`
      ],
      { cwd: outside, env: { NODE_PATH: repoNodeModules } }
    )
    const result = JSON.parse(out) as Record<string, unknown>
    expect(result).toMatchObject({
      runJob: "function",
      runJobWith: "function",
      ConfigError: "function",
      UnsafeComponentError: "function",
      effect: 0,
      modules: 1
    })
    expect(String(result.resolved).endsWith("/dist/worker.cjs")).toBe(true)
  })

  it("await import(\"@flexec/core/worker\") exposes runJob, and so does importing FLEXEC_WORKER_MODULE's absolute path", async () => {
    const script = `
      const byName = await import("@flexec/core/worker")
      const byPath = await import(process.env.FLEXEC_WORKER_MODULE)
      console.log(JSON.stringify({
        byName: typeof byName.runJob, byPath: typeof byPath.runJob,
        same: byName.runJob === byPath.runJob, config: typeof byName.ConfigError,
        resolved: import.meta.resolve("@flexec/core/worker") }))`
    const out = await node(["--input-type=module", "-e", script], {
      cwd: packageDir,
      env: { FLEXEC_WORKER_MODULE: builds.esm }
    })
    const result = JSON.parse(out) as Record<string, unknown>
    expect(result).toMatchObject({ byName: "function", byPath: "function", same: true, config: "function" })
    expect(String(result.resolved).endsWith("/dist/worker.js")).toBe(true)
  })
})
