// Where a sendToJob round trip's time goes in the parent, by timestamps taken
// in net.Socket.prototype.write / 'data' emission (both flexec and raw sockets):
// before the write (encode, fiber), on the wire (kernel + worker), after the
// data arrives (decode, resume, fiber exit). Effect API, one fiber.
import * as net from "node:net"
import { Effect } from "effect"
import { jsonPayloadOf, median, now } from "../lib/common.mjs"
import { startEffectEchoPair } from "../suites/rtt.mjs"

const n = Number(process.argv[2] ?? 5000)
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
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
const stampsCjs = path.join(path.dirname(fileURLToPath(import.meta.url)), "worker-stamps.cjs")
const pair = await startEffectEchoPair("brk", { command: [process.execPath, "--require", stampsCjs, "{appDir}/main.js"] })
const payload = jsonPayloadOf(64)
const raw = Buffer.from(JSON.stringify(payload))
const params = { jobId: pair.jobId, channel: "bench", topic: "echo", message: { headers: {}, payload }, timeout: 5000 }
const rows = { flexec: { pre: [], wire: [], post: [] }, raw: { pre: [], wire: [], post: [] } }
const record = (into, t0, t1) => {
  into.pre.push(stamps.write - t0)
  into.wire.push(stamps.data - stamps.write)
  into.post.push(t1 - stamps.data)
}
await pair.runtime.runPromise(Effect.gen(function* () {
  for (let i = 0; i < n + 1000; i++) {
    stamps.write = stamps.data = 0
    let t0 = now()
    yield* pair.service.sendToJob(params)
    let t1 = now()
    if (i >= 1000) record(rows.flexec, t0, t1)
    stamps.write = stamps.data = 0
    const r = yield* Effect.promise(async () => {
      const t0 = now()
      await pair.peer.request(1, raw)
      return [t0, now()]
    })
    if (i >= 1000) record(rows.raw, r[0], r[1])
  }
}))
const us = (xs) => `${(median(xs) * 1000).toFixed(1)} µs`
for (const [k, v] of Object.entries(rows)) console.log(`${k.padEnd(7)} before write ${us(v.pre)}, write → data ${us(v.wire)}, data → done ${us(v.post)}`)
await pair.runtime.runPromise(pair.service.abortApp(pair.jobId))
await pair.runtime.runPromise(pair.service.awaitCompletion(pair.jobId))
const stampsFile = path.join(pair.workspace, pair.jobId, "worker-stamps.json")
if (fs.existsSync(stampsFile)) {
  for (const s of JSON.parse(fs.readFileSync(stampsFile, "utf8"))) if (s.n > 100) console.log(`worker: data → reply write p50 ${s.p50us.toFixed(1)} µs (n=${s.n})`)
}
await pair.close()
