import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Option, Scope, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { ProcessJobLauncher, processCapabilities } from "../src/ProcessJobLauncher.js"
import { LaunchFailed } from "../src/internal/core.js"
import type { JobHandle, LogLine } from "../src/internal/core.js"
import { eventually, fixture, isDead, makeDirs, makeRequest, node, readMaybe, repoRoot, workspaceNodeModules } from "./helpers.js"

const launcher = ProcessJobLauncher.make()

const waitExit = (handle: JobHandle) =>
  handle.wait.pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the job did not exit") }))

/** Every line of the job's output, until its output ends. */
const collectLogs = (handle: JobHandle) =>
  Stream.runCollect(handle.logs!).pipe(
    Effect.map(Chunk.toReadonlyArray),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the logs did not end") })
  )

const pidFileOf = (runtimeDir: string, jobId: string) => path.join(runtimeDir, "pids", `${jobId}.json`)

describe("ProcessJobLauncher.launch", () => {
  it.scopedLive("passes argv intact, without a shell, in the job directory", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const args = ["a b  c", `"quoted" 'single'`, "#not a comment", "ünïcødé €", "$HOME", "`id`;*", ""]
      const handle = yield* launcher.launch(makeRequest(dirs, node("echo.cjs", ...args)))
      const lines = yield* collectLogs(handle)
      const report = JSON.parse(lines[0]!.line) as { argv: Array<string>; cwd: string }
      expect(report.argv).toEqual(args)
      expect(report.cwd).toBe(dirs.jobDir)
      expect(yield* waitExit(handle)).toEqual({ code: 0, signal: null, oomKilled: false, lost: false })
    }))

  it.scopedLive("gives the job exactly the request's environment plus CUDA_VISIBLE_DEVICES and NODE_PATH", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      process.env.FLEXEC_TEST_PARENT_ONLY = "must not leak"
      yield* Effect.addFinalizer(() => Effect.sync(() => delete process.env.FLEXEC_TEST_PARENT_ONLY))
      const base = makeRequest(dirs, node("echo.cjs"))
      const env = { ...base.env, SITE_VAR: "x y", CUDA_VISIBLE_DEVICES: "7", NODE_PATH: "/opt/extra" }
      const handle = yield* launcher.launch({ ...base, env, gpus: ["0", "2"] })
      const lines = yield* collectLogs(handle)
      const report = JSON.parse(lines[0]!.line) as { env: Record<string, string> }
      expect(report.env).toEqual({
        ...env,
        CUDA_VISIBLE_DEVICES: "0,2",
        NODE_PATH: `${workspaceNodeModules}${path.delimiter}/opt/extra`
      })
      expect(report.env.FLEXEC_TEST_PARENT_ONLY).toBeUndefined()
    }))

  it.scopedLive("sets CUDA_VISIBLE_DEVICES empty when the job has no GPU", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const handle = yield* launcher.launch(makeRequest(dirs, node("echo.cjs")))
      const report = JSON.parse((yield* collectLogs(handle))[0]!.line) as { env: Record<string, string> }
      expect(report.env.CUDA_VISIBLE_DEVICES).toBe("")
      expect(report.env.NODE_PATH).toBe(workspaceNodeModules)
    }))

  it.scopedLive("lets a CommonJS app outside the repo require @flexec/core through NODE_PATH", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const script = path.join(dirs.appDir, "main.cjs")
      fs.copyFileSync(fixture("worker-require.cjs"), script)
      const handle = yield* launcher.launch(makeRequest(dirs, [process.execPath, script]))
      const lines = yield* collectLogs(handle)
      expect(lines.map((l) => l.line)).toEqual([fs.realpathSync(path.join(repoRoot, "packages", "core", "package.json"))])
      expect((yield* waitExit(handle)).code).toBe(0)
    }))

  it.scopedLive("finds a bare program name on the job's PATH", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const handle = yield* launcher.launch(makeRequest(dirs, ["sh", "-c", "echo $0 from sh; exit 4"]))
      expect((yield* collectLogs(handle)).map((l) => l.line)).toEqual(["sh from sh"])
      expect(yield* waitExit(handle)).toEqual({ code: 4, signal: null, oomKilled: false, lost: false })
    }))

  it.scopedLive("keeps the exit code and the signal apart", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const coded = yield* launcher.launch(makeRequest(dirs, node("exit.cjs", "code", "3")))
      expect(yield* waitExit(coded)).toEqual({ code: 3, signal: null, oomKilled: false, lost: false })
      const killed = yield* launcher.launch(makeRequest(dirs, node("exit.cjs", "signal", "SIGKILL"), { jobId: "job-2" as never }))
      expect(yield* waitExit(killed)).toEqual({ code: null, signal: "SIGKILL", oomKilled: false, lost: false })
      expect(Option.getOrThrow(yield* killed.poll).signal).toBe("SIGKILL")
    }))

  it.scopedLive("poll is None while the job runs", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const handle = yield* launcher.launch(makeRequest(dirs, node("wait.cjs")))
      yield* eventually("ready", () => fs.existsSync(path.join(dirs.jobDir, "ready")))
      expect(Option.isNone(yield* handle.poll)).toBe(true)
      yield* handle.terminate({ killAfter: "300 millis" })
      expect((yield* waitExit(handle)).signal).toBe("SIGTERM")
    }))
})

describe("terminate", () => {
  for (const mode of ["ignore", "obey"] as const) {
    it.scopedLive(`kills the whole group, a SIGTERM-ignoring grandchild too (child: ${mode})`, () =>
      Effect.gen(function* () {
        const dirs = yield* makeDirs()
        const handle = yield* launcher.launch(makeRequest(dirs, node("stubborn.cjs", mode)))
        const gcPid = Number(yield* eventually("the grandchild", () => readMaybe(path.join(dirs.jobDir, "gc.pid"))))
        expect(isDead(gcPid)).toBe(false)
        yield* handle.terminate({ killAfter: "300 millis" })
        const exit = yield* waitExit(handle)
        expect(exit).toEqual({ code: null, signal: mode === "ignore" ? "SIGKILL" : "SIGTERM", oomKilled: false, lost: false })
        yield* eventually("the grandchild's death", () => isDead(gcPid))
      }))
  }

  it.scopedLive("is idempotent: one SIGTERM however often it is called, and no error after the exit", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const handle = yield* launcher.launch(makeRequest(dirs, node("term-count.cjs")))
      yield* eventually("ready", () => fs.existsSync(path.join(dirs.jobDir, "ready")))
      yield* Effect.all([handle.terminate(), handle.terminate(), handle.terminate({ killAfter: "10 millis" })], {
        concurrency: "unbounded"
      })
      yield* handle.terminate()
      expect(yield* waitExit(handle)).toEqual({ code: 0, signal: null, oomKilled: false, lost: false })
      yield* handle.terminate()
      expect(readMaybe(path.join(dirs.jobDir, "term.log"))).toBe("TERM\n")
    }))

  it.scopedLive("closing the job's scope kills the group of a job that ignores SIGTERM", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const scope = yield* Scope.make()
      const handle = yield* Scope.extend(launcher.launch(makeRequest(dirs, node("stubborn.cjs", "ignore"))), scope)
      const gcPid = Number(yield* eventually("the grandchild", () => readMaybe(path.join(dirs.jobDir, "gc.pid"))))
      const pid = handle.info!.pid as number
      expect(fs.existsSync(pidFileOf(dirs.runtimeDir, "job-1"))).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expect(isDead(pid)).toBe(true)
      yield* eventually("the grandchild's death", () => isDead(gcPid))
      expect(fs.existsSync(pidFileOf(dirs.runtimeDir, "job-1"))).toBe(false)
    }))
})

describe("launch failures", () => {
  const expectLaunchFailed = (command: ReadonlyArray<string>, expected: RegExp) =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const error = yield* Effect.flip(launcher.launch(makeRequest(dirs, command)))
      expect(error).toBeInstanceOf(LaunchFailed)
      expect(error.jobId).toBe("job-1")
      expect(error.reason).toMatch(expected)
      expect(fs.existsSync(pidFileOf(dirs.runtimeDir, "job-1"))).toBe(false)
      expect(fs.existsSync(path.join(dirs.jobDir, "log.txt"))).toBe(false)
    })

  it.scopedLive("a missing absolute program names the path", () =>
    expectLaunchFailed(["/nonexistent/flexec/program", "x"], /\/nonexistent\/flexec\/program does not exist/))

  it.scopedLive("a bare name not on the job's PATH names the name and the PATH", () =>
    expectLaunchFailed(["flexec-no-such-program"], /'flexec-no-such-program': not found on the job's PATH \(/))

  it.scopedLive("a file without execute permission names the path", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const file = path.join(dirs.appDir, "main.sh")
      fs.writeFileSync(file, "#!/bin/sh\necho hi\n", { mode: 0o644 })
      const error = yield* Effect.flip(launcher.launch(makeRequest(dirs, [file])))
      expect(error.reason).toContain(`${file} is not executable`)
      expect(fs.existsSync(pidFileOf(dirs.runtimeDir, "job-1"))).toBe(false)
    }))

  it.scopedLive("a directory as the program names the path", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const error = yield* Effect.flip(launcher.launch(makeRequest(dirs, [dirs.appDir])))
      expect(error.reason).toContain(`${dirs.appDir} is a directory`)
    }))

  it.scopedLive("a spawn the OS refuses fails with LaunchFailed and leaves nothing", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const base = makeRequest(dirs, node("echo.cjs"))
      const error = yield* Effect.flip(launcher.launch({ ...base, env: { ...base.env, BAD: "a\0b" } }))
      expect(error).toBeInstanceOf(LaunchFailed)
      expect(error.reason).toContain(`cannot spawn ${process.execPath}`)
      expect(fs.existsSync(pidFileOf(dirs.runtimeDir, "job-1"))).toBe(false)
      expect(fs.existsSync(path.join(dirs.jobDir, "log.txt"))).toBe(false)
    }))

  it.scopedLive("an empty command and a missing job directory fail", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      expect((yield* Effect.flip(launcher.launch(makeRequest(dirs, [])))).reason).toContain("empty")
      const base = makeRequest(dirs, node("echo.cjs"))
      const gone = path.join(dirs.workspace, "missing")
      const error = yield* Effect.flip(launcher.launch({ ...base, paths: { ...base.paths, jobDir: gone } }))
      expect(error.reason).toContain(gone)
    }))
})

describe("logs", () => {
  it.scopedLive("stdout and stderr reach log.txt and the logs stream, line by line", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const handle = yield* launcher.launch(makeRequest(dirs, node("output.cjs", "3")))
      const lines = yield* collectLogs(handle)
      const pick = (stream: LogLine["stream"]) => lines.filter((l) => l.stream === stream).map((l) => l.line)
      expect(pick("stdout")).toEqual(["out 0000 ünï", "out 0001 ünï", "out 0002 ünï", "tail without newline"])
      expect(pick("stderr")).toEqual(["err 0000", "err 0001", "err 0002"])
      const file = fs.readFileSync(path.join(dirs.jobDir, "log.txt"), "utf8").split("\n")
      expect(file.at(-1)).toBe("")
      expect(file.slice(0, -1).sort()).toEqual(lines.map((l) => l.line).sort())
      expect(lines.every((l) => typeof l.time === "number")).toBe(true)
    }))

  it.scopedLive("a subscriber after the output ended gets the last lines and the end", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const handle = yield* launcher.launch(makeRequest(dirs, node("output.cjs", "2")))
      yield* collectLogs(handle)
      yield* waitExit(handle)
      expect((yield* collectLogs(handle)).length).toBe(5)
    }))

  it.scopedLive("nobody reading the stream does not stall the job", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const handle = yield* launcher.launch(makeRequest(dirs, node("output.cjs", "5000")))
      expect((yield* waitExit(handle)).code).toBe(0)
      const file = yield* eventually("the whole log", () => {
        const text = readMaybe(path.join(dirs.jobDir, "log.txt"))
        return text?.includes("tail without newline") ? text : undefined
      })
      expect(file.split("\n").length).toBe(10002)
    }))

  it.scopedLive("a subscriber that stops reading loses old lines, and the job does not wait for it", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const handle = yield* launcher.launch(makeRequest(dirs, node("output.cjs", "5000")))
      const pull = yield* Stream.toPull(handle.logs!)
      const first = yield* pull
      expect(Chunk.isNonEmpty(first)).toBe(true)
      // no more pulls until the job is done and its whole output has been read (the log file
      // is written before each line is published): it must finish regardless, and the end of
      // its output must reach this subscriber even though it lags a whole buffer behind
      expect((yield* waitExit(handle)).code).toBe(0)
      yield* eventually("the whole log", () => readMaybe(path.join(dirs.jobDir, "log.txt"))?.includes("tail without newline") || undefined)
      const rest: Array<LogLine> = []
      for (;;) {
        const next = yield* Effect.either(
          pull.pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => Option.none<never>() }))
        )
        if (next._tag === "Left") break
        rest.push(...Chunk.toReadonlyArray(next.right))
      }
      expect(Chunk.size(first) + rest.length).toBeLessThan(10_001)
      expect(rest.at(-1)?.line).toBe("tail without newline")
    }))

  it.scopedLive("rotates at logMaxBytes, keeping logFiles files", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const small = ProcessJobLauncher.make({ logMaxBytes: 200, logFiles: 3 })
      const handle = yield* small.launch(makeRequest(dirs, node("output.cjs", "40")))
      yield* collectLogs(handle)
      const log = (suffix: string) => readMaybe(path.join(dirs.jobDir, "log.txt" + suffix))
      for (const suffix of ["", ".1", ".2"]) {
        const text = log(suffix)
        expect(text).toBeDefined()
        expect(Buffer.byteLength(text!)).toBeLessThanOrEqual(200)
      }
      expect(log(".3")).toBeUndefined()
      expect(log("")).toContain("tail without newline")
    }))

  it.scopedLive("a log.txt symlink planted by the job is replaced, its target untouched", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const victim = path.join(dirs.root, "victim.txt")
      fs.writeFileSync(victim, "original\n")
      fs.symlinkSync(victim, path.join(dirs.jobDir, "log.txt"))
      const handle = yield* launcher.launch(makeRequest(dirs, node("output.cjs", "1")))
      yield* collectLogs(handle)
      expect(fs.readFileSync(victim, "utf8")).toBe("original\n")
      const stat = fs.lstatSync(path.join(dirs.jobDir, "log.txt"))
      expect(stat.isSymbolicLink()).toBe(false)
      expect(fs.readFileSync(path.join(dirs.jobDir, "log.txt"), "utf8")).toContain("out 0000")
    }))

  it.scopedLive("a hard link planted as log.txt is replaced, its other name untouched", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const victim = path.join(dirs.root, "victim.txt")
      fs.writeFileSync(victim, "original\n")
      fs.linkSync(victim, path.join(dirs.jobDir, "log.txt"))
      const handle = yield* launcher.launch(makeRequest(dirs, node("output.cjs", "1")))
      yield* collectLogs(handle)
      expect(fs.readFileSync(victim, "utf8")).toBe("original\n")
      expect(fs.readFileSync(path.join(dirs.jobDir, "log.txt"), "utf8")).toContain("out 0000")
    }))

  it.scopedLive("a directory at log.txt fails the launch", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      fs.mkdirSync(path.join(dirs.jobDir, "log.txt"))
      const error = yield* Effect.flip(launcher.launch(makeRequest(dirs, node("output.cjs", "1"))))
      expect(error).toBeInstanceOf(LaunchFailed)
      expect(error.reason).toContain(path.join(dirs.jobDir, "log.txt"))
      expect(fs.existsSync(pidFileOf(dirs.runtimeDir, "job-1"))).toBe(false)
    }))

  it.scopedLive("appends to an existing log.txt", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      fs.writeFileSync(path.join(dirs.jobDir, "log.txt"), "earlier\n")
      const handle = yield* launcher.launch(makeRequest(dirs, node("output.cjs", "1")))
      yield* collectLogs(handle)
      expect(fs.readFileSync(path.join(dirs.jobDir, "log.txt"), "utf8").startsWith("earlier\n")).toBe(true)
    }))
})

describe("pid file", () => {
  it.scopedLive("holds what recovery needs while the job runs, and is removed with the scope", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const scope = yield* Scope.make()
      const request = makeRequest(dirs, node("wait.cjs"), { labels: { run: "r1" } })
      const handle = yield* Scope.extend(launcher.launch(request), scope)
      const pid = handle.info!.pid as number
      const file = pidFileOf(dirs.runtimeDir, "job-1")
      const content = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
      const startTime = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]
      expect(content).toMatchObject({
        version: 1,
        pid,
        pgid: pid,
        startTime,
        bootId: fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
        jobId: "job-1",
        instanceId: "test",
        channelToken: request.channel.token,
        channelDir: request.channel.dir,
        labels: { run: "r1" }
      })
      expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700)
      expect(fs.statSync(file).mode & 0o777).toBe(0o600)
      yield* Scope.close(scope, Exit.void)
      expect(fs.existsSync(file)).toBe(false)
      expect(isDead(pid)).toBe(true)
    }))
})

describe.runIf(process.getuid?.() === 0)("as root, with uid and gid [skipped unless root: setuid needs it]", () => {
  it.scopedLive("runs the job as that user and gives it the log file", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      fs.chmodSync(dirs.root, 0o755)
      fs.chmodSync(dirs.jobDir, 0o777)
      const asNobody = ProcessJobLauncher.make({ uid: 65534, gid: 65534 })
      const script = path.join(dirs.jobDir, "who.cjs")
      fs.writeFileSync(script, "console.log(`${process.getuid()}:${process.getgid()}`)\n", { mode: 0o644 })
      const handle = yield* asNobody.launch(makeRequest(dirs, [process.execPath, script]))
      expect((yield* collectLogs(handle)).map((l) => l.line)).toEqual(["65534:65534"])
      const stat = fs.statSync(path.join(dirs.jobDir, "log.txt"))
      expect([stat.uid, stat.gid]).toEqual([65534, 65534])
    }))
})

describe("capabilities", () => {
  it("are declared once, honestly", () => {
    expect(launcher.capabilities).toBe(processCapabilities)
    expect(processCapabilities).toEqual({
      signals: true,
      oomDetection: false,
      recover: true,
      adopt: true,
      logs: true,
      processes: true,
      gpus: true,
      memoryLimit: false
    })
    expect(launcher.name).toBe("process")
    expect(launcher.runAs).toBeUndefined()
  })

  it("uid and gid go together and appear as runAs", () => {
    expect(() => ProcessJobLauncher.make({ uid: 1000 })).toThrow(TypeError)
    expect(ProcessJobLauncher.make({ uid: 1000, gid: 1001 }).runAs).toEqual({ uid: 1000, gid: 1001 })
  })
})
