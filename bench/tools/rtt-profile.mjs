// Profiling aid for the RTT measurement: one echo job (which also serves the
// raw ping-pong), N sequential sendToJob and raw requests, with the child
// profiled when CHILD_PROF=<dir> (passed through the site's env option).
// Run the parent under `node --cpu-prof` to profile it too.
import { jsonPayloadOf, median, now } from "../lib/common.mjs"
import { startEchoPair } from "../suites/rtt.mjs"

const n = Number(process.argv[2] ?? 3000)
if (process.env.SPIN) { const spin = () => setImmediate(spin); spin() }
const opts = process.env.CHILD_PROF ? { command: [process.execPath, "--cpu-prof", `--cpu-prof-dir=${process.env.CHILD_PROF}`, "{appDir}/main.js"] } : {}
const pair = await startEchoPair("prof", opts)
const payload = jsonPayloadOf(64)
const raw = Buffer.from(JSON.stringify(payload))
const A = []
const B = []
for (let i = 0; i < n; i++) {
  let t0 = now()
  await pair.executor.sendToJob({ jobId: pair.jobId, channel: "bench", topic: "echo", message: { headers: {}, payload }, timeout: 5000 })
  A.push(now() - t0)
  t0 = now()
  await pair.peer.request(1, raw)
  B.push(now() - t0)
}
console.log(`flexec p50 ${(median(A) * 1000).toFixed(0)} µs, raw p50 ${(median(B) * 1000).toFixed(0)} µs`)
await pair.close()
