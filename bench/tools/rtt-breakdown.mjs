// Where a sendToJob round trip's time goes, by timestamps taken in
// net.Socket.prototype.write / 'data' emission (flexec's and the raw sockets):
// before the write (encode, fiber), on the wire (kernel + worker), after the
// reply's data arrives (decode, resume, fiber exit). Effect API, one fiber.
// In the job: data → reply write, from tools/worker-stamps.cjs.
import { jsonPayloadOf } from "../lib/common.mjs"
import { breakdown } from "../lib/breakdown.mjs"

const n = Number(process.argv[2] ?? 5000)
const payload = jsonPayloadOf(64)
const worker = await breakdown({
  tag: "brk",
  preload: "worker-stamps.cjs",
  resultFile: "worker-stamps.json",
  params: (jobId) => ({ jobId, channel: "bench", topic: "echo", message: { headers: {}, payload }, timeout: 5000 }),
  rawOp: 1,
  rawData: Buffer.from(JSON.stringify(payload)),
  n,
  warm: 1000
})
for (const s of worker) if (s.n > 100) console.log(`worker: data → reply write p50 ${s.p50us.toFixed(1)} µs (n=${s.n})`)
