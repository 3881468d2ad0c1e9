// 8. The Slurm backend on the local cluster (bash scripts/slurm-up.sh):
// (a) job start: startApp → Started, against raw sbatch (the same flags: --parsable --export=ALL,
//     --chdir, --mem, the wrapper exec'ing node) → the same hello over a unix socket. Both wait for
//     Slurm's scheduler tick (batch_sched_delay=0: up to ~1 s), which dominates and varies.
// (b) status with 100 queued jobs (held pending by --begin): squeue calls per second against the
//     poll rate (one call per tick whatever the count; the 1-job rate is in the note), and the parent's CPU per job.
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { ClientExecutor, makeJobExecutor } from "@flexec/core"
import { toPromiseExecutor } from "@flexec/core/promise"
import { createSlurmExecutor, SlurmJobLauncher } from "@flexec/executor-slurm"
import { Layer } from "effect"
import { benchDir, deployJob, eventPump, fmtMs, jobLikeEnv, median, now, pct, rawServer, site, sleep, tempDir, timedStart, workersDir } from "../lib/common.mjs"
import { row } from "../lib/row.mjs"

export const name = "start-slurm"

const slurmConf =
  process.env.FLEXEC_SLURM_CONF ??
  execFileSync("bash", [path.join(benchDir, "..", "scripts", "slurm-up.sh"), "--print-conf"], { encoding: "utf8" }).trim()

const skipped = (what, why) => [{ id: "8", what: `${what} (skipped: no Slurm cluster)`, flexec: "–", raw: "–", ratio: NaN, bar: undefined, pass: undefined, note: String(why).slice(0, 160) }]

export async function run({ quick, log }) {
  const probe = SlurmJobLauncher.make({ slurmConf })
  if (probe.problem !== undefined) {
    log(`start-slurm skipped: ${probe.problem.detail}`)
    return skipped("slurm job start", probe.problem.detail)
  }
  const rows = [...(await start({ quick, log })), ...(await queued({ quick, log }))]
  return rows
}

async function start({ quick, log }) {
  const warm = quick ? 1 : 2
  const n = quick ? 3 : 20
  const workspace = tempDir("flexec-bench-ws-")
  const rawDir = tempDir("fxb-sraw-")
  fs.copyFileSync(path.join(workersDir, "rawproto.cjs"), path.join(rawDir, "rawproto.cjs"))
  fs.copyFileSync(path.join(workersDir, "raw-hello.cjs"), path.join(rawDir, "raw-hello.cjs"))
  const wrapper = path.join(rawDir, "exec.sh")
  fs.writeFileSync(wrapper, '#!/bin/sh\nexec "$@"\n', { mode: 0o755 })
  const server = await rawServer(path.join(rawDir, "r.sock"))
  const executor = await createSlurmExecutor({
    client: { clientName: site },
    slurmConf,
    pollIntervalMs: 250,
    instanceId: `bench-ss-${process.pid}`,
    graceMs: 2000,
    killTimeoutMs: 1000
  })
  const pump = eventPump(executor)
  const flexecOnce = timedStart(executor, pump, workspace, "ss")
  let seq = 0
  const rawOnce = async () => {
    const t0 = now()
    const child = spawn(
      "sbatch",
      ["--parsable", "--export=ALL", `--chdir=${rawDir}`, "--output=/dev/null", "--mem=1024M", `--job-name=fxbench-raw-${process.pid}-${++seq}`,
        wrapper, process.execPath, path.join(rawDir, "raw-hello.cjs")],
      { stdio: ["ignore", "ignore", "pipe"], env: jobLikeEnv({ BENCH_SOCK: path.join(rawDir, "r.sock"), SLURM_CONF: slurmConf }) }
    )
    let err = ""
    child.stderr.on("data", (d) => (err += d))
    const code = await new Promise((r) => child.once("exit", r))
    if (code !== 0) throw new Error(`sbatch exited ${code}: ${err}`)
    const { peer, at } = await server.nextHello(60_000)
    peer.close()
    return at - t0
  }
  const A = []
  const B = []
  try {
    for (let i = 0; i < warm; i++) {
      await flexecOnce()
      await rawOnce()
    }
    for (let i = 0; i < n; i++) {
      if (i % 2 === 0) {
        A.push(await flexecOnce())
        B.push(await rawOnce())
      } else {
        B.push(await rawOnce())
        A.push(await flexecOnce())
      }
    }
  } finally {
    pump.stop()
    await executor.close()
    await server.close()
    fs.rmSync(workspace, { recursive: true, force: true })
    fs.rmSync(rawDir, { recursive: true, force: true })
  }
  log(`start-slurm: flexec p50 ${fmtMs(median(A))} ms, raw sbatch ${fmtMs(median(B))} ms`)
  return [
    row({
      id: "8",
      what: `slurm job start p50: sbatch → Started vs raw sbatch → hello (n=${n})`,
      flexec: `${fmtMs(median(A))} ms`,
      raw: `${fmtMs(median(B))} ms`,
      ratio: median(A) / median(B),
      bar: { op: "<=", value: 1.1 },
      note: `p90 ${fmtMs(pct(A, 90))} / ${fmtMs(pct(B, 90))} ms; both wait for the scheduler's tick`
    })
  ]
}

async function queued({ quick, log }) {
  const count = quick ? 20 : 100
  const windowMs = quick ? 3000 : 10_000
  const workspace = tempDir("flexec-bench-ws-")
  const launcher = SlurmJobLauncher.make({ slurmConf, pollIntervalMs: 1000, sbatchArgs: ["--begin=now+3600"] })
  const layer = Layer.scoped(
    ClientExecutor,
    makeJobExecutor({ client: { clientName: site }, launcher, instanceId: `bench-sq-${process.pid}`, startTimeoutMs: 600_000, graceMs: 500, killTimeoutMs: 500 })
  )
  const executor = await toPromiseExecutor(layer)
  const measure = async () => {
    const calls0 = launcher.squeueCalls()
    const cpu0 = process.cpuUsage()
    const t0 = now()
    await sleep(windowMs)
    const cpu = process.cpuUsage(cpu0)
    const seconds = (now() - t0) / 1000
    return { perSecond: (launcher.squeueCalls() - calls0) / seconds, cpuMsPerSecond: (cpu.user + cpu.system) / 1000 / seconds }
  }
  let one, many
  try {
    deployJob(workspace, "q-0")
    await executor.startApp({ jobId: "q-0", args: { workspace } })
    one = await measure()
    for (let i = 1; i < count; i++) {
      deployJob(workspace, `q-${i}`)
      await executor.startApp({ jobId: `q-${i}`, args: { workspace } })
    }
    many = await measure()
  } finally {
    await executor.close()
    fs.rmSync(workspace, { recursive: true, force: true })
  }
  log(`start-slurm: squeue ${one.perSecond.toFixed(2)}/s with 1 job, ${many.perSecond.toFixed(2)}/s with ${count}; parent CPU ${many.cpuMsPerSecond.toFixed(1)} ms/s`)
  return [
    row({
      id: "8",
      what: `slurm status: squeue calls/s with ${count} queued jobs vs the poll rate (1/s)`,
      flexec: `${many.perSecond.toFixed(2)}/s`,
      raw: "1.00/s",
      ratio: many.perSecond / 1,
      bar: { op: "<=", value: 1.1 },
      note: `with 1 job ${one.perSecond.toFixed(2)}/s; parent CPU with ${count} queued jobs ${many.cpuMsPerSecond.toFixed(1)} ms/s (${((many.cpuMsPerSecond / count) * 1000).toFixed(0)} µs/s per job), with 1 ${one.cpuMsPerSecond.toFixed(1)} ms/s`
    })
  ]
}
