// 3. Bulk payload: sendToJob with 1 MiB and 64 MiB binary payloads to a sink
// handler (small reply), MB/s against the raw socket's MB/s to the same
// process. Parent RSS growth during the 64 MiB transfers (peak − before,
// after a GC, payload already allocated). Also checks that the payload is not
// copied on the receive path: the worker sees a view into its one read buffer
// (byteOffset > 0), and so does the parent for a 1 MiB echo reply.
// Side by side with a peer: the same payload one way to a fork() child over
// Node's IPC channel with serialization "advanced" (structured clone), its
// reply the length. The three sides run in rotated rounds (A B C, B C A, …)
// after a warm-up; for 1 MiB enough rounds that the ratio's spread over the
// run (the rounds cut in 5 blocks, a ratio of medians in each) is printed.
import { randomFillSync } from "node:crypto"
import { fmtMs, gc, median, MiB, now, pct, rssSampler } from "../lib/common.mjs"
import { startForkEcho } from "../lib/peer-children.mjs"
import { bestPeerRow, peerRows, rounds, spreadOf, versionOf } from "../lib/peers.mjs"
import { row } from "../lib/row.mjs"
import { startEchoPair } from "./rtt.mjs"

export const name = "bulk"

const mbps = (bytes, ms) => bytes / 1e6 / (ms / 1000)

export async function run({ quick, log }) {
  const pair = await startEchoPair("bulk")
  const forkEcho = await startForkEcho()
  const { executor, jobId, peer } = pair
  const rows = []
  try {
    for (const [size, warm, n] of [
      [1 * MiB, quick ? 10 : 30, quick ? 40 : 300],
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
      const forkOnce = async () => {
        const t0 = now()
        const reply = await forkEcho.request("sink", payload)
        const dt = now() - t0
        if (reply.len !== size) throw new Error("bad fork sink reply")
        return dt
      }
      const rssA = []
      const rssB = []
      const rssC = []
      // each measured run also records the parent's RSS growth during it
      const measured = (f, rss) => async () => {
        if (size >= 64 * MiB) gc()
        const before = process.memoryUsage.rss()
        const sampler = rssSampler(1)
        const dt = await f()
        rss.push(sampler.stop() - before)
        return dt
      }
      const s = await rounds(
        { warm, n },
        { flexec: measured(flexecOnce, rssA), raw: measured(rawOnce, rssB), fork: measured(forkOnce, rssC) }
      )
      const A = s.flexec
      const B = s.raw
      const label = size >= MiB ? `${size / MiB} MiB` : `${size} B`
      const fa = mbps(size, median(A))
      const fb = mbps(size, median(B))
      const rateRatio = (x, y) => y / x // MB/s of flexec / MB/s of the other, from the times
      const vsRaw = spreadOf(A, B, rateRatio)
      const vsFork = spreadOf(A, s.fork, rateRatio)
      const paired = median(A.map((a, i) => B[i] / a))
      const spread = `median of per-round ratios flexec/raw ${paired.toFixed(2)}; spread over ${vsRaw.blocks} blocks of ${vsRaw.size} rounds: flexec/raw ${vsRaw.min.toFixed(2)}–${vsRaw.max.toFixed(2)}, flexec/fork ${vsFork.min.toFixed(2)}–${vsFork.max.toFixed(2)}`
      log(`bulk ${label}: flexec ${fa.toFixed(0)} MB/s, raw ${fb.toFixed(0)} MB/s, fork IPC ${mbps(size, median(s.fork)).toFixed(0)} MB/s; ${spread}`)
      rows.push(
        row({
          id: "3",
          what: `bulk ${label} sendToJob, MB/s (n=${n})`,
          flexec: `${fa.toFixed(0)} MB/s`,
          raw: `${fb.toFixed(0)} MB/s`,
          ratio: fa / fb,
          bar: { op: ">=", value: 0.8 },
          note: `median ${fmtMs(median(A))} / ${fmtMs(median(B))} ms per transfer; p99 ${fmtMs(pct(A, 99))} / ${fmtMs(pct(B, 99))} ms; ${spread}; worker got a view (offset ${viewInfo?.offset} in a ${viewInfo?.bufLen}-byte read buffer)`
        })
      )
      const contenders = [
        { who: "flexec sendToJob (Promise facade)", version: versionOf("@flexec/executor-process"), samples: A },
        { who: "raw", version: "u32 length | u8 op | data, unix socket", samples: B },
        { who: 'fork() IPC, serialization "advanced"', version: `node ${process.version}`, samples: s.fork }
      ]
      const rate = (ms) => mbps(size, ms)
      const fmtRate = (x) => `${x.toFixed(0)} MB/s`
      rows.push(
        bestPeerRow({ id: "3", what: `bulk ${label} one way, MB/s (n=${n})`, flexec: contenders[0], peers: contenders.slice(2), fmt: fmtRate, rate }),
        ...peerRows({ id: "3", figure: `bulk ${label} one way (binary), MB/s`, contenders, fmt: fmtRate, rate })
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
            note: `ratio = flexec's delta / payload size (the raw column is the raw socket's delta, for reference; fork() IPC's: ${(Math.max(...rssC) / MiB).toFixed(1)} MiB)`
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
    await forkEcho.close()
    await pair.close()
  }
  return rows
}
