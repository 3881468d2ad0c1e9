// 2. Request/reply round trip: sendToJob with a 64-byte JSON payload,
// sequential, against a raw length-prefixed unix-socket ping-pong between the
// same two processes (the flexec job serves both). Paired per request.
import * as fs from "node:fs"
import * as path from "node:path"
import { createProcessExecutor } from "@flexec/executor-process"
import { deployJob, eventPump, fmtUs, jsonPayloadOf, median, now, pct, rawProtoPath, rawServer, site, tempDir } from "../lib/common.mjs"
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

export async function run({ quick, log }) {
  const warm = quick ? 200 : 1000
  const n = quick ? 1000 : 10000
  const pair = await startEchoPair("rtt")
  const { executor, jobId, peer } = pair
  const payload = jsonPayloadOf(64)
  const rawPayload = Buffer.from(JSON.stringify(payload))
  const message = { headers: {}, payload }
  const flexecOnce = async () => {
    const t0 = now()
    const reply = await executor.sendToJob({ jobId, channel: "bench", topic: "echo", message, timeout: 5000 })
    const dt = now() - t0
    if (reply.payload.d.length !== payload.d.length) throw new Error("bad echo")
    return dt
  }
  const rawOnce = async () => {
    const t0 = now()
    const reply = await peer.request(1, rawPayload)
    const dt = now() - t0
    if (reply.length !== rawPayload.length) throw new Error("bad raw echo")
    return dt
  }
  const A = []
  const B = []
  try {
    for (let i = 0; i < warm; i++) {
      await flexecOnce()
      await rawOnce()
    }
    for (let i = 0; i < n; i++) {
      if (i % 2 === 0) {
        A.push(await flexecOnce())
        B.push(await rawOnce())
      } else {
        B.push(await rawOnce())
        A.push(await flexecOnce())
      }
    }
  } finally {
    await pair.close()
  }
  log(`rtt: flexec p50 ${fmtUs(median(A))}, raw p50 ${fmtUs(median(B))}`)
  return [
    row({
      id: "2",
      what: `RTT 64 B JSON, p50 (n=${n})`,
      flexec: fmtUs(median(A)),
      raw: fmtUs(median(B)),
      ratio: median(A) / median(B),
      bar: { op: "<=", value: 1.5 }
    }),
    row({
      id: "2",
      what: `RTT 64 B JSON, p99 (reported)`,
      flexec: fmtUs(pct(A, 99)),
      raw: fmtUs(pct(B, 99)),
      ratio: pct(A, 99) / pct(B, 99)
    })
  ]
}
