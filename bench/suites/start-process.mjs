// 1. Job start on the process backend: startApp → Started, against a raw
// child_process.spawn of a minimal Node script that connects to a unix socket
// and says hello. Paired and interleaved; both children get the same
// environment (flexec's allowlist), the same node binary, their own process
// group and piped stdout/stderr.
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { createProcessExecutor } from "@flexec/executor-process"
import { deployJob, eventPump, fmtMs, jobLikeEnv, median, now, pct, rawServer, site, tempDir, workersDir } from "../lib/common.mjs"
import { row } from "../lib/row.mjs"

export const name = "start-process"

export async function run({ quick, log }) {
  const warm = quick ? 1 : 3
  const n = quick ? 5 : 30
  const workspace = tempDir("flexec-bench-ws-")
  const rawDir = tempDir("fxb-raw-")
  const sock = path.join(rawDir, "r.sock")
  const server = await rawServer(sock)
  const executor = await createProcessExecutor({ client: { clientName: site }, instanceId: `bench-sp-${process.pid}`, graceMs: 2000, killTimeoutMs: 1000 })
  const pump = eventPump(executor)
  const rawEnv = jobLikeEnv({ BENCH_SOCK: sock })
  let seq = 0
  const flexecOnce = async () => {
    const jobId = `sp-${++seq}`
    deployJob(workspace, jobId)
    const t0 = now()
    await executor.startApp({ jobId, args: { workspace } })
    const { at } = await pump.started(jobId)
    const dt = at - t0
    await executor.abortApp(jobId)
    await pump.waitFor(jobId, "Completed")
    pump.forget(jobId)
    fs.rmSync(path.join(workspace, jobId), { recursive: true, force: true })
    return dt
  }
  const rawOnce = async () => {
    const t0 = now()
    const child = spawn(process.execPath, [path.join(workersDir, "raw-hello.cjs")], {
      env: rawEnv,
      cwd: rawDir,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout.resume()
    child.stderr.resume()
    const exited = new Promise((r) => child.once("exit", r))
    const { peer, at } = await server.nextHello()
    const dt = at - t0
    peer.close()
    await exited
    return dt
  }
  const A = []
  const B = []
  try {
    for (let i = 0; i < warm; i++) {
      await flexecOnce()
      await rawOnce()
    }
    for (let i = 0; i < n; i++) {
      // A B, then B A: interleaved, and neither side always goes first
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
  const pairRatios = A.map((a, i) => a / B[i])
  log(`start-process: flexec p50 ${fmtMs(median(A))} ms, raw p50 ${fmtMs(median(B))} ms (n=${n})`)
  return [
    row({
      id: "1",
      what: `process job start p50 (n=${n})`,
      flexec: `${fmtMs(median(A))} ms`,
      raw: `${fmtMs(median(B))} ms`,
      ratio: median(A) / median(B),
      bar: { op: "<=", value: 1.15 },
      note: `p99 ${fmtMs(pct(A, 99))} / ${fmtMs(pct(B, 99))} ms; median of paired ratios ${median(pairRatios).toFixed(2)}`
    })
  ]
}
