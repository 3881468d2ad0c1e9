// 1. Job start on the process backend: startApp → Started, against a raw
// child_process.spawn of a minimal Node script that connects to a unix socket
// and says hello. Paired and interleaved; both children get the same
// environment (flexec's allowlist), the same node binary, their own process
// group and piped stdout/stderr.
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { createProcessExecutor } from "@flexec/executor-process"
import { eventPump, fmtMs, interleaved, jobLikeEnv, median, now, pct, rawServer, site, tempDir, timedStart, workersDir } from "../lib/common.mjs"
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
  const flexecOnce = timedStart(executor, pump, workspace, "sp")
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
  let A, B
  try {
    ;({ A, B } = await interleaved({ warm, n }, flexecOnce, rawOnce))
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
