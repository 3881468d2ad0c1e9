// Where a 1 MiB sendToJob's time goes: parent (call → first write → the reply's
// data → done) and worker (first data → last data → reply write, from
// tools/worker-bulk-stamps.cjs), flexec and raw. Effect API, one fiber.
import { randomFillSync } from "node:crypto"
import { MiB } from "../lib/common.mjs"
import { breakdown } from "../lib/breakdown.mjs"

const n = Number(process.argv[2] ?? 200)
const size = Number(process.argv[3] ?? MiB)
const payload = randomFillSync(Buffer.allocUnsafe(size))
const worker = await breakdown({
  tag: "bulkbrk",
  preload: "worker-bulk-stamps.cjs",
  resultFile: "worker-bulk-stamps.json",
  params: (jobId) => ({ jobId, channel: "bench", topic: "sink", message: { headers: {}, payload }, timeout: 60_000 }),
  rawOp: 2,
  rawData: payload,
  n,
  warm: 20,
  digits: 0
})
for (const s of worker) {
  console.log(`worker socket: n=${s.n}, first → last data ${s.recvUs.toFixed(0)} µs over ${s.chunks} chunks, last data → reply write ${s.toReplyUs.toFixed(0)} µs`)
}
