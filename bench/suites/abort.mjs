// 6. Abort. Cooperative worker: time from abortApp to its return minus the
// worker's own exit time (the worker writes its exit time, wall-clock ms, to
// <jobDir>/exit-time from its process 'exit' handler), bar ≤ 50 ms. A worker
// that ignores abort and SIGTERM: abortApp returns within grace + kill timeout
// + 200 ms.
import * as fs from "node:fs"
import * as path from "node:path"
import { createProcessExecutor } from "@flexec/executor-process"
import { deployJob, eventPump, fmtMs, median, now, pct, site, sleep, tempDir, wallNow } from "../lib/common.mjs"
import { row } from "../lib/row.mjs"

export const name = "abort"

const graceMs = 1000
const killTimeoutMs = 1000

export async function run({ quick, log }) {
  const n = quick ? 5 : 20
  const nIgnore = quick ? 2 : 5
  const workspace = tempDir("flexec-bench-ws-")
  const executor = await createProcessExecutor({ client: { clientName: site }, instanceId: `bench-ab-${process.pid}`, graceMs, killTimeoutMs })
  const pump = eventPump(executor)
  let seq = 0
  const once = async (set) => {
    const jobId = `ab-${++seq}`
    const jobDir = deployJob(workspace, jobId)
    await executor.startApp({ jobId, args: { workspace, set } })
    await pump.started(jobId)
    await sleep(20)
    const t0 = now()
    const w0 = wallNow()
    await executor.abortApp(jobId)
    const total = now() - t0
    const wEnd = wallNow()
    let exitAt = NaN
    try {
      exitAt = Number(fs.readFileSync(path.join(jobDir, "exit-time"), "utf8"))
    } catch {}
    const outcome = (await pump.waitFor(jobId, "Completed")).event.outcome
    pump.forget(jobId)
    fs.rmSync(jobDir, { recursive: true, force: true })
    return { total, workerExit: exitAt - w0, overhead: wEnd - exitAt, rc: outcome.returnCode }
  }
  const coop = []
  const ignore = []
  try {
    await once({})
    for (let i = 0; i < n; i++) coop.push(await once({}))
    for (let i = 0; i < nIgnore; i++) ignore.push(await once({ ignoreAbort: true }))
  } finally {
    pump.stop()
    await executor.close()
    fs.rmSync(workspace, { recursive: true, force: true })
  }
  const over = coop.map((r) => r.overhead)
  const tot = coop.map((r) => r.total)
  const ign = ignore.map((r) => r.total)
  const bound = graceMs + killTimeoutMs + 200
  log(`abort: cooperative overhead p50 ${fmtMs(median(over))} ms; ignoring max ${fmtMs(Math.max(...ign))} ms`)
  return [
    row({
      id: "6",
      what: `abort, cooperative: abortApp return − worker exit, p50 (n=${n})`,
      flexec: `${fmtMs(median(over))} ms`,
      raw: "50 ms",
      ratio: median(over) / 50,
      bar: { op: "<=", value: 1 },
      note: `ratio = overhead / 50 ms; p99 ${fmtMs(pct(over, 99))} ms; abortApp total p50 ${fmtMs(median(tot))} ms, worker's own exit p50 ${fmtMs(median(coop.map((r) => r.workerExit)))} ms; rc ${[...new Set(coop.map((r) => r.rc))].join(",")}`
    }),
    row({
      id: "6",
      what: `abort, worker ignores abort + SIGTERM: abortApp, max (n=${nIgnore})`,
      flexec: `${fmtMs(Math.max(...ign))} ms`,
      raw: `${bound} ms`,
      ratio: Math.max(...ign) / bound,
      bar: { op: "<=", value: 1 },
      note: `ratio = time / (grace ${graceMs} + kill ${killTimeoutMs} + 200 ms); rc ${[...new Set(ignore.map((r) => r.rc))].join(",")}`
    })
  ]
}
