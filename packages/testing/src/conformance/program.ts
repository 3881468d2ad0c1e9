/**
 * The conformance job program: the worker fixtures plus a few topics only the
 * suite needs (a handler that never replies, a handler that throws).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import type { FixtureName } from "../fixtures.js"
import { deployJob, fixturePath } from "../fixtures.js"
import type { FixtureProgram } from "../internal/fixtureModule.js"

/** The fixture the suite adds: echo, plus `test/stall` (never replies) and `test/fail` (throws). */
export const conformanceEchoFixture = "conformance-echo"

/** Topics of `conformance-echo` on channel `test`. */
export const conformanceTopics = { echo: "echo", stall: "stall", fail: "fail" } as const

/** The fixture of the suite's checks on what the job really got (env, cwd, logs, signals, its process tree). */
export const conformanceJobFixture = "conformance-job"

/** The fixture that writes more than a pipe buffer (1.5 MiB on stdout, 64 KiB on stderr), then exits 0. */
export const conformanceFloodFixture = "conformance-flood"

/**
 * Facts of `conformance-job`: its topics on channel `test`, the files it writes
 * in its job directory, and the lines `test/print` prints before the job exits 0.
 */
export const conformanceJobFacts = {
  topics: { echo: "echo", env: "env", exit: "exit", print: "print", hello: "hello" },
  /** Appended (one epoch-ms line per SIGTERM) when flag `stubborn` is set and SIGTERM arrives. */
  sigtermMarker: "sigterm.marker",
  /** The pid of the SIGTERM-ignoring child (flag `child`), written once it runs. */
  childPidFile: "child.pid",
  /** What `test/print` writes, in order; the last line has no newline. */
  printed: [
    { stream: "stdout", line: "conformance-job: out 1" },
    { stream: "stderr", line: "conformance-job: err 1" },
    { stream: "stdout", line: "conformance-job: out 2" },
    { stream: "stderr", line: "conformance-job: err 2 (the last, without a newline)" }
  ]
} as const

/** CommonJS source of the extra fixtures (assigned to `module.exports`; `require` is given). */
const extraSource = `
const fs = require("node:fs")
const path = require("node:path")
const aborted = (signal) =>
  new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })))
const write = (h, stream, text) => (h.write ? h.write(stream, text) : (stream === "stderr" ? process.stderr : process.stdout).write(text))
// conformance-job [flags]: "stubborn" ignores SIGTERM (marking each in sigterm.marker) and the job abort;
// "child" spawns a SIGTERM-ignoring child in the job's group (pid in child.pid) and needs an OS process.
// Topics: echo; env -> the environment, cwd and argv the job started with (and its cwd's meta.json job_id);
// exit -> run returns 0 (the leader exits normally); hello -> logs a line; print -> prints the lines, exits 0.
const conformanceJob = (h, flags) => {
  const env = { ...h.env }
  const cwd = h.cwd ? h.cwd() : process.cwd()
  const dir = env.FLEXEC_JOB_DIR || cwd
  const stubborn = flags.includes("stubborn")
  if (stubborn) {
    h.onSigterm(() => {
      try { fs.appendFileSync(path.join(dir, "sigterm.marker"), String(Date.now()) + "\\n") } catch {}
    })
  }
  let finish
  const finished = new Promise((resolve) => (finish = resolve))
  let hellos = 0
  const handlers = {
    test: {
      echo: (message) => message.payload,
      env: () => {
        let metaJobId = null
        try { metaJobId = JSON.parse(fs.readFileSync(path.join(cwd, "meta.json"), "utf8")).job_id } catch {}
        return { env, cwd, metaJobId, argv: h.real ? process.argv : [] }
      },
      exit: () => (setImmediate(() => finish(0)), "exiting"),
      hello: () => (h.log("conformance-job: hello " + ++hellos), hellos),
      print: () => {
        setImmediate(() => {
          write(h, "stdout", "conformance-job: out 1\\n")
          write(h, "stderr", "conformance-job: err 1\\n")
          write(h, "stdout", "conformance-job: out 2\\n")
          write(h, "stderr", "conformance-job: err 2 (the last, without a newline)")
          finish(0)
        })
        return "printing"
      }
    }
  }
  return h.runJob({
    handlers,
    run: async (ctx) => {
      if (flags.includes("child")) {
        if (!h.real) throw new Error("conformance-job: flag child needs an OS process")
        const code = 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1 << 30)'
        const child = require("node:child_process").spawn(process.execPath, ["-e", code], { stdio: "ignore" })
        child.unref()
        await new Promise((resolve) => child.once("spawn", resolve))
        const file = path.join(dir, "child.pid")
        fs.writeFileSync(file + ".tmp", String(child.pid))
        fs.renameSync(file + ".tmp", file)
      }
      if (stubborn) return h.forever()
      return Promise.race([finished, aborted(ctx.signal).then(() => 0)])
    }
  })
}
module.exports = {
  "conformance-echo": {
    main: (h) =>
      h.runJob({
        handlers: {
          test: {
            echo: (message) => message.payload,
            stall: () => new Promise(() => {}),
            fail: () => {
              throw new Error("conformance: handler failed on purpose")
            }
          }
        },
        run: (ctx) => aborted(ctx.signal).then(() => 0)
      })
  },
  "conformance-job": { main: conformanceJob },
  // 1.5 MiB on stdout and 64 KiB on stderr in 1 KiB lines; once the output is flushed (as a program
  // that ends on its own does), run returns 0.
  "conformance-flood": {
    main: (h) =>
      h.runJob({
        run: async () => {
          const line = "x".repeat(1023) + "\\n"
          for (let i = 0; i < 1536; i++) write(h, "stdout", line)
          for (let i = 0; i < 64; i++) write(h, "stderr", line)
          if (!h.write) await Promise.all([process.stdout, process.stderr].map((s) => new Promise((resolve) => s.write("", resolve))))
          return 0
        }
      })
  }
}
`

const marker = "module.exports = { fixtures, facts, select }"

/**
 * The extra programs, for in-process launchers that run programs by name:
 * `InMemoryJobLauncher.make({ programs: conformancePrograms })`.
 */
export const conformancePrograms: Readonly<Record<string, FixtureProgram>> = (() => {
  const module = { exports: {} as Record<string, FixtureProgram> }
  new Function("module", "require", extraSource)(module, createRequire(import.meta.url))
  return module.exports
})()

let programSource: string | undefined

/** The `main.js` the suite deploys: `fixtures/worker.cjs` with the extra fixtures added to its table. */
export const conformanceProgramSource = (): string => {
  if (programSource !== undefined) return programSource
  const base = fs.readFileSync(fixturePath, "utf8")
  if (!base.includes(marker)) throw new Error(`conformance: ${fixturePath} no longer ends with "${marker}"`)
  const extra = `Object.assign(fixtures, (() => { const module = { exports: {} }; ${extraSource}; return module.exports })())\n`
  programSource = base.replace(marker, `${extra}${marker}`)
  return programSource
}

/** A fixture the suite can run: one of `fixtures/worker.cjs` or `conformance-echo`. */
export type ConformanceFixture = FixtureName | typeof conformanceEchoFixture | typeof conformanceJobFixture | typeof conformanceFloodFixture

/** Deploys `<workspace>/<jobId>/meta.json` and `app_<client>/main.js` (the conformance program). */
export const deployConformanceJob = (params: {
  readonly workspace: string
  readonly jobId: string
  readonly clientName: string
  readonly fixture: ConformanceFixture
  readonly args?: ReadonlyArray<string | number>
  readonly meta?: Readonly<Record<string, unknown>>
}) =>
  Effect.gen(function* () {
    const job = yield* deployJob({
      workspace: params.workspace,
      jobId: params.jobId,
      clientName: params.clientName,
      fixture: params.fixture as FixtureName,
      ...(params.args ? { args: params.args } : {}),
      ...(params.meta ? { meta: params.meta } : {})
    })
    yield* Effect.sync(() => fs.writeFileSync(path.join(job.appDir, "main.js"), conformanceProgramSource()))
    return job
  })
