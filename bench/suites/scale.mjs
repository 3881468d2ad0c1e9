// 5. Scale: N (200) concurrent echo jobs on the process backend. All must
// reach Started; the parent's RSS and heap growth per job (after a GC, beyond
// the children), bar ≤ 1 MiB each; checkStatus and sendToJob latency at N jobs
// within 2× of at 1 job; aborting all N returns within grace + 1 s.
import * as fs from "node:fs"
import { createProcessExecutor } from "@flexec/executor-process"
import { deployJob, eventPump, fmtMs, fmtUs, gc, jsonPayloadOf, median, MiB, now, pct, site, sleep, tempDir } from "../lib/common.mjs"
import { row } from "../lib/row.mjs"

export const name = "scale"

/** The executor's default grace period (DESIGN: graceMs 10000); the bar is grace + 1 s. */
const graceMs = 10_000

export async function run({ quick, log }) {
  const N = quick ? 40 : 200
  const q = quick ? 100 : 400
  const workspace = tempDir("flexec-bench-ws-")
  const executor = await createProcessExecutor({
    client: { clientName: site },
    instanceId: `bench-sc-${process.pid}`,
    graceMs,
    killTimeoutMs: 1000,
    startTimeoutMs: 180_000
  })
  const pump = eventPump(executor)
  const ids = Array.from({ length: N }, (_, i) => `sc-${i + 1}`)
  for (const id of ids) deployJob(workspace, id)
  const message = { headers: {}, payload: jsonPayloadOf(64) }
  const latencies = async (target, count = q) => {
    const status = []
    const send = []
    for (let i = 0; i < count; i++) {
      const id = target()
      let t0 = now()
      await executor.checkStatus(id)
      status.push(now() - t0)
      t0 = now()
      await executor.sendToJob({ jobId: id, channel: "bench", topic: "echo", message, timeout: 10_000 })
      send.push(now() - t0)
    }
    return { status, send }
  }
  const mem = async () => {
    await sleep(200)
    gc()
    const m = process.memoryUsage()
    return { rss: m.rss, heap: m.heapUsed }
  }
  /** The parent's CPU (ms per s) while its jobs sit idle: periodic per-job work shows here. */
  const idleCpu = async () => {
    const c0 = process.cpuUsage()
    const t0 = now()
    await sleep(2000)
    const c = process.cpuUsage(c0)
    return (c.user + c.system) / 1000 / ((now() - t0) / 1000)
  }
  const rows = []
  let started = 0
  try {
    await executor.startApp({ jobId: ids[0], args: { workspace } })
    await pump.waitFor(ids[0], "Started")
    await latencies(() => ids[0], 1000) // warm-up (JIT)
    const one = await latencies(() => ids[0])
    const m1 = await mem()
    const idle1 = await idleCpu()
    const t0 = now()
    await Promise.all(ids.slice(1).map((jobId) => executor.startApp({ jobId, args: { workspace } })))
    const startResults = await Promise.allSettled(ids.slice(1).map((id) => pump.waitFor(id, "Started", 180_000)))
    started = 1 + startResults.filter((r) => r.status === "fulfilled").length
    // measure on the jobs that did start (a miss is already reported by the first row)
    const live = [ids[0], ...ids.slice(1).filter((_, i) => startResults[i].status === "fulfilled")]
    const allStartedMs = now() - t0
    log(`scale: ${started}/${N} Started in ${fmtMs(allStartedMs)} ms`)
    const mN = await mem()
    const idleN = await idleCpu()
    let k = 0
    // the same (warm) job as at 1 job, so the parent's scaling is what is compared;
    // round robin over all jobs is reported too (each child then runs cold, unoptimized code)
    const many = await latencies(() => ids[0])
    const roundRobin = await latencies(() => live[k++ % live.length])
    const perJobRss = (mN.rss - m1.rss) / Math.max(1, live.length - 1)
    const perJobHeap = (mN.heap - m1.heap) / Math.max(1, live.length - 1)
    const ta = now()
    await Promise.all(live.map((id) => executor.abortApp(id)))
    const abortMs = now() - ta
    log(`scale: per job rss ${(perJobRss / 1024).toFixed(0)} KiB heap ${(perJobHeap / 1024).toFixed(0)} KiB; abort all ${fmtMs(abortMs)} ms`)
    rows.push(
      row({ id: "5", what: `${N} concurrent jobs reach Started`, flexec: `${started}/${N}`, raw: `${N}`, ratio: started / N, bar: { op: ">=", value: 1 }, note: `all Started ${fmtMs(allStartedMs)} ms after the first startApp` }),
      row({ id: "5", what: `parent RSS growth per job (MiB), ${live.length} jobs`, flexec: `${(perJobRss / MiB).toFixed(3)} MiB`, raw: "1 MiB", ratio: perJobRss / MiB, bar: { op: "<=", value: 1 }, note: `RSS ${(m1.rss / MiB).toFixed(0)} → ${(mN.rss / MiB).toFixed(0)} MiB after GC` }),
      row({ id: "5", what: `parent heap growth per job (MiB), ${live.length} jobs`, flexec: `${(perJobHeap / MiB).toFixed(3)} MiB`, raw: "1 MiB", ratio: perJobHeap / MiB, bar: { op: "<=", value: 1 }, note: `heapUsed ${(m1.heap / MiB).toFixed(1)} → ${(mN.heap / MiB).toFixed(1)} MiB after GC` }),
      row({ id: "5", what: `checkStatus p50 at ${N} jobs vs at 1 job`, flexec: fmtUs(median(many.status)), raw: fmtUs(median(one.status)), ratio: median(many.status) / median(one.status), bar: { op: "<=", value: 2 }, note: `p99 ${fmtUs(pct(many.status, 99))} vs ${fmtUs(pct(one.status, 99))}` }),
      row({ id: "5", what: `sendToJob 64 B p50 at ${N} jobs vs at 1 job`, flexec: fmtUs(median(many.send)), raw: fmtUs(median(one.send)), ratio: median(many.send) / median(one.send), bar: { op: "<=", value: 2 }, note: `same job; p99 ${fmtUs(pct(many.send, 99))} vs ${fmtUs(pct(one.send, 99))}` }),
      row({ id: "5", what: `sendToJob 64 B p50, round robin over ${live.length} jobs vs 1 job`, flexec: fmtUs(median(roundRobin.send)), raw: fmtUs(median(one.send)), ratio: median(roundRobin.send) / median(one.send), note: "reported: each child gets ~2 requests, so its handler code runs cold" }),
      row({ id: "5", what: `parent CPU while the jobs idle, ${N} jobs vs 1 (ms/s)`, flexec: `${idleN.toFixed(1)} ms/s`, raw: `${idle1.toFixed(1)} ms/s`, ratio: idleN / idle1, note: "reported: periodic per-job work in the parent shows here" }),
      row({ id: "5", what: `abortApp of all ${live.length} started jobs (concurrent)`, flexec: `${fmtMs(abortMs)} ms`, raw: `${graceMs + 1000} ms`, ratio: abortMs / (graceMs + 1000), bar: { op: "<=", value: 1 }, note: `ratio = time / (grace ${graceMs} + 1000 ms)` })
    )
  } finally {
    pump.stop()
    await executor.close()
    fs.rmSync(workspace, { recursive: true, force: true })
  }
  return rows
}
