// 7. The protocol codec (packages/core/src/protocol/Frame.ts, bundled from
// source with esbuild into bench/.cache): encode + decode of one frame with a
// 64 B, 64 KiB and 1 MiB binary payload, with tinybench, against a minimal raw
// length-prefix codec (bench/workers/rawproto.cjs) doing the same one copy into
// a read buffer. Rounds alternate the order of the two tasks; the table shows
// the median of the rounds' p50. Buffer allocations per frame are counted by
// wrapping Buffer's allocating statics, and the decoded payload must be a view
// into the decoder's one read buffer (no further copy).
import { build } from "esbuild"
import * as path from "node:path"
import { Bench } from "tinybench"
import { benchDir, fmtUs, median } from "../lib/common.mjs"
import { row } from "../lib/row.mjs"
import rawproto from "../workers/rawproto.cjs"

export const name = "codec"

const loadCodec = async () => {
  const outfile = path.join(benchDir, ".cache", "codec.mjs")
  await build({
    entryPoints: [path.join(benchDir, "..", "packages", "core", "src", "protocol", "Frame.ts")],
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    outfile,
    logLevel: "silent"
  })
  return import(`${outfile}?t=${Date.now()}`)
}

/** Counts Buffer allocations (calls, bytes) made by `f`. */
const countAllocs = (f) => {
  const names = ["alloc", "allocUnsafe", "allocUnsafeSlow", "from", "concat"]
  const saved = names.map((n) => Buffer[n])
  let calls = 0
  let bytes = 0
  names.forEach((n, i) => {
    Buffer[n] = function (...args) {
      const b = saved[i].apply(Buffer, args)
      // Buffer.from(arrayBuffer, offset, length) makes a view, not a copy
      if (!(n === "from" && args[0] instanceof ArrayBuffer)) {
        calls++
        bytes += b.byteLength
      }
      return b
    }
  })
  try {
    f()
  } finally {
    names.forEach((n, i) => (Buffer[n] = saved[i]))
  }
  return { calls, bytes }
}

export async function run({ quick, log }) {
  const codec = await loadCodec()
  const rows = []
  const rounds = quick ? 2 : 6
  for (const size of [64, 64 * 1024, 1024 * 1024]) {
    const label = size >= 1024 * 1024 ? "1 MiB" : size >= 1024 ? "64 KiB" : "64 B"
    const payload = Buffer.alloc(size, 7)
    const header = { kind: "request", id: 1234, channel: "bench", topic: "echo", enc: "bytes", headers: {} }
    /** @type {any} */
    let got
    const decoder = new codec.FrameDecoder()
    const flexecOnce = () => {
      header.id++
      const chunks = codec.encodeFrame(header, payload)
      for (const c of chunks) decoder.push(c, (e) => (got = e))
    }
    /** @type {any} */
    let rawGot
    const feed = rawproto.reader((op, data) => (rawGot = data))
    const fakeSocket = { write: (c) => feed(c) }
    const rawOnce = () => rawproto.send(fakeSocket, 1, payload)
    flexecOnce()
    rawOnce()
    if (got?.type !== "frame" || got.payload.byteLength !== size || rawGot?.byteLength !== size) throw new Error("codec round trip failed")
    const p50A = []
    const p50B = []
    for (let r = 0; r < rounds; r++) {
      const bench = new Bench({ time: quick ? 150 : 400, warmupTime: 50 })
      if (r % 2 === 0) bench.add("flexec", flexecOnce).add("raw", rawOnce)
      else bench.add("raw", rawOnce).add("flexec", flexecOnce)
      await bench.run()
      for (const t of bench.tasks) (t.name === "flexec" ? p50A : p50B).push(t.result.latency.p50)
    }
    const a = median(p50A)
    const b = median(p50B)
    const N = 200
    const allocs = countAllocs(() => {
      for (let i = 0; i < N; i++) flexecOnce()
    })
    const rawAllocs = countAllocs(() => {
      for (let i = 0; i < N; i++) rawOnce()
    })
    const p = got.payload
    const view = p.byteOffset > 0 && p.buffer.byteLength <= size + 8192
    const copies = size >= 64 * 1024 ? (allocs.bytes / N - 1024) / size : 0
    log(`codec ${label}: flexec ${fmtUs(a)} raw ${fmtUs(b)}; ${(allocs.calls / N).toFixed(1)} allocs/frame`)
    rows.push(
      row({
        id: "7",
        what: `codec encode+decode ${label}, p50`,
        flexec: fmtUs(a),
        raw: fmtUs(b),
        ratio: a / b,
        note: `Buffer allocations/frame: flexec ${(allocs.calls / N).toFixed(1)} (${(allocs.bytes / N).toFixed(0)} B), raw ${(rawAllocs.calls / N).toFixed(1)} (${(rawAllocs.bytes / N).toFixed(0)} B)`
      }),
      row({
        id: "7",
        what: `codec ${label}: payload copies on receive (beyond the one read buffer)`,
        flexec: view ? "0 (view)" : "copied",
        raw: "0",
        ratio: view && copies < 1.5 ? 1 : 0,
        bar: { op: ">=", value: 1 },
        note: `decoded payload at offset ${p.byteOffset} of a ${p.buffer.byteLength}-byte buffer; ${size >= 64 * 1024 ? `allocated bytes/frame − 1 KiB = ${copies.toFixed(2)} × payload` : "small frames come from Buffer's pool"}`
      })
    )
  }
  return rows
}
