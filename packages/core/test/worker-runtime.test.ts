/**
 * The worker runtime jobs load through NODE_PATH (`prepareWorkerRuntime`): a
 * copy of the built runtime and a loader that compiles it with the V8 code
 * cache `makeWorkerCodeCache` makes. Needs the built package (`npm run build`).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { CODE_CACHE_STATE, makeWorkerCodeCache, prepareWorkerRuntime } from "../src/internal/workerRuntime.js"
import { randomBytes, randomToken } from "../src/internal/randomPool.js"

/** Loads `@flexec/core/worker` through `nodePath` in a fresh node (from a directory outside the repo); resolves with what it reports. */
const loadInJob = (nodePath: string, cwd: string): Promise<{ cache: string; runJob: string; file: string }> =>
  new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [
        "-e",
        `const w = require("@flexec/core/worker")
        console.log(JSON.stringify({ cache: w[Symbol.for(${JSON.stringify(CODE_CACHE_STATE)})], runJob: typeof w.runJob, file: require.resolve("@flexec/core/worker") }))`
      ],
      { cwd, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", NODE_PATH: nodePath }, timeout: 20_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout)))
    )
  })

const tempDir = () =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "fxw-rt-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

const jobEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin" }

describe("the worker runtime on NODE_PATH", () => {
  it.scopedLive("a job loads the copy; without a cache it compiles as usual, with the cache V8 accepts it", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const cwd = yield* tempDir()
      const files = prepareWorkerRuntime(dir)
      expect(fs.readFileSync(files.bundleFile, "utf8")).toContain("runJobWith")
      // the copy's source map points at the package's
      expect(fs.readFileSync(files.bundleFile, "utf8")).toMatch(/\/\/# sourceMappingURL=file:\/\/\/.*worker\.cjs\.map\n$/)
      const before = yield* Effect.promise(() => loadInJob(files.nodePath, cwd))
      expect(before).toEqual({ cache: "absent", runJob: "function", file: path.join(files.dir, "worker.js") })

      expect(yield* makeWorkerCodeCache(files, { execPath: process.execPath, env: jobEnv, timeout: Duration.seconds(20) })).toBe(true)
      expect(fs.statSync(files.cacheFile).size).toBeGreaterThan(10_000)
      // nothing of the maker is left behind
      expect(fs.readdirSync(files.dir).sort()).toEqual(["index.js", "package.json", "worker.cache", "worker.cjs", "worker.js"])
      const after = yield* Effect.promise(() => loadInJob(files.nodePath, cwd))
      expect(after.cache).toBe("accepted")
      expect(after.runJob).toBe("function")
    })
  )

  it.scopedLive("a cache made for other V8 flags is refused by V8 and the job still loads the runtime", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const cwd = yield* tempDir()
      const files = prepareWorkerRuntime(dir)
      // the maker's node with a flag the job's node does not have
      const env = { ...jobEnv, NODE_OPTIONS: "--max-old-space-size=300" }
      expect(yield* makeWorkerCodeCache(files, { execPath: process.execPath, env, timeout: Duration.seconds(20) })).toBe(true)
      const loaded = yield* Effect.promise(() => loadInJob(files.nodePath, cwd))
      expect(loaded).toMatchObject({ cache: "rejected", runJob: "function" })
    })
  )

  it.scopedLive("a changed runtime drops the cache made for the old one before the copy changes", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const files = prepareWorkerRuntime(dir)
      expect(yield* makeWorkerCodeCache(files, { execPath: process.execPath, env: jobEnv, timeout: Duration.seconds(20) })).toBe(true)
      // the same runtime again: the cache stays
      prepareWorkerRuntime(dir)
      expect(fs.existsSync(files.cacheFile)).toBe(true)
      // a copy that differs (as after an upgrade of @flexec/core): the cache goes
      fs.appendFileSync(files.bundleFile, "\n// older\n")
      prepareWorkerRuntime(dir)
      expect(fs.existsSync(files.cacheFile)).toBe(false)
      expect(fs.readFileSync(files.bundleFile, "utf8")).not.toContain("// older")
    })
  )

  it.scopedLive("a maker that fails or hangs leaves no cache and no file behind", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const files = prepareWorkerRuntime(dir)
      // a node that cannot start
      expect(yield* makeWorkerCodeCache(files, { execPath: path.join(dir, "no-such-node"), env: jobEnv, timeout: Duration.seconds(5) })).toBe(false)
      // a node that hangs (a preload that never returns) is killed at the timeout
      const hang = path.join(dir, "hang.cjs")
      fs.writeFileSync(hang, "for (;;) {}\n")
      const env = { ...jobEnv, NODE_OPTIONS: `--require ${hang}` }
      expect(yield* makeWorkerCodeCache(files, { execPath: process.execPath, env, timeout: Duration.millis(300) })).toBe(false)
      expect(fs.readdirSync(files.dir).sort()).toEqual(["index.js", "package.json", "worker.cjs", "worker.js"])
    })
  )
})

describe("the random pool", () => {
  it("hands out fresh bytes every time, of the length asked for, across refills", () => {
    const seen = new Set<string>()
    for (let i = 0; i < 500; i++) {
      const token = randomToken(32)
      expect(Buffer.from(token, "base64url")).toHaveLength(32)
      expect(seen.has(token)).toBe(false)
      seen.add(token)
    }
    expect(randomBytes(8192)).toHaveLength(8192)
    // a handed-out buffer is a copy: changing it changes nothing handed out later
    const a = randomBytes(16)
    a.fill(0)
    expect(randomBytes(16).equals(Buffer.alloc(16))).toBe(false)
  })
})
