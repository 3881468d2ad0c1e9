import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { ProcessJobLauncher } from "../src/ProcessJobLauncher.js"
import { pidFilePath, writePidFile } from "../src/internal/pidFile.js"
import type { PidFile } from "../src/internal/pidFile.js"
import { bootId, startTimeOf } from "../src/internal/procfs.js"
import { eventually, isDead, makeDirs, makeRequest, node } from "./helpers.js"

/**
 * Starts a detached process (its own group, as the launcher starts jobs) that
 * outlives nothing: it is killed when the test's scope closes.
 */
const startProcess = (env: Record<string, string>, script = "setInterval(() => {}, 1000)") =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, ["-e", script], { detached: true, env, stdio: "ignore" })
      child.on("error", () => {})
      return child
    }),
    (child) =>
      Effect.sync(() => {
        try {
          process.kill(-child.pid!, "SIGKILL")
        } catch {
          // already gone
        }
      })
  )

const pidFileFor = (child: ChildProcess, jobId: string, overrides: Partial<PidFile> = {}): PidFile => ({
  version: 1,
  pid: child.pid!,
  pgid: child.pid!,
  startTime: startTimeOf(child.pid!)!,
  bootId: bootId(),
  jobId,
  instanceId: "inst",
  channelToken: "tok-" + jobId,
  channelDir: "/run/flexec-test/" + jobId,
  startedAt: Date.now(),
  ...overrides
})

const exitOf = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) resume(Effect.void)
    else child.once("exit", () => resume(Effect.void))
  })

describe("recover", () => {
  it.scopedLive("returns a live orphan of this instance, which can be terminated", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const launcher = ProcessJobLauncher.make({ runtimeDir: dirs.runtimeDir })
      const ready = path.join(dirs.root, "orphan.ready")
      const orphan = yield* startProcess(
        { FLEXEC_JOB_ID: "orphan-1" },
        `process.on("SIGTERM", () => {}); require("node:fs").writeFileSync(${JSON.stringify(ready)}, "1"); setInterval(() => {}, 1000)`
      )
      yield* eventually("the orphan's SIGTERM handler", () => fs.existsSync(ready))
      const file = writePidFile(dirs.runtimeDir, pidFileFor(orphan, "orphan-1"))

      const jobs = yield* launcher.recover("inst")
      expect(jobs.length).toBe(1)
      const job = jobs[0]!
      expect(job).toMatchObject({ jobId: "orphan-1", instanceId: "inst", channelToken: "tok-orphan-1", channelDir: "/run/flexec-test/orphan-1" })
      expect(Option.isNone(yield* job.handle.poll)).toBe(true)
      expect(fs.existsSync(file)).toBe(true)

      yield* job.handle.terminate({ killAfter: "300 millis" })
      yield* job.handle.terminate()
      const exit = yield* job.handle.wait.pipe(Effect.timeout("10 seconds"))
      expect(exit).toEqual({ code: null, signal: null, oomKilled: false, lost: true })
      expect(isDead(orphan.pid!)).toBe(true)
      yield* exitOf(orphan)
      expect(orphan.signalCode).toBe("SIGKILL")
      expect(fs.existsSync(file)).toBe(false)
    }))

  it.scopedLive("ignores and removes a pid file whose pid is another process, and does not signal it", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const launcher = ProcessJobLauncher.make({ runtimeDir: dirs.runtimeDir })
      const stranger = yield* startProcess({ PATH: process.env.PATH ?? "" })
      const file = writePidFile(dirs.runtimeDir, pidFileFor(stranger, "job-x"))
      // a real job process, but the pid file's start time is not its own (pid reuse)
      const reused = yield* startProcess({ FLEXEC_JOB_ID: "job-y" })
      const reusedFile = writePidFile(dirs.runtimeDir, pidFileFor(reused, "job-y", { startTime: "1" }))
      // a job process whose pid file names a group it does not lead
      const foreignGroup = yield* startProcess({ FLEXEC_JOB_ID: "job-z" })
      const groupFile = writePidFile(dirs.runtimeDir, pidFileFor(foreignGroup, "job-z", { pgid: process.pid }))

      expect(yield* launcher.recover("inst")).toEqual([])
      for (const f of [file, reusedFile, groupFile]) expect(fs.existsSync(f)).toBe(false)
      for (const p of [stranger, reused, foreignGroup]) {
        expect(isDead(p.pid!)).toBe(false)
        expect(p.signalCode).toBeNull()
      }
    }))

  it.scopedLive("removes the stale pid file of a dead process, and malformed ones", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const launcher = ProcessJobLauncher.make({ runtimeDir: dirs.runtimeDir })
      const gone = yield* startProcess({ FLEXEC_JOB_ID: "job-dead" }, "process.exit(0)")
      const content = pidFileFor(gone, "job-dead", { startTime: "12345" })
      yield* exitOf(gone)
      yield* eventually("the process's end", () => isDead(gone.pid!))
      const stale = writePidFile(dirs.runtimeDir, content)
      const malformed = path.join(dirs.runtimeDir, "pids", "junk.json")
      fs.writeFileSync(malformed, "{ not json")
      expect(yield* launcher.recover("inst")).toEqual([])
      expect(fs.existsSync(stale)).toBe(false)
      expect(fs.existsSync(malformed)).toBe(false)
    }))

  it.scopedLive("leaves nothing of another instance recovered", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const launcher = ProcessJobLauncher.make({ runtimeDir: dirs.runtimeDir })
      const other = yield* startProcess({ FLEXEC_JOB_ID: "job-o" })
      writePidFile(dirs.runtimeDir, pidFileFor(other, "job-o", { instanceId: "another" }))
      expect(yield* launcher.recover("inst")).toEqual([])
      expect(isDead(other.pid!)).toBe(false)
    }))

  it.scopedLive("finds a job a launch left running when its parent never closed the job's scope", () =>
    Effect.gen(function* () {
      const dirs = yield* makeDirs()
      const launcher = ProcessJobLauncher.make({ runtimeDir: dirs.runtimeDir })
      const lostScope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(lostScope, Exit.void))
      const request = makeRequest(dirs, node("wait.cjs", "ignore"))
      const launched = yield* Scope.extend(launcher.launch(request), lostScope)
      yield* eventually("ready", () => fs.existsSync(path.join(dirs.jobDir, "ready")))

      const jobs = yield* launcher.recover("test")
      expect(jobs.map((j) => [j.jobId, j.channelToken, j.channelDir])).toEqual([["job-1", request.channel.token, request.channel.dir]])
      const handle = jobs[0]!.handle
      yield* handle.terminate({ killAfter: "300 millis" })
      expect((yield* handle.wait.pipe(Effect.timeout("10 seconds"))).lost).toBe(true)
      expect((yield* launched.wait.pipe(Effect.timeout("10 seconds"))).signal).toBe("SIGKILL")
      expect(fs.existsSync(pidFilePath(dirs.runtimeDir, "job-1"))).toBe(false)
    }))
})
