// 9. The job channel's transport: sendToJob over `channel: { transport: "tcp" }`
// and `{ transport: "tcp", tls: true }` against the same over the default unix
// channel, process backend, Promise facade. Four jobs run at once (unix, a
// second unix job as a control, tcp, tls); each comparison is paired and
// interleaved per request against the first unix job. Ratio = tcp / unix and
// tls / unix (not flexec / raw); the control row (unix / unix) shows what two
// jobs of the same transport differ by in this pairing.
import { randomFillSync } from "node:crypto"
import { fmtMs, fmtUs, interleaved, jsonPayloadOf, median, MiB, now, pct } from "../lib/common.mjs"
import { row } from "../lib/row.mjs"
import { startEchoPair } from "./rtt.mjs"

export const name = "channel"

const mbps = (bytes, ms) => bytes / 1e6 / (ms / 1000)

/** One timed sendToJob (ms) to `topic` of the pair's job, checked by `ok`. */
const once = (pair, topic, message, timeout, ok) => async () => {
  const t0 = now()
  const reply = await pair.executor.sendToJob({ jobId: pair.jobId, channel: "bench", topic, message, timeout })
  const dt = now() - t0
  if (!ok(reply.payload)) throw new Error(`bad ${topic} reply over ${pair.jobId}`)
  return dt
}

export async function run({ quick, log }) {
  const pairs = {
    unix: await startEchoPair("ch-unix"),
    unix2: await startEchoPair("ch-unix2"),
    tcp: await startEchoPair("ch-tcp", { channel: { transport: "tcp" } }),
    tls: await startEchoPair("ch-tls", { channel: { transport: "tcp", tls: true } })
  }
  const rows = []
  try {
    // RTT, 64 B JSON
    const warm = quick ? 200 : 2000
    const n = quick ? 1000 : 10000
    const payload = jsonPayloadOf(64)
    const rtt = (p) => once(p, "echo", { headers: {}, payload }, 5000, (r) => /** @type {any} */ (r).d.length === payload.d.length)
    // No bar: on a 2-core machine a cross-process round trip's p50 is bimodal
    // (about 25 µs or 90 µs, whether the job's core is awake), and a request to
    // one job right after one to another shifts it: see the control row.
    for (const [kind, why] of [
      ["unix2", "control: a second unix job against the first"],
      ["tcp", "loopback TCP: the same frames and engine, another kernel path"],
      ["tls", "TLS 1.3 over loopback TCP: one record encrypted and decrypted each way"]
    ]) {
      const { A, B } = await interleaved({ warm, n }, rtt(pairs[kind]), rtt(pairs.unix))
      log(`channel rtt ${kind}: p50 ${fmtUs(median(A))}, unix p50 ${fmtUs(median(B))}`)
      rows.push(
        row({ id: "9", what: `RTT 64 B JSON over ${kind === "unix2" ? "unix (2nd job)" : kind} vs unix, p50 (n=${n})`, flexec: fmtUs(median(A)), raw: `${fmtUs(median(B))} (unix)`, ratio: median(A) / median(B), note: `ratio = ${kind} / unix, reported (no bar: see the control row); ${why}; p99 ${fmtUs(pct(A, 99))} / ${fmtUs(pct(B, 99))}` })
      )
    }
    // 1 MiB sendToJob throughput
    const bwarm = quick ? 3 : 10
    const bn = quick ? 10 : 60
    const bytes = randomFillSync(Buffer.allocUnsafe(MiB))
    const sink = (p) => once(p, "sink", { headers: {}, payload: bytes }, 60_000, (r) => /** @type {any} */ (r).len === MiB)
    for (const kind of ["tcp", "tls"]) {
      const { A, B } = await interleaved({ warm: bwarm, n: bn }, sink(pairs[kind]), sink(pairs.unix))
      const fa = mbps(MiB, median(A))
      const fb = mbps(MiB, median(B))
      log(`channel bulk ${kind}: ${fa.toFixed(0)} MB/s, unix ${fb.toFixed(0)} MB/s`)
      rows.push(
        row({
          id: "9",
          what: `bulk 1 MiB sendToJob over ${kind} vs unix, MB/s (n=${bn})`,
          flexec: `${fa.toFixed(0)} MB/s`,
          raw: `${fb.toFixed(0)} MB/s (unix)`,
          ratio: fa / fb,
          note: `ratio = ${kind} / unix (reported, no bar: ${kind === "tls" ? "TLS encrypts every byte, so the ratio is the CPU's AES speed against a memcpy, a property of the machine, not of flexec" : "loopback TCP's segmenting and buffers against a unix socket's are the kernel's, not flexec's"}); median ${fmtMs(median(A))} / ${fmtMs(median(B))} ms per transfer`
        })
      )
    }
  } finally {
    for (const p of Object.values(pairs)) await p.close()
  }
  return rows
}
