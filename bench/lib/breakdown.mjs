// Shared by bench/tools/*-breakdown.mjs: timestamps of the first socket write
// and the first 'data' event after a mark (both flexec's and the raw sockets),
// and a paired loop over one Effect-API job that splits each round trip into
// before the write, write → reply data, and reply data → done.
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { median, now } from "./common.mjs"
import { startEffectEchoPair } from "../suites/rtt.mjs"

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

const toolsDir = path.join(path.dirname(path.dirname(fileURLToPath(import.meta.url))), "tools")

/**
 * Starts an Effect-API echo job with `tools/<preload>` preloaded, runs `warm` then `n` paired round
 * trips (`params` through sendToJob, then `rawOp`/`rawData` on the raw socket), prints the medians of
 * each part, and returns the job's `<cwd>/<resultFile>` (written by the preload at exit), parsed.
 */
export const breakdown = async ({ tag, preload, resultFile, params: paramsOf, rawOp, rawData, n, warm, digits = 1 }) => {
  const pair = await startEffectEchoPair(tag, { command: [process.execPath, "--require", path.join(toolsDir, preload), "{appDir}/main.js"] })
  const params = paramsOf(pair.jobId)
  const rows = { flexec: { pre: [], wire: [], post: [], total: [] }, raw: { pre: [], wire: [], post: [], total: [] } }
  const record = (into, t0, t1) => {
    into.pre.push(stamps.write - t0)
    into.wire.push(stamps.data - stamps.write)
    into.post.push(t1 - stamps.data)
    into.total.push(t1 - t0)
  }
  await pair.runtime.runPromise(
    Effect.gen(function* () {
      for (let i = 0; i < n + warm; i++) {
        stamps.write = stamps.data = 0
        const t0 = now()
        yield* pair.service.sendToJob(params)
        const t1 = now()
        if (i >= warm) record(rows.flexec, t0, t1)
        stamps.write = stamps.data = 0
        const r = yield* Effect.promise(async () => {
          const t0 = now()
          await pair.peer.request(rawOp, rawData)
          return [t0, now()]
        })
        if (i >= warm) record(rows.raw, r[0], r[1])
      }
    })
  )
  const us = (xs) => `${(median(xs) * 1000).toFixed(digits)} µs`
  for (const [k, v] of Object.entries(rows)) {
    console.log(`${k.padEnd(7)} total ${us(v.total)}: before write ${us(v.pre)}, write → reply data ${us(v.wire)}, data → done ${us(v.post)}`)
  }
  await pair.runtime.runPromise(pair.service.abortApp(pair.jobId))
  await pair.runtime.runPromise(pair.service.awaitCompletion(pair.jobId))
  const file = path.join(pair.workspace, pair.jobId, resultFile)
  const result = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : []
  await pair.close()
  return result
}
