// Parent CPU per round trip, flexec and raw measured in separate stretches
// (user+system µs per request from process.cpuUsage), with the p50 latency.
import { jsonPayloadOf, median, now } from "../lib/common.mjs"
import { startEchoPair } from "../suites/rtt.mjs"

const n = Number(process.argv[2] ?? 5000)
const opts = process.env.CHILD_PROF ? { command: [process.execPath, "--cpu-prof", `--cpu-prof-dir=${process.env.CHILD_PROF}`, "{appDir}/main.js"] } : {}
const pair = await startEchoPair("cpu", opts)
const payload = jsonPayloadOf(64)
const raw = Buffer.from(JSON.stringify(payload))
const message = { headers: {}, payload }
const flexec = () => pair.executor.sendToJob({ jobId: pair.jobId, channel: "bench", topic: "echo", message, timeout: 5000 })
const rawOnce = () => pair.peer.request(1, raw)
const childCpu = async () => /** @type {any} */ ((await pair.executor.sendToJob({ jobId: pair.jobId, channel: "bench", topic: "cpu", message: { headers: {}, payload: null }, timeout: 5000 })).payload)
const stretch = async (once) => {
  const times = []
  const w0 = await childCpu()
  const c0 = process.cpuUsage()
  for (let i = 0; i < n; i++) {
    const t0 = now()
    await once()
    times.push(now() - t0)
  }
  const c = process.cpuUsage(c0)
  const w1 = await childCpu()
  return { p50: median(times) * 1000, user: c.user / n, system: c.system / n, wuser: (w1.user - w0.user) / n, wsys: (w1.system - w0.system) / n }
}
for (let i = 0; i < 500; i++) { await flexec(); await rawOnce() }
if (process.env.ONLY === "raw") { await stretch(rawOnce); await stretch(rawOnce); await pair.close(); process.exit(0) }
if (process.env.ONLY === "flexec") { await stretch(flexec); await stretch(flexec); await pair.close(); process.exit(0) }
for (let round = 0; round < 2; round++) {
  const f = await stretch(flexec)
  const r = await stretch(rawOnce)
  const show = (x) => `p50 ${x.p50.toFixed(0)} µs, parent cpu ${x.user.toFixed(0)}+${x.system.toFixed(0)} µs, worker cpu ${x.wuser.toFixed(0)}+${x.wsys.toFixed(0)} µs`
  console.log(`flexec ${show(f)} | raw ${show(r)}`)
}
await pair.close()
