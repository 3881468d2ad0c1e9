/**
 * The Slurm backend on the real cluster, beyond the conformance suite: what
 * the job and the cluster experienced (the job's real environment, the
 * processes left, Slurm's own record of the job), through a `slurmBin` of shims
 * that log every Slurm call and its argv.
 */
import { Message } from "@flexec/core"
import { makeConformanceContext, processesOfRun, runConformanceTest } from "@flexec/testing"
import { Chunk, Duration, Effect, Fiber, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { SlurmJobLauncher } from "../src/index.js"
import { baseOptions, countingSlurmBin, environOf, isDead, slurmConf, slurmReady, tempDir } from "./helpers.js"

const ready = slurmReady("launcher.test.ts")
// made only when the tests run (skipped files leave nothing in the temp dir)
const root = ready ? tempDir("flexec-slurm-launcher-") : ""
afterAll(() => {
  if (root !== "") fs.rmSync(root, { recursive: true, force: true })
})

const stat = (pid: number): ReadonlyArray<string> => {
  const text = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
  return text.slice(text.lastIndexOf(")") + 2).split(" ")
}
/** The session id of a process (field 6 of /proc/<pid>/stat). */
const sessionOf = (pid: number): number => Number(stat(pid)[3])

const scontrolJob = (slurmId: string): string =>
  execFileSync("scontrol", ["-o", "show", "job", slurmId], { encoding: "utf8", env: { ...process.env, SLURM_CONF: slurmConf } })

describe.skipIf(!ready)("slurm launcher on the cluster [needs a Slurm cluster: skipped without one, fails under FLEXEC_REQUIRE_SLURM=1]", () => {
  const bin = ready ? countingSlurmBin(root) : { dir: "", calls: () => [], timed: () => [] }
  const common = makeConformanceContext({
    name: "slurm-launcher",
    makeLauncher: ({ runtimeDir }) => SlurmJobLauncher.makeEffect({ ...baseOptions, slurmBin: bin.dir, runtimeDir, killTimeoutMs: 300 }),
    timeouts: { testMs: 60_000, eventMs: 20_000, graceMs: 300, killTimeoutMs: 300, startTimeoutMs: 20_000, processGoneMs: 8_000 }
  })

  it("abort of a job that ignores SIGTERM: its setsid'd SIGTERM-ignoring grandchild (another session) is gone too", async () => {
    let grandchild = 0
    const node = process.execPath
    // the grandchild: a new session (out of reach of a TERM to the job's session), ignoring SIGTERM
    const code = 'process.on("SIGTERM",()=>{});const fs=require("fs");fs.writeFileSync("setsid.pid.tmp",String(process.pid));fs.renameSync("setsid.pid.tmp","setsid.pid");setInterval(()=>{},1e6)'
    const script = `setsid ${JSON.stringify(node)} -e '${code}' & exec ${JSON.stringify(node)} "$0"`
    await runConformanceTest(
      common,
      (h) =>
        Effect.gen(function* () {
          const jobId = yield* h.start("ignore-abort")
          yield* h.waitEvent("Started", jobId)
          const file = path.join(h.workspace, jobId, "setsid.pid")
          yield* h.until("the setsid'd grandchild's pid file", () => fs.existsSync(file))
          grandchild = Number(fs.readFileSync(file, "utf8"))
          const leader = processesOfRun(jobId).find((pid) => pid !== grandchild && fs.readFileSync(`/proc/${pid}/cmdline`, "latin1").includes("main.js"))
          expect(leader, "the job's worker process").toBeDefined()
          expect(isDead(grandchild)).toBe(false)
          expect(sessionOf(grandchild), "the grandchild is in a session of its own").not.toBe(sessionOf(leader!))
          yield* h.executor.abortApp(jobId)
          const outcome = yield* h.executor.awaitCompletion(jobId)
          expect(outcome.returnCode).toBe(9)
          expect(outcome.exit).toMatchObject({ code: null, signal: "SIGKILL" })
          yield* h.until("the grandchild to be gone", () => isDead(grandchild), 5_000)
          // TERM first (--full), then the cgroup-wide KILL (--batch): never a plain scancel or --full KILL for a running job
          const cancels = bin.calls().filter((c) => c.startsWith("scancel ") && c.endsWith(` ${String(h.handles.get(jobId)?.info?.slurmJobId)}`))
          expect(cancels[0]).toMatch(/^scancel --full --signal=TERM /)
          expect(cancels[1]).toMatch(/^scancel --batch --signal=KILL /)
        }),
      { executorOptions: { command: ["/bin/sh", "-c", script, "{appDir}/main.js"] } }
    )
    expect(isDead(grandchild)).toBe(true)
  }, 90_000)

  it("the job's real environment is exactly its own (+ NODE_PATH, SLURM_CONF and Slurm's own): nothing of the parent's; the token never in argv, name or comment", async () => {
    const secretName = "FLEXEC_SLURM_TEST_PARENT_SECRET"
    const secret = `parent-secret-${process.pid}-${Date.now()}`
    process.env[secretName] = secret
    try {
      await runConformanceTest(common, (h) =>
        Effect.gen(function* () {
          const jobId = yield* h.start("conformance-echo")
          yield* h.waitEvent("Started", jobId)
          const request = h.requests.get(jobId)!
          const pids = processesOfRun(jobId)
          expect(pids.length).toBeGreaterThan(0)
          const env = environOf(pids[0]!)
          for (const [k, v] of Object.entries(env)) {
            expect(v.includes(secret), `${k} carries the parent's secret`).toBe(false)
          }
          expect(env[secretName]).toBeUndefined()
          for (const [k, v] of Object.entries(request.env)) if (k !== "NODE_PATH") expect(env[k], k).toBe(v)
          const slurmOwn = new Set(["ENVIRONMENT", "HOSTNAME", "PWD", "OLDPWD", "SLURMD_NODENAME", "TMPDIR", "NODE_PATH", "SLURM_CONF"])
          const extra = Object.keys(env).filter((k) => !(k in request.env) && !slurmOwn.has(k) && !k.startsWith("SLURM_"))
          expect(extra, "variables the job got from neither its request nor Slurm").toEqual([])
          expect(env.SLURM_CONF).toBe(slurmConf)
          expect(env.NODE_PATH?.split(path.delimiter)[0]).toBe(request.workerRuntime.nodePath)
          // the token: in the environment only
          const token = request.channel.token
          expect(env.FLEXEC_CHANNEL_TOKEN).toBe(token)
          const slurmId = String(h.handles.get(jobId)?.info?.slurmJobId)
          expect(bin.calls().some((c) => c.includes(token)), "the token in some Slurm command's argv").toBe(false)
          const shown = scontrolJob(slurmId)
          expect(shown).toContain(`JobName=flexec.${h.instanceId}.${jobId}`)
          expect(shown.includes(token), "the token in scontrol show job").toBe(false)
          // and the job answers
          const reply = yield* h.executor.sendToJob({ jobId, channel: "test", topic: "echo", message: Message.make({ ok: jobId }) })
          expect(reply.payload).toEqual({ ok: jobId })
        }))
    } finally {
      delete process.env[secretName]
    }
  }, 90_000)

  it("an OOM: Slurm says OUT_OF_MEMORY under the limit the job asked for, the outcome says oomKilled", () =>
    runConformanceTest(common, (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("allocate-until-oom", [2048], { meta: { resource_spec: { "site-1": { memory: "128Mi" } } } })
        const outcome = yield* h.executor.awaitCompletion(jobId)
        expect(outcome.exit).toEqual({ code: null, signal: "SIGKILL", oomKilled: true, lost: false })
        expect(outcome.returnCode).toBe(1)
        const shown = scontrolJob(String(h.handles.get(jobId)?.info?.slurmJobId))
        expect(shown).toContain("JobState=OUT_OF_MEMORY")
        expect(shown).toMatch(/MinMemoryNode=128M/)
        const sbatch = bin.calls().find((c) => c.startsWith("sbatch ") && c.includes(`--job-name=flexec.${h.instanceId}.${jobId}`))
        expect(sbatch).toContain("--mem=128M")
      })), 90_000)

  it("status is ONE squeue call per tick for all live jobs: calls track duration/interval, not the number of jobs", () =>
    runConformanceTest(common, (h) =>
      Effect.gen(function* () {
        const polls = () => bin.calls().filter((c) => c.startsWith("squeue -h -t all -j "))
        const intervalMs = baseOptions.pollIntervalMs!
        const windowMs = 3_000
        const measure = Effect.gen(function* () {
          const before = polls().length
          const start = Date.now()
          yield* Effect.sleep(windowMs)
          return { calls: polls().length - before, ms: Date.now() - start }
        })
        const first = yield* h.start("conformance-echo")
        yield* h.waitEvent("Started", first)
        const one = yield* measure
        const more = yield* Effect.forEach([1, 2, 3, 4, 5], () => h.start("conformance-echo"), { concurrency: "unbounded" })
        yield* Effect.forEach(more, (jobId) => h.waitEvent("Started", jobId), { discard: true })
        const six = yield* measure
        const ticks = (m: { ms: number }) => m.ms / intervalMs
        for (const [m, n] of [[one, 1], [six, 6]] as const) {
          // the poller sleeps an interval, then asks: at most one call per interval whatever the number of
          // jobs (a call per job would be 6 per interval with 6 jobs), and not much fewer (a slow squeue on
          // a loaded machine stretches a tick)
          expect(m.calls, `${n} job(s): ${m.calls} calls in ${m.ms} ms`).toBeLessThanOrEqual(Math.ceil(ticks(m)) + 1)
          expect(m.calls, `${n} job(s): ${m.calls} calls in ${m.ms} ms`).toBeGreaterThanOrEqual(Math.floor(ticks(m) * 0.4))
        }
        // each call of the second window asked for all six at once
        const ids = new Set([first, ...more].map((jobId) => String(h.handles.get(jobId)?.info?.slurmJobId)))
        for (const call of polls().slice(-six.calls)) expect(new Set(call.split(" ")[5]!.split(","))).toEqual(ids)
      })), 90_000)

  it("terminate({ killAfter }) of a running job that ignores SIGTERM: the TERM at once, the cgroup-wide KILL at killAfter (not later), then its end", () =>
    runConformanceTest(common, (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("ignore-abort")
        yield* h.waitEvent("Started", jobId)
        const handle = h.handles.get(jobId)!
        const slurmId = String(handle.info?.slurmJobId)
        const killAfter = 1500
        const t0 = Date.now()
        yield* handle.terminate({ killAfter: Duration.millis(killAfter) })
        const exit = yield* handle.wait
        expect(exit).toEqual({ code: null, signal: "SIGKILL", oomKilled: false, lost: false })
        const mine = bin.timed().filter((c) => c.call.startsWith("scancel ") && c.call.endsWith(` ${slurmId}`) && c.at >= t0)
        expect(mine.map((c) => c.call)).toEqual([`scancel --full --signal=TERM ${slurmId}`, `scancel --batch --signal=KILL ${slurmId}`])
        // the KILL's scancel began at killAfter after the call (the shim logs when it starts: the process spawn's
        // latency on a loaded machine is all that may come on top), never before
        const killAt = mine[1]!.at - t0
        expect(killAt, `the KILL was sent ${killAt} ms after terminate({ killAfter: ${killAfter} })`).toBeGreaterThanOrEqual(killAfter - 5)
        expect(killAt, `the KILL was sent ${killAt} ms after terminate({ killAfter: ${killAfter} })`).toBeLessThan(killAfter + 1000)
      })), 90_000)

  it("a pending job (held by the site's --begin) is cancelled (never signalled), once however often terminate is called", () => {
    const held = makeConformanceContext({
      name: "slurm-held",
      timeouts: common.timeouts,
      makeLauncher: ({ runtimeDir }) =>
        SlurmJobLauncher.makeEffect({ ...baseOptions, slurmBin: bin.dir, runtimeDir, killTimeoutMs: 300, sbatchArgs: ["--begin=now+3600"] })
    })
    return runConformanceTest(held, (h) =>
      Effect.gen(function* () {
        const jobId = yield* h.start("conformance-echo")
        yield* h.waitEvent("Launched", jobId)
        const handle = h.handles.get(jobId)!
        const slurmId = String(handle.info?.slurmJobId)
        expect(scontrolJob(slurmId)).toContain("JobState=PENDING")
        yield* Effect.all([handle.terminate(), handle.terminate(), handle.terminate()], { concurrency: "unbounded" })
        const outcome = yield* h.executor.awaitCompletion(jobId)
        expect(outcome.returnCode, "the engine counts our terminate of a Starting job as its abort or a start failure").not.toBe(0)
        expect(outcome.exit).toEqual({ code: null, signal: null, oomKilled: false, lost: false })
        expect(scontrolJob(slurmId)).toContain("JobState=CANCELLED")
        // a pending job cannot be signalled (scancel --signal would retry until its timeout): one plain cancel, once
        const cancels = bin.calls().filter((c) => c.startsWith("scancel ") && c.endsWith(` ${slurmId}`))
        expect(cancels).toEqual([`scancel ${slurmId}`])
      }))
  }, 90_000)

  it("the job's stdout and stderr reach log.txt and handle.logs, in order and labelled; the stream ends once the job ended and the file is drained", () =>
    runConformanceTest(
      common,
      (h) =>
        Effect.gen(function* () {
          const jobId = yield* h.start("exit-with", [0])
          yield* h.until("the job's handle", () => h.handles.has(jobId))
          const collected = yield* Stream.runCollect(h.handles.get(jobId)!.logs!).pipe(Effect.fork)
          expect((yield* h.executor.awaitCompletion(jobId)).returnCode).toBe(0)
          const got = Chunk.toArray(yield* Fiber.join(collected).pipe(Effect.timeout("10 seconds")))
          const lines = got.map((l) => l.line)
          const ours = lines.filter((l) => /^(line-\d|err-line)$/.test(l))
          expect(ours).toEqual(["line-1", "line-2", "line-3", "err-line"])
          // each line carries the stream the job wrote it to
          expect(got.filter((l) => /^(line-\d|err-line)$/.test(l.line)).map((l) => l.stream)).toEqual(["stdout", "stdout", "stdout", "stderr"])
          const file = fs.readFileSync(path.join(h.workspace, jobId, "log.txt"), "utf8").split("\n")
          expect(file.filter((l) => /^(line-\d|err-line)$/.test(l))).toEqual(ours)
        }),
      { executorOptions: { command: ["/bin/sh", "-c", 'for i in 1 2 3; do echo line-$i; done; echo err-line >&2; exec "$1" "$0"', "{appDir}/main.js", process.execPath] } }
    ), 90_000)
})
