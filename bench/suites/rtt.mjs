// 2. Request/reply round trip: sendToJob with a 64-byte JSON payload,
// sequential, against a raw length-prefixed unix-socket ping-pong between the
// same two processes (the flexec job serves both). Paired per request. Measured
// twice: through the Effect API (the service, from a fiber) and through the
// Promise facade (a fiber per call). Then side by side with the peers a user
// would pick: Node's fork() IPC (serialization "advanced") and vscode-jsonrpc
// over a unix socket, with the Promise facade and raw, one request each per
// round in rotated order, at 64 B and 64 KiB of JSON and 64 KiB of bytes (no JSON-RPC: it has no
// binary payload); and msg/s of each with
// `burst` requests in flight at once.
import * as fs from "node:fs"
import * as path from "node:path"
import { ClientExecutor } from "@flexec/core"
import { createProcessExecutor, ProcessJobExecutor } from "@flexec/executor-process"
import { Effect, ManagedRuntime, Stream } from "effect"
import { deployJob, eventPump, fmtUs, interleaved, jsonPayloadOf, median, now, onOneCpu, pct, rawProtoPath, rawServer, site, tempDir } from "../lib/common.mjs"
import { startForkEcho, startJsonRpcEcho } from "../lib/peer-children.mjs"
import { bestPeerRow, peerRows, rounds, versionOf } from "../lib/peers.mjs"
import { row } from "../lib/row.mjs"

export const name = "rtt"

/** Starts one bench job that also serves the raw protocol; returns both ends. */
export const startEchoPair = async (tag, options = {}) => {
  const workspace = tempDir("flexec-bench-ws-")
  const rawDir = tempDir("fxb-raw-")
  const sock = path.join(rawDir, "r.sock")
  const server = await rawServer(sock)
  const executor = await createProcessExecutor({ client: { clientName: site }, instanceId: `bench-${tag}-${process.pid}`, graceMs: 2000, killTimeoutMs: 1000, ...options })
  const pump = eventPump(executor)
  const jobId = `${tag}-1`
  deployJob(workspace, jobId)
  await executor.startApp({ jobId, args: { workspace, set: { rawSock: sock, rawProto: rawProtoPath } } })
  await pump.started(jobId)
  const { peer } = await server.nextHello()
  return {
    executor,
    jobId,
    peer,
    async close() {
      await executor.abortApp(jobId).catch(() => {})
      pump.stop()
      await executor.close()
      await server.close()
      fs.rmSync(workspace, { recursive: true, force: true })
      fs.rmSync(rawDir, { recursive: true, force: true })
    }
  }
}

/**
 * The same, with the executor used from Effect: a `ManagedRuntime` over the
 * process backend's layer, and the `ClientExecutor` service itself.
 */
export const startEffectEchoPair = async (tag, options = {}) => {
  const workspace = tempDir("flexec-bench-ws-")
  const rawDir = tempDir("fxb-raw-")
  const sock = path.join(rawDir, "r.sock")
  const server = await rawServer(sock)
  const runtime = ManagedRuntime.make(
    ProcessJobExecutor.layer({ client: { clientName: site }, instanceId: `bench-${tag}-${process.pid}`, graceMs: 2000, killTimeoutMs: 1000, ...options })
  )
  const service = await runtime.runPromise(ClientExecutor)
  const jobId = `${tag}-1`
  deployJob(workspace, jobId)
  const started = runtime.runPromise(
    service.events.pipe(
      Stream.filter((e) => e.jobId === jobId && (e._tag === "Started" || e._tag === "Completed")),
      Stream.runHead
    )
  )
  await runtime.runPromise(service.startApp({ jobId, args: { workspace, set: { rawSock: sock, rawProto: rawProtoPath } } }))
  const first = await started
  if (first._tag !== "Some" || first.value._tag !== "Started") throw new Error(`${jobId} did not start: ${JSON.stringify(first)}`)
  const { peer } = await server.nextHello()
  return {
    runtime,
    service,
    jobId,
    peer,
    workspace,
    async close() {
      await runtime.runPromise(service.abortApp(jobId)).catch(() => {})
      await runtime.dispose()
      await server.close()
      fs.rmSync(workspace, { recursive: true, force: true })
      fs.rmSync(rawDir, { recursive: true, force: true })
    }
  }
}

/** One timed raw echo of `rawPayload` (ms): the baseline of both RTT measurements. */
const rawEcho = (peer, rawPayload) => async () => {
  const t0 = now()
  const reply = await peer.request(1, rawPayload)
  const dt = now() - t0
  if (reply.length !== rawPayload.length) throw new Error("bad raw echo")
  return dt
}

/** Paired RTT through the Effect API: one fiber runs the loop, as an Effect user's code would. */
const measureEffect = async ({ warm, n, payload, rawPayload }) => {
  const pair = await startEffectEchoPair("rtt-effect")
  const { runtime, service, jobId, peer } = pair
  const params = { jobId, channel: "bench", topic: "echo", message: { headers: {}, payload }, timeout: 5000 }
  const flexecOnce = Effect.suspend(() => {
    const t0 = now()
    return Effect.map(service.sendToJob(params), (reply) => {
      const dt = now() - t0
      if (/** @type {any} */ (reply.payload).d.length !== payload.d.length) throw new Error("bad echo")
      return dt
    })
  })
  const rawOnce = Effect.promise(rawEcho(peer, rawPayload))
  try {
    return await runtime.runPromise(
      Effect.gen(function* () {
        for (let i = 0; i < warm; i++) {
          yield* flexecOnce
          yield* rawOnce
        }
        const A = []
        const B = []
        for (let i = 0; i < n; i++) {
          if (i % 2 === 0) {
            A.push(yield* flexecOnce)
            B.push(yield* rawOnce)
          } else {
            B.push(yield* rawOnce)
            A.push(yield* flexecOnce)
          }
        }
        return { A, B }
      })
    )
  } finally {
    await pair.close()
  }
}

/** Paired RTT through the Promise facade (`createProcessExecutor`): no fiber per call (the engine's fiberless path). */
const measurePromise = async ({ warm, n, payload, rawPayload }) => {
  const pair = await startEchoPair("rtt")
  const { executor, jobId, peer } = pair
  const message = { headers: {}, payload }
  const flexecOnce = async () => {
    const t0 = now()
    const reply = await executor.sendToJob({ jobId, channel: "bench", topic: "echo", message, timeout: 5000 })
    const dt = now() - t0
    if (/** @type {any} */ (reply.payload).d.length !== payload.d.length) throw new Error("bad echo")
    return dt
  }
  try {
    return await interleaved({ warm, n }, flexecOnce, rawEcho(peer, rawPayload))
  } finally {
    await pair.close()
  }
}

/**
 * One figure's four contenders in rotated rounds: RTT per request at `size`
 * bytes of JSON, then msg/s as `burst` requests sent at once (replies awaited
 * together), `bursts` times per contender.
 */
const measurePeers = async ({ warm, n, size, burst, bursts, bytes = false }) => {
  // bytes: a Uint8Array payload (flexec's "bytes" encoding, a Buffer through fork IPC by
  // structured clone); JSON-RPC has no binary payload, so it sits this one out
  /** @type {any} */
  const payload = bytes ? new Uint8Array(size).fill(7) : jsonPayloadOf(size)
  const rawPayload = bytes ? Buffer.from(payload) : Buffer.from(JSON.stringify(payload))
  const lengthOf = (/** @type {any} */ p) => (bytes ? p.byteLength : p.d.length)
  const expected = lengthOf(payload)
  const pair = await startEchoPair(`rtt-peers-${size}${bytes ? "-b" : ""}`)
  const forkEcho = await startForkEcho()
  const jsonrpc = bytes ? undefined : await startJsonRpcEcho()
  const message = { headers: {}, payload }
  const forkPayload = bytes ? Buffer.from(payload) : payload
  const ok = (/** @type {boolean} */ good) => {
    if (!good) throw new Error("bad echo")
  }
  /** @type {Record<string, () => Promise<void>>} */
  const once = {
    flexec: async () => ok(lengthOf((await pair.executor.sendToJob({ jobId: pair.jobId, channel: "bench", topic: "echo", message, timeout: 10_000 })).payload) === expected),
    raw: async () => ok((await pair.peer.request(1, rawPayload)).length === rawPayload.length),
    fork: async () => ok(lengthOf((await forkEcho.request("echo", forkPayload)).data) === expected),
    ...(jsonrpc ? { jsonrpc: async () => ok(lengthOf(await jsonrpc.request(payload)) === expected) } : {})
  }
  const timed = (f) => async () => {
    const t0 = now()
    await f()
    return now() - t0
  }
  const burstOf = (f) => async () => {
    const t0 = now()
    await Promise.all(Array.from({ length: burst }, f))
    return now() - t0
  }
  try {
    const rtt = await rounds({ warm, n }, Object.fromEntries(Object.entries(once).map(([k, f]) => [k, timed(f)])))
    const rate = await rounds({ warm: 2, n: bursts }, Object.fromEntries(Object.entries(once).map(([k, f]) => [k, burstOf(f)])))
    return { rtt, rate }
  } finally {
    await jsonrpc?.close()
    await forkEcho.close()
    await pair.close()
  }
}

const measureAll = async ({ quick, log }) => {
  const warm = quick ? 200 : 2000
  const n = quick ? 1000 : 10000
  const payload = jsonPayloadOf(64)
  const rawPayload = Buffer.from(JSON.stringify(payload))
  const effect = await measureEffect({ warm, n, payload, rawPayload })
  log(`rtt (Effect API): flexec p50 ${fmtUs(median(effect.A))}, raw p50 ${fmtUs(median(effect.B))}`)
  const facade = await measurePromise({ warm, n, payload, rawPayload })
  log(`rtt (Promise facade): flexec p50 ${fmtUs(median(facade.A))}, raw p50 ${fmtUs(median(facade.B))}`)
  const rowsOf = (api, { A, B }, note) => [
    row({
      id: "2",
      what: `RTT 64 B JSON, ${api}, p50 (n=${n})`,
      flexec: fmtUs(median(A)),
      raw: fmtUs(median(B)),
      ratio: median(A) / median(B),
      bar: { op: "<=", value: 1.5 },
      note
    }),
    row({ id: "2", what: `RTT 64 B JSON, ${api}, p99 (reported)`, flexec: fmtUs(pct(A, 99)), raw: fmtUs(pct(B, 99)), ratio: pct(A, 99) / pct(B, 99) })
  ]
  /** @type {Array<any>} */
  const out = [
    ...rowsOf("Effect API", effect, "ClientExecutor.sendToJob in one fiber's loop; the raw request in the same loop"),
    ...rowsOf("Promise facade", facade, "createProcessExecutor().sendToJob: no fiber per call (the engine's fiberless path)")
  ]
  const burst = 200
  /** @type {Array<[number, string, number, number, boolean]>} */
  const figures = [
    [64, "64 B", warm, n, false],
    [64 * 1024, "64 KiB", quick ? 50 : 300, quick ? 300 : 3000, false],
    [64 * 1024, "64 KiB", quick ? 50 : 300, quick ? 300 : 3000, true]
  ]
  for (const [size, label, w, k, bytes] of figures) {
    const kind = bytes ? "bytes" : "JSON"
    const { rtt, rate } = await measurePeers({ warm: w, n: k, size, burst, bursts: quick ? 5 : 30, bytes })
    const who = {
      flexec: ["flexec sendToJob (Promise facade)", versionOf("@flexec/executor-process")],
      raw: ["raw", "u32 length | u8 op | data, unix socket"],
      fork: ['fork() IPC, serialization "advanced"', `node ${process.version}`],
      jsonrpc: ["vscode-jsonrpc, unix socket", versionOf("vscode-jsonrpc")]
    }
    const contendersOf = (samples) =>
      Object.entries(who).filter(([key]) => key in samples).map(([key, [name, version]]) => ({ who: name, version, samples: samples[key] }))
    const rttC = contendersOf(rtt)
    const rateC = contendersOf(rate)
    const perSecond = (ms) => burst / (ms / 1000)
    const fmtRate = (x) => `${(x / 1000).toFixed(1)} k msg/s`
    log(`rtt ${label} ${kind} peers: p50 ${rttC.map((c) => `${c.who} ${fmtUs(median(c.samples))}`).join(", ")}`)
    log(`rtt ${label} ${kind} msg/s: ${rateC.map((c) => `${c.who} ${fmtRate(perSecond(median(c.samples)))}`).join(", ")}`)
    out.push(
      bestPeerRow({ id: "2", what: `RTT ${label} ${kind} p50 (n=${k})`, flexec: rttC[0], peers: rttC.slice(2), fmt: fmtUs }),
      bestPeerRow({ id: "2", what: `${label} ${kind} msg/s, ${burst} in flight (n=${quick ? 5 : 30})`, flexec: rateC[0], peers: rateC.slice(2), fmt: fmtRate, rate: perSecond }),
      ...peerRows({ id: "2", figure: `RTT ${label} ${kind}`, contenders: rttC, fmt: fmtUs }),
      ...peerRows({ id: "2", figure: `${label} ${kind} msg/s, ${burst} in flight`, contenders: rateC, fmt: fmtRate, rate: perSecond })
    )
  }
  return out
}

export async function run({ quick, log }) {
  const { result, pinned } = await onOneCpu(() => measureAll({ quick, log }))
  log(`rtt: ${pinned ?? "not pinned (FLEXEC_BENCH_PIN=1 pins): latencies are bimodal by CPU placement"}`)
  return pinned === undefined ? result : result.map((r) => (r.note === undefined || !r.what.includes("p50") ? r : { ...r, note: `${r.note}; ${pinned}` }))
}
