// 3. Bulk payload: sendToJob with 1 MiB and 64 MiB binary payloads to a sink
// handler (small reply), MB/s against the raw socket's MB/s to the same
// process. Parent RSS growth during the 64 MiB transfers (peak − before,
// after a GC, payload already allocated). Also checks that the payload is not
// copied on the receive path: the worker sees a view into its one read buffer
// (byteOffset > 0), and so does the parent for a 1 MiB echo reply.
import { randomFillSync } from "node:crypto"
import { fmtMs, gc, interleaved, median, MiB, now, rssSampler } from "../lib/common.mjs"
import { row } from "../lib/row.mjs"
import { startEchoPair } from "./rtt.mjs"

export const name = "bulk"

const mbps = (bytes, ms) => bytes / 1e6 / (ms / 1000)

export async function run({ quick, log }) {
  const pair = await startEchoPair("bulk")
  const { executor, jobId, peer } = pair
  const rows = []
  try {
    for (const [size, warm, n] of [
      [1 * MiB, quick ? 3 : 10, quick ? 10 : 60],
      [64 * MiB, 1, quick ? 2 : 8]
    ]) {
      const payload = randomFillSync(Buffer.allocUnsafe(size))
      const message = { headers: {}, payload }
      /** @type {any} */
      let viewInfo
      const flexecOnce = async () => {
        const t0 = now()
        const reply = await executor.sendToJob({ jobId, channel: "bench", topic: "sink", message, timeout: 60_000 })
        const dt = now() - t0
        if (/** @type {any} */ (reply.payload).len !== size) throw new Error("bad sink reply")
        viewInfo = reply.payload
        return dt
      }
      const rawOnce = async () => {
        const t0 = now()
        const reply = await peer.request(2, payload)
        const dt = now() - t0
        if (reply.readDoubleBE(0) !== size) throw new Error("bad raw sink reply")
        return dt
      }
      const rssA = []
      const rssB = []
      // each measured run also records the parent's RSS growth during it
      const measured = (f, rss) => async () => {
        if (size >= 64 * MiB) gc()
        const before = process.memoryUsage.rss()
        const sampler = rssSampler(1)
        const dt = await f()
        rss.push(sampler.stop() - before)
        return dt
      }
      for (let i = 0; i < warm; i++) {
        await flexecOnce()
        await rawOnce()
      }
      const { A, B } = await interleaved({ warm: 0, n }, measured(flexecOnce, rssA), measured(rawOnce, rssB))
      const label = size >= MiB ? `${size / MiB} MiB` : `${size} B`
      const fa = mbps(size, median(A))
      const fb = mbps(size, median(B))
      log(`bulk ${label}: flexec ${fa.toFixed(0)} MB/s, raw ${fb.toFixed(0)} MB/s`)
      rows.push(
        row({
          id: "3",
          what: `bulk ${label} sendToJob, MB/s (n=${n})`,
          flexec: `${fa.toFixed(0)} MB/s`,
          raw: `${fb.toFixed(0)} MB/s`,
          ratio: fa / fb,
          bar: { op: ">=", value: 0.8 },
          note: `median ${fmtMs(median(A))} / ${fmtMs(median(B))} ms per transfer; worker got a view (offset ${viewInfo?.offset} in a ${viewInfo?.bufLen}-byte read buffer)`
        })
      )
      if (size >= 64 * MiB) {
        const maxA = Math.max(...rssA)
        rows.push(
          row({
            id: "3",
            what: `parent RSS growth during 64 MiB sendToJob, max (× payload)`,
            flexec: `${(maxA / MiB).toFixed(1)} MiB`,
            raw: `${(Math.max(...rssB) / MiB).toFixed(1)} MiB`,
            ratio: maxA / size,
            bar: { op: "<=", value: 3 },
            note: "ratio = flexec's delta / payload size (the raw column is the raw socket's delta, for reference)"
          })
        )
      }
    }
    // the parent's receive path: a 1 MiB echo's reply must be a view into the read buffer
    const echoed = await executor.sendToJob({ jobId, channel: "bench", topic: "echo", message: { headers: {}, payload: Buffer.alloc(MiB, 7) }, timeout: 60_000 })
    const p = echoed.payload
    const view = p instanceof Uint8Array && p.byteOffset > 0 && p.buffer.byteLength < p.byteLength + 64 * 1024
    rows.push(
      row({
        id: "3/7",
        what: "parent receive path: 1 MiB reply payload is a view into the one read buffer",
        flexec: view ? "view" : "copy",
        raw: "view",
        ratio: view ? 1 : 0,
        bar: { op: ">=", value: 1 },
        note: `byteOffset ${/** @type {any} */ (p).byteOffset}, buffer ${/** @type {any} */ (p).buffer.byteLength} B`
      })
    )
  } finally {
    await pair.close()
  }
  return rows
}
