/**
 * Deliberately broken launchers: each a small change of `InMemoryJobLauncher`
 * breaking one promise, the conformance group and test that must catch it, and
 * a direct probe that shows the misbehaviour without the suite's assertions (it
 * returns what it saw go wrong, or `undefined` when the launcher behaves: run on
 * the unbroken launcher, every probe returns `undefined`).
 *
 * Backends that need real processes (the whole tree, pipes, pid files) are
 * broken from the process backend in packages/executor-process/test/broken/.
 */
import type { JobExit, JobHandle, JobLauncher, LaunchRequest } from "@flexec/core"
import { InvalidJobMeta, Message } from "@flexec/core"
import { Chunk, Deferred, Duration, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Harness, InMemoryLauncher } from "../../src/index.js"
import { processesOfJob } from "../../src/index.js"
import { minimalLauncher } from "./minimal.js"
import { conformanceJobFacts, conformanceJobFixture, conformancePrograms, fixtureFacts, InMemoryJobLauncher, MockResourceManager } from "../../src/index.js"

type Change = (launcher: InMemoryLauncher) => Partial<InMemoryLauncher>

const base = () => InMemoryJobLauncher.make({ programs: conformancePrograms })

/** The unbroken launcher every probe must find well-behaved. */
export const baseLauncher = base

const broken = (change: Change) => () => Effect.map(base(), (launcher): InMemoryLauncher => ({ ...launcher, ...change(launcher) }))

/** Changes every handle the launcher returns. */
const handles = (f: (handle: JobHandle, request: LaunchRequest) => Effect.Effect<JobHandle>): Change => (l) => ({
  launch: (request) => Effect.flatMap(l.launch(request), (handle) => f(handle, request))
})

/** Changes the request the launcher gets. */
const requests = (f: (request: LaunchRequest) => LaunchRequest): Change => (l) => ({
  launch: (request) => l.launch(f(request))
})

const mapExit = (f: (exit: JobExit) => JobExit) =>
  handles((h) => Effect.succeed({ ...h, wait: Effect.map(h.wait, f), poll: Effect.map(h.poll, Option.map(f)) }))

const withoutEnv = (...names: ReadonlyArray<string>) =>
  requests((r) => {
    const env = { ...r.env }
    for (const name of names) delete env[name]
    return { ...r, env }
  })

const signalNumbers: Record<string, number> = { SIGTERM: 15, SIGKILL: 9 }

// ---- probes: each starts jobs through a harness and looks at what happened directly -----------

/** A probe: what it saw go wrong, or undefined. */
export type Probe = (h: Harness) => Effect.Effect<string | undefined, unknown, Scope.Scope>

const handleOf = (h: Harness, jobId: string) => h.handles.get(jobId)!
const started = (h: Harness, fixture: Parameters<Harness["start"]>[0], args: ReadonlyArray<string | number> = []) =>
  Effect.gen(function* () {
    const jobId = yield* h.start(fixture, args)
    yield* h.waitEvent("Started", jobId)
    return jobId
  })
/** The raw exit of the handle, bounded. */
const rawExit = (h: Harness, jobId: string, ms = 5_000) =>
  handleOf(h, jobId).wait.pipe(Effect.timeout(Duration.millis(ms)), Effect.option)
const ask = (h: Harness, jobId: string, topic: string) =>
  h.executor.sendToJob({ jobId, channel: fixtureFacts.channel, topic, message: Message.make({}) }).pipe(Effect.map((m) => m.payload))
const running = (h: Harness) => (h.launcher as InMemoryLauncher).running()

/** Terminates a SIGTERM-ignoring job with killAfter 1500 ms and reports when it died. */
const escalationProbe: Probe = (h) =>
  Effect.gen(function* () {
    const jobId = yield* started(h, conformanceJobFixture, ["stubborn"])
    const handle = handleOf(h, jobId)
    const t0 = Date.now()
    yield* handle.terminate({ killAfter: Duration.millis(1_500) })
    const exit = yield* handle.wait.pipe(Effect.timeout(Duration.millis(4_000)), Effect.option)
    const at = Date.now() - t0
    if (Option.isNone(exit)) return "still alive 4 s after terminate({ killAfter: 1500 ms })"
    if (at < 1_200) return `dead ${at} ms after terminate({ killAfter: 1500 ms })`
    if (exit.value.signal !== "SIGKILL") return `ended ${JSON.stringify(exit.value)}, not by SIGKILL`
    return running(h) === 0 ? undefined : `the handle says it ended, the launcher still runs ${running(h)} job(s)`
  })

/** The raw exit of a job ended in a known way. */
const exitProbe = (how: "code7" | "sigterm" | "sigkill" | "exit0"): Probe => (h) =>
  Effect.gen(function* () {
    const jobId = how === "code7" ? yield* h.start("exit-with", [7]) : how === "exit0" ? yield* h.start("exit-with", [0]) : yield* started(h, how === "sigkill" ? "ignore-abort" : "conformance-echo")
    if (how === "sigterm") yield* handleOf(h, jobId).terminate({ killAfter: Duration.seconds(30) })
    if (how === "sigkill") yield* handleOf(h, jobId).terminate({ killAfter: Duration.millis(0) })
    const exit = yield* rawExit(h, jobId)
    const want = how === "code7" ? { code: 7, signal: null } : how === "exit0" ? { code: 0, signal: null } : { code: null, signal: how === "sigterm" ? "SIGTERM" : "SIGKILL" }
    const expected = { ...want, oomKilled: false, lost: false }
    if (Option.isNone(exit)) return "wait did not resolve"
    return JSON.stringify(exit.value) === JSON.stringify(expected) ? undefined : `the exit record is ${JSON.stringify(exit.value)}, the job ended ${JSON.stringify(expected)}`
  })

/** wait and poll after the exit. */
const afterExitProbe: Probe = (h) =>
  Effect.gen(function* () {
    const jobId = yield* h.start("exit-with", [0])
    yield* h.until("the job to end", () => running(h) === 0 && h.handles.has(jobId))
    const handle = handleOf(h, jobId)
    const first = yield* handle.wait.pipe(Effect.timeout(Duration.seconds(2)), Effect.option)
    if (Option.isNone(first)) return "wait did not resolve after the job ended"
    const poll = yield* handle.poll
    if (Option.isNone(poll)) return "poll is None after wait resolved"
    const again = yield* handle.wait.pipe(Effect.timeout(Duration.seconds(1)), Effect.option)
    if (Option.isNone(again)) return "a second wait did not resolve"
    const t = yield* Effect.exit(handle.terminate().pipe(Effect.timeout(Duration.seconds(1))))
    return t._tag === "Failure" ? "terminate after the exit failed" : undefined
  })

/** wait resolves while the job still runs. */
const waitEarlyProbe: Probe = (h) =>
  Effect.gen(function* () {
    const jobId = yield* h.start("conformance-echo")
    yield* h.until("the handle", () => h.handles.has(jobId))
    const exit = yield* rawExit(h, jobId, 500)
    return Option.isSome(exit) && running(h) > 0 ? `wait resolved ${JSON.stringify(exit.value)} while the job still runs` : undefined
  })

/** Whether the job got Started at all (a job without its channel variables cannot connect). */
const connectsProbe: Probe = (h) =>
  Effect.gen(function* () {
    const jobId = yield* h.start("exit-with", [0])
    const exit = yield* rawExit(h, jobId)
    return Option.isSome(exit) && exit.value.code !== 0 ? `the job could not connect: it exited ${exit.value.code}` : undefined
  })

/** What the job reported of its environment and cwd. */
const reportedProbe = (what: "env" | "cwd" | "gpus"): Probe => (h) =>
  Effect.gen(function* () {
    const canary = "BROKEN_PROBE_CANARY"
    process.env[canary] = "x"
    yield* Effect.addFinalizer(() => Effect.sync(() => delete process.env[canary]))
    const jobId = what === "gpus"
      ? yield* h.start(conformanceJobFixture, [], { allocatedResource: { gpus: ["2"] }, token: "probe", resourceManager: new MockResourceManager() })
      : yield* h.start(conformanceJobFixture)
    yield* h.waitEvent("Started", jobId)
    const got = (yield* ask(h, jobId, conformanceJobFacts.topics.env)) as { env: Record<string, string>; cwd: string }
    const request = h.requests.get(jobId)!
    if (what === "cwd") return got.cwd === request.paths.jobDir ? undefined : `the job ran in ${got.cwd}, not ${request.paths.jobDir}`
    if (what === "gpus") return got.env.CUDA_VISIBLE_DEVICES === "2" ? undefined : `the job allocated GPU 2 saw CUDA_VISIBLE_DEVICES=${got.env.CUDA_VISIBLE_DEVICES}`
    if (canary in got.env) return `the parent's ${canary} reached the job`
    const missing = Object.keys(request.env).filter((k) => !(k in got.env))
    return missing.length > 0 ? `the job lacks ${missing.join(", ")}` : undefined
  })

/** The lines, labels and end of handle.logs, and the log file, for a job that printed and exited. */
const logsProbe = (what: "lines" | "end" | "file"): Probe => (h) =>
  Effect.gen(function* () {
    const jobId = yield* started(h, conformanceJobFixture)
    const handle = handleOf(h, jobId)
    const fiber = yield* Effect.fork(Stream.runCollect(handle.logs!))
    yield* h.until("the logs subscription", () => ask(h, jobId, conformanceJobFacts.topics.hello).pipe(Effect.as(true)))
    yield* Effect.sleep(Duration.millis(50))
    yield* ask(h, jobId, conformanceJobFacts.topics.print)
    yield* rawExit(h, jobId)
    if (what === "file") {
      yield* h.executor.awaitCompletion(jobId)
      const file = h.requests.get(jobId)!.paths.logFile
      const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : ""
      const missing = conformanceJobFacts.printed.filter((p) => !text.includes(p.line))
      return missing.length > 0 ? `${file} lacks ${missing.length} of the printed lines` : undefined
    }
    const lines = yield* Fiber.join(fiber).pipe(Effect.timeout(Duration.seconds(2)), Effect.option)
    if (Option.isNone(lines)) return what === "end" ? "handle.logs did not end 2 s after the exit" : "handle.logs did not end"
    const got = Chunk.toReadonlyArray(lines.value)
    for (const want of conformanceJobFacts.printed) {
      const line = got.find((l) => l.line === want.line)
      if (line === undefined) return `handle.logs lacks ${JSON.stringify(want.line)}`
      if (line.stream !== want.stream) return `${JSON.stringify(want.line)} is labelled ${line.stream}`
    }
    return undefined
  })

/** A job of the launcher's own instance, and whether recover finds it. */
const recoverProbe: Probe = (h) =>
  Effect.gen(function* () {
    yield* started(h, "conformance-echo")
    if (h.launcher.capabilities.recover !== true) return undefined
    const found = h.launcher.recover ? yield* h.launcher.recover(h.instanceId) : []
    return found.length === 0 ? "capabilities.recover is true, but recover() finds none of the instance's running jobs" : undefined
  })

/** Interrupts launches at a few delays and counts the jobs left running. */
const launchAbortProbe: Probe = (h) =>
  Effect.gen(function* () {
    const launcher = h.launcher
    for (const delay of [0, 5, 10, 20]) {
      yield* Effect.scoped(
        Effect.gen(function* () {
          const jobId = h.newJobId("probe")
          const fiber = yield* Effect.fork(h.start("conformance-echo", [], { jobId }).pipe(Effect.ignore))
          yield* Effect.sleep(Duration.millis(delay))
          while ((yield* h.executor.checkStatus(jobId)) === "not started") yield* Effect.sleep(Duration.millis(1))
          yield* h.executor.abortApp(jobId)
          yield* Fiber.await(fiber)
        })
      )
    }
    yield* h.until("every job to end", () => h.executor.jobs.pipe(Effect.map((j) => j.length === 0)))
    yield* Effect.sleep(Duration.millis(200))
    const left = (launcher as InMemoryLauncher).running()
    return left > 0 ? `${left} job(s) still run after their launches were aborted` : undefined
  })

/** What validate says of an unknown key and of an empty spec. */
const validateProbe: Probe = (h) =>
  Effect.gen(function* () {
    const launcher: JobLauncher = h.launcher
    if (launcher.validate === undefined) return "the launcher has no validate"
    const bad = yield* Effect.either(launcher.validate({ job_id: "p", launcher_spec: { default: { [launcher.name]: { nope: 1 } } } }, "site-1"))
    if (bad._tag === "Right") return "validate accepted an unknown key"
    const good = yield* Effect.either(launcher.validate({ job_id: "p", launcher_spec: { default: { [launcher.name]: {} } } }, "site-1"))
    return good._tag === "Left" ? `validate refused an empty spec: ${good.left.message}` : undefined
  })

/** A claimed capability the launcher cannot deliver: does the job it needs run at all? */
const memoryProbe: Probe = (h) =>
  Effect.gen(function* () {
    if (h.launcher.capabilities.memoryLimit !== true) return undefined
    const started = yield* Effect.either(h.start("allocate-until-oom", [64]))
    if (started._tag === "Left") return `capabilities.memoryLimit is claimed, but a memory-bound job cannot even run: ${String((started.left as Error).message)}`
    const outcome = yield* h.executor.awaitCompletion(started.right)
    return outcome.returnCode === 104 ? "capabilities.memoryLimit is claimed, but a memory-bound job cannot even run" : undefined
  })

const gpuClaimProbe: Probe = (h) => (h.launcher.capabilities.gpus === true ? reportedProbe("gpus")(h) : Effect.succeed(undefined))

/** A job with a SIGTERM-ignoring child, ended one way: are its processes gone 3 s after its completion? */
const treeProbe = (how: "abort" | "exit" | "terminate"): Probe => (h) =>
  Effect.gen(function* () {
    const jobId = yield* h.start(conformanceJobFixture, how === "terminate" ? ["child", "stubborn"] : ["child"])
    yield* h.waitEvent("Started", jobId)
    yield* h.until("the child's pid file", () => fs.existsSync(path.join(h.workspace, jobId, conformanceJobFacts.childPidFile)))
    const child = Number(fs.readFileSync(path.join(h.workspace, jobId, conformanceJobFacts.childPidFile), "utf8"))
    if (how === "exit") yield* ask(h, jobId, conformanceJobFacts.topics.exit)
    else yield* h.executor.abortApp(jobId)
    yield* h.executor.awaitCompletion(jobId)
    const gone = yield* Effect.either(h.until("the job's processes to be gone", () => processesOfJob(jobId).length === 0, 3_000))
    const left = processesOfJob(jobId)
    // the probe's own cleanup: nothing of it may outlive the test
    for (const pid of [...left, child]) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // gone
      }
    }
    return gone._tag === "Left" ? `after the ${how}, process(es) ${left.join(", ")} of the job still run 3 s after its completion` : undefined
  })

/** A job writing 1.5 MiB: does it end? */
const floodProbe: Probe = (h) =>
  Effect.gen(function* () {
    const jobId = yield* h.start("conformance-flood")
    const done = yield* h.executor.awaitCompletion(jobId).pipe(Effect.timeout(Duration.seconds(4)), Effect.option)
    if (Option.isNone(done)) return "a job that wrote 1.5 MiB has not ended after 4 s (its pipe is full, nobody reads it)"
    return done.value.returnCode === 0 ? undefined : `a job that wrote 1.5 MiB ended ${JSON.stringify(done.value)}, not 0`
  })

const minimal = (flaws: Parameters<typeof minimalLauncher>[0]) => () => Effect.succeed(minimalLauncher(flaws))
const minimalBaseline = () => Effect.succeed(minimalLauncher())

// ---- the broken launchers ---------------------------------------------------------------------

/** One broken launcher: its factory, the promise (issue point) it breaks, and the group and test that must catch it. */
export interface Broken {
  readonly point: number
  readonly group: string
  /** A part of the title of the test that must fail. */
  readonly test: string
  readonly make: () => Effect.Effect<JobLauncher, never, Scope.Scope>
  readonly probe: Probe
  /** The unbroken launcher the probe is also run on (default: the in-memory launcher). */
  readonly baseline?: () => Effect.Effect<JobLauncher, never, Scope.Scope>
}

const escalate = "terminate({ killAfter }) escalates on time"

/** Each broken launcher. */
export const brokenLaunchers: Record<string, Broken> = {
  /** terminate does nothing. */
  "terminate-noop": { point: 1, group: "control", test: escalate, make: broken(handles((h) => Effect.succeed({ ...h, terminate: () => Effect.void }))), probe: escalationProbe },
  /** Any non-zero exit code is reported as 1. */
  "exit-code-misreported": {
    point: 3,
    group: "outcomes",
    test: "exit 0 → 0; exit 101–104",
    make: broken(mapExit((e) => (e.code !== null && e.code !== 0 ? { ...e, code: 1 } : e))),
    probe: exitProbe("code7")
  },
  /** A signal is reported as the shell's 128+n code. */
  "signal-as-code": {
    point: 3,
    group: "outcomes",
    test: "a job killed by SIGKILL: exactly",
    make: broken(mapExit((e) => (e.signal !== null ? { ...e, code: 128 + (signalNumbers[e.signal] ?? 1), signal: null } : e))),
    probe: exitProbe("sigkill")
  },
  /** wait resolves (code 0) at once, before the job ends. */
  "wait-early": {
    point: 4,
    group: "lifecycle",
    test: "Starting → Started → Stopped",
    make: broken(handles((h) => Effect.succeed({ ...h, wait: Effect.as(Effect.yieldNow(), { code: 0, signal: null, oomKilled: false, lost: false }) }))),
    probe: waitEarlyProbe
  },
  /** poll and wait never see the end. */
  "wait-never": {
    point: 4,
    group: "lifecycle",
    test: "a job that exits 0",
    make: broken(handles((h) => Effect.succeed({ ...h, wait: Effect.never, poll: Effect.succeedNone }))),
    probe: afterExitProbe
  },
  /** Every exit is reported as lost. */
  "always-lost": { point: 3, group: "lifecycle", test: "a job that exits 0", make: broken(mapExit((e) => ({ ...e, lost: true }))), probe: exitProbe("exit0") },
  /** FLEXEC_CHANNEL_TOKEN does not reach the job. */
  "no-channel-token": { point: 5, group: "lifecycle", test: "Starting → Started → Stopped", make: broken(withoutEnv("FLEXEC_CHANNEL_TOKEN")), probe: connectsProbe },
  /** FLEXEC_JOB_ID does not reach the job. */
  "no-job-id": { point: 5, group: "lifecycle", test: "Starting → Started → Stopped", make: broken(withoutEnv("FLEXEC_JOB_ID")), probe: connectsProbe },
  /** capabilities.logs is true, but the logs are dropped. */
  "logs-dropped": { point: 6, group: "logs", test: "handle.logs holds every line", make: broken(handles((h) => Effect.succeed({ ...h, logs: Stream.empty }))), probe: logsProbe("lines") },
  /** The job outlives its scope: launched in a scope nobody closes, and terminate reports an exit without killing it. */
  "leaky-terminate": {
    point: 1,
    group: "control",
    test: escalate,
    make: broken((l) => ({
      launch: (request) =>
        Effect.gen(function* () {
          const detached = yield* Scope.make()
          const handle = yield* l.launch(request).pipe(Scope.extend(detached))
          const fake = yield* Deferred.make<JobExit>()
          return {
            ...handle,
            wait: Effect.raceFirst(handle.wait, Deferred.await(fake)),
            terminate: () => Deferred.succeed(fake, { code: null, signal: "SIGTERM", oomKilled: false, lost: false }).pipe(Effect.asVoid)
          }
        })
    })),
    probe: escalationProbe
  },
  /** Claims recover, but recover finds nothing. */
  "recover-lies": {
    point: 8,
    group: "recovery",
    test: "reaped by the next executor",
    make: broken((l) => ({ capabilities: { ...l.capabilities, recover: true }, recover: () => Effect.succeed([]) })),
    probe: recoverProbe
  },
  // ---- point 1: escalation --------------------------------------------------------------------
  /** SIGKILLs at once, whatever killAfter says. */
  "kill-at-once": {
    point: 1,
    group: "control",
    test: escalate,
    make: broken(handles((h) => Effect.succeed({ ...h, terminate: () => h.terminate({ killAfter: Duration.millis(0) }) }))),
    probe: escalationProbe
  },
  /** Escalates on its own timetable (the request's kill timeout), ignoring killAfter. */
  "own-timetable": {
    point: 1,
    group: "control",
    test: escalate,
    make: broken(handles((h) => Effect.succeed({ ...h, terminate: () => h.terminate() }))),
    probe: escalationProbe
  },
  /** Sends SIGTERM and never escalates. */
  "never-escalates": {
    point: 1,
    group: "control",
    test: escalate,
    make: broken(handles((h) => Effect.succeed({ ...h, terminate: () => h.terminate({ killAfter: Duration.hours(1) }) }))),
    probe: escalationProbe
  },
  // ---- point 3: exact exit records ------------------------------------------------------------
  /** A SIGTERM death is reported as SIGKILL. */
  "sigterm-as-sigkill": {
    point: 3,
    group: "outcomes",
    test: "a job dead of SIGTERM: exactly",
    make: broken(mapExit((e) => (e.signal === "SIGTERM" ? { ...e, signal: "SIGKILL" } : e))),
    probe: exitProbe("sigterm")
  },
  /** Every signal death is flagged as an OOM kill. */
  "signal-as-oom": {
    point: 3,
    group: "outcomes",
    test: "a job killed by SIGKILL: exactly",
    make: broken(mapExit((e) => (e.signal !== null ? { ...e, oomKilled: true } : e))),
    probe: exitProbe("sigkill")
  },
  /** A death by signal is reported as lost (no exit record). */
  "signal-as-lost": {
    point: 3,
    group: "outcomes",
    test: "a job killed by SIGKILL: exactly",
    make: broken(mapExit((e) => (e.signal !== null ? { code: null, signal: null, oomKilled: false, lost: true } : e))),
    probe: exitProbe("sigkill")
  },
  // ---- point 4: the handle after the exit -----------------------------------------------------
  /** wait resolves once; every later wait hangs. */
  "wait-once": {
    point: 4,
    group: "handle",
    test: "after the exit: wait resolves again",
    make: broken(
      handles((h) =>
        Effect.sync(() => {
          let waited = false
          return { ...h, wait: Effect.suspend(() => (waited ? Effect.never : Effect.tap(h.wait, () => Effect.sync(() => void (waited = true))))) }
        })
      )
    ),
    probe: afterExitProbe
  },
  /** poll never reports the exit (wait does). */
  "poll-never": { point: 4, group: "handle", test: "after the exit: wait resolves again", make: broken(handles((h) => Effect.succeed({ ...h, poll: Effect.succeedNone }))), probe: afterExitProbe },
  /** terminate after the exit dies. */
  "terminate-dies-after-exit": {
    point: 4,
    group: "handle",
    test: "after the exit: wait resolves again",
    make: broken(
      handles((h) =>
        Effect.succeed({ ...h, terminate: (o) => Effect.flatMap(h.poll.pipe(Effect.orDie), (p) => (Option.isSome(p) ? Effect.dieMessage("terminate: the job has ended") : h.terminate(o))) })
      )
    ),
    probe: afterExitProbe
  },
  // ---- point 5: what the job really got -------------------------------------------------------
  /** The parent's environment leaks into the job. */
  "env-leak": {
    point: 5,
    group: "environment",
    test: "the job's environment is exactly",
    make: broken(requests((r) => ({ ...r, env: { ...(process.env as Record<string, string>), ...r.env } }))),
    probe: reportedProbe("env")
  },
  /** The FL credentials do not reach the job. */
  "no-credentials": {
    point: 5,
    group: "environment",
    test: "the job's environment is exactly",
    make: broken(withoutEnv("FLEXEC_JOB_AUTH_TOKEN", "FLEXEC_JOB_TOKEN_SIGNATURE", "FLEXEC_JOB_SSID")),
    probe: reportedProbe("env")
  },
  /** The job runs in the workspace, not its job directory. */
  "wrong-cwd": {
    point: 5,
    group: "environment",
    test: "the job runs in its job directory",
    make: broken(requests((r) => ({ ...r, paths: { ...r.paths, jobDir: r.paths.workspace } }))),
    probe: reportedProbe("cwd")
  },
  /** Claims gpus, gives the job none. */
  "claims-gpus": {
    point: 5,
    group: "environment",
    test: "a job with GPUs sees exactly its allocation",
    make: broken((l) => ({ capabilities: { ...l.capabilities, gpus: true } })),
    probe: gpuClaimProbe
  },
  // ---- point 6: logs --------------------------------------------------------------------------
  /** The last line of the output is lost. */
  "logs-lose-last-line": {
    point: 6,
    group: "logs",
    test: "handle.logs holds every line",
    make: broken(
      handles((h) =>
        Effect.succeed({
          ...h,
          logs: Stream.zipWithNext(h.logs!).pipe(Stream.filterMap(([line, next]) => (Option.isSome(next) ? Option.some(line) : Option.none())))
        })
      )
    ),
    probe: logsProbe("lines")
  },
  /** stderr lines are labelled stdout. */
  "logs-mislabel-stderr": {
    point: 6,
    group: "logs",
    test: "handle.logs holds every line",
    make: broken(handles((h) => Effect.succeed({ ...h, logs: Stream.map(h.logs!, (l) => ({ ...l, stream: "stdout" as const })) }))),
    probe: logsProbe("lines")
  },
  /** The logs stream never ends. */
  "logs-never-end": {
    point: 6,
    group: "logs",
    test: "and ends after the exit",
    make: broken(handles((h) => Effect.succeed({ ...h, logs: Stream.concat(h.logs!, Stream.never) }))),
    probe: logsProbe("end")
  },
  /** The job log file is never written (the output goes elsewhere). */
  "no-log-file": {
    point: 6,
    group: "logs",
    test: "paths.logFile holds the job's output",
    make: broken(requests((r) => ({ ...r, paths: { ...r.paths, logFile: path.join(os.tmpdir(), `flxc-broken-log-${r.jobId}.txt`) } }))),
    probe: logsProbe("file")
  },
  // ---- point 7: claimed capabilities ----------------------------------------------------------
  /** Claims a memory limit it does not have. */
  "claims-memory-limit": {
    point: 7,
    group: "outcomes",
    test: "a job over its memory limit",
    make: broken((l) => ({ capabilities: { ...l.capabilities, memoryLimit: true } })),
    probe: memoryProbe
  },
  // ---- point 9: abort during the launch -------------------------------------------------------
  /** The job starts before its release is registered: an abort during the launch leaks it. */
  "launch-abort-leak": {
    point: 9,
    group: "launch abort",
    test: "abortApp at delays from 0",
    make: broken((l) => ({
      launch: (request) =>
        Effect.gen(function* () {
          const detached = yield* Effect.acquireRelease(Scope.make(), () => Effect.void)
          const handle = yield* Effect.uninterruptible(l.launch(request).pipe(Scope.extend(detached)))
          // "finish the setup" before the job is tied to the launch's scope
          yield* Effect.sleep(Duration.millis(15))
          yield* Effect.addFinalizer(() => Scope.close(detached, Exit.void))
          return handle
        })
    })),
    probe: launchAbortProbe
  },
  // ---- point 10: validate ---------------------------------------------------------------------
  /** No validate at all. */
  "no-validate": {
    point: 10,
    group: "validate",
    test: "an unknown key under launcher_spec",
    make: () => Effect.map(base(), (l): InMemoryLauncher => { const { validate: _v, ...rest } = l; return rest as InMemoryLauncher }),
    probe: validateProbe
  },
  /** validate accepts anything. */
  "validate-accepts-all": { point: 10, group: "validate", test: "an unknown key under launcher_spec", make: broken(() => ({ validate: () => Effect.void })), probe: validateProbe },
  /** validate refuses even a valid spec. */
  "validate-refuses-all": {
    point: 10,
    group: "validate",
    test: "a valid launcher_spec for the launcher",
    make: broken(() => ({ validate: (meta) => Effect.fail(new InvalidJobMeta({ jobId: meta.job_id ?? "", issues: "launcher_spec: refused" })) })),
    probe: validateProbe
  }
}

Object.assign(brokenLaunchers, {
  // ---- point 2: the whole tree (real processes: a minimal process launcher with one flaw) ----
  /** WRITING_A_BACKEND.md §4 as it was printed: the release kills nothing once the leader exited, and no validate. */
  "docs-minimal-as-printed": {
    point: 2,
    group: "tree",
    test: "a cooperative abort where the leader exits first",
    make: minimal({ releaseSkipsExited: true, noValidate: true }),
    probe: treeProbe("abort"),
    baseline: minimalBaseline
  },
  /** The release skips a leader that exited 0: its child keeps running. */
  "release-skips-exited-leader": {
    point: 2,
    group: "tree",
    test: "a normal exit of the leader",
    make: minimal({ releaseSkipsExited: true }),
    probe: treeProbe("exit"),
    baseline: minimalBaseline
  },
  /** SIGTERM and SIGKILL go to the leader only, never its group. */
  "signals-leader-only": {
    point: 2,
    group: "tree",
    test: "terminate of a SIGTERM-ignoring leader",
    make: minimal({ leaderOnly: true }),
    probe: treeProbe("terminate"),
    baseline: minimalBaseline
  },
  /** stdout and stderr are pipes nobody reads: a job writing more than a pipe buffer blocks. */
  "pipes-unread": {
    point: 6,
    group: "logs",
    test: "writes more than 1 MiB",
    make: minimal({ pipesUnread: true }),
    probe: floodProbe,
    baseline: minimalBaseline
  }
} satisfies Record<string, Broken>)

/** The names of the broken launchers. */
export type BrokenName = keyof typeof brokenLaunchers
