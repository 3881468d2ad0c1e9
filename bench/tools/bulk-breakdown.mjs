// Where a 1 MiB sendToJob's time goes: parent (call → first write → the reply's
// data → done) and worker (first data → last data → reply write), flexec and raw.
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { randomFillSync } from "node:crypto"
import { Effect } from "effect"
import { median, now, MiB } from "../lib/common.mjs"
import { startEffectEchoPair } from "../suites/rtt.mjs"

const n = Number(process.argv[2] ?? 200)
const size = Number(process.argv[3] ?? MiB)
const stamps = { write: 0, data: 0 }
const write = net.Socket.prototype.write
net.Socket.prototype.write = function (...args) {
  if (stamps.write === 0) stamps.write = now()
  return write.apply(this, args)
}
const emit = net.Socket.prototype.emit
net.Socket.prototype.emit = function (name, ...args) {
  if (name === "data" && stamps.data === 0) stamps.data = now()
  return emit.call(this, name, ...args)
}
const preload = path.join(path.dirname(fileURLToPath(import.meta.url)), "worker-bulk-stamps.cjs")
const pair = await startEffectEchoPair("bulkbrk", { command: [process.execPath, "--require", preload, "{appDir}/main.js"] })
const payload = randomFillSync(Buffer.allocUnsafe(size))
const params = { jobId: pair.jobId, channel: "bench", topic: "sink", message: { headers: {}, payload }, timeout: 60_000 }
const rows = { flexec: { pre: [], wire: [], post: [], total: [] }, raw: { pre: [], wire: [], post: [], total: [] } }
const record = (into, t0, t1) => {
  into.pre.push(stamps.write - t0)
  into.wire.push(stamps.data - stamps.write)
  into.post.push(t1 - stamps.data)
  into.total.push(t1 - t0)
}
await pair.runtime.runPromise(Effect.gen(function* () {
  for (let i = 0; i < n + 20; i++) {
    stamps.write = stamps.data = 0
    const t0 = now()
    yield* pair.service.sendToJob(params)
    const t1 = now()
    if (i >= 20) record(rows.flexec, t0, t1)
    stamps.write = stamps.data = 0
    const r = yield* Effect.promise(async () => {
      const t0 = now()
      await pair.peer.request(2, payload)
      return [t0, now()]
    })
    if (i >= 20) record(rows.raw, r[0], r[1])
  }
}))
const us = (xs) => `${(median(xs) * 1000).toFixed(0)} µs`
for (const [k, v] of Object.entries(rows)) console.log(`${k.padEnd(7)} total ${us(v.total)}: before write ${us(v.pre)}, write → reply data ${us(v.wire)}, data → done ${us(v.post)}`)
await pair.runtime.runPromise(pair.service.abortApp(pair.jobId))
await pair.runtime.runPromise(pair.service.awaitCompletion(pair.jobId))
const file = path.join(pair.workspace, pair.jobId, "worker-bulk-stamps.json")
if (fs.existsSync(file)) for (const s of JSON.parse(fs.readFileSync(file, "utf8"))) console.log(`worker socket: n=${s.n}, first → last data ${s.recvUs.toFixed(0)} µs over ${s.chunks} chunks, last data → reply write ${s.toReplyUs.toFixed(0)} µs`)
await pair.close()
