// RTT through the Effect API (one fiber runs the loop, as an Effect user's code
// would) against the Promise facade and the raw ping-pong, same job, same run.
import * as fs from "node:fs"
import * as path from "node:path"
import { ClientExecutor } from "@flexec/core"
import { ProcessJobExecutor } from "@flexec/executor-process"
import { Effect, ManagedRuntime, Stream } from "effect"
import { deployJob, jsonPayloadOf, median, now, rawProtoPath, rawServer, site, tempDir } from "../lib/common.mjs"

const n = Number(process.argv[2] ?? 5000)
const workspace = tempDir("flexec-bench-ws-")
const rawDir = tempDir("fxb-raw-")
const sock = path.join(rawDir, "r.sock")
const server = await rawServer(sock)
const rt = ManagedRuntime.make(ProcessJobExecutor.layer({ client: { clientName: site }, instanceId: `bench-eff-${process.pid}`, graceMs: 2000, killTimeoutMs: 1000 }))
const svc = await rt.runPromise(ClientExecutor)
const jobId = "eff-1"
deployJob(workspace, jobId)
const started = rt.runPromise(svc.events.pipe(Stream.filter((e) => e._tag === "StatusChanged" && e.jobId === jobId && e.status === 2 || e.status === "started"), Stream.take(1), Stream.runDrain))
await rt.runPromise(svc.startApp({ jobId, args: { workspace, set: { rawSock: sock, rawProto: rawProtoPath } } }))
const { peer } = await server.nextHello()
const payload = jsonPayloadOf(64)
const raw = Buffer.from(JSON.stringify(payload))
const message = { headers: {}, payload }
const params = { jobId, channel: "bench", topic: "echo", message, timeout: 5000 }
const effectLoop = (count, R = []) => rt.runPromise(Effect.gen(function* () {
  const times = []
  for (let i = 0; i < count; i++) {
    const t0 = now()
    yield* svc.sendToJob(params)
    times.push(now() - t0)
    if (R !== null) R.push(yield* Effect.promise(rawOnce))
  }
  return times
}))
const promiseOnce = async () => { const t0 = now(); await rt.runPromise(svc.sendToJob(params)); return now() - t0 }
const rawOnce = async () => { const t0 = now(); await peer.request(1, raw); return now() - t0 }
// wait until the job can answer
for (;;) { try { await rt.runPromise(svc.sendToJob(params)); break } catch { await new Promise((r) => setTimeout(r, 20)) } }
if (process.env.ONLY === "effect") { const c0 = process.cpuUsage(); await effectLoop(n * 2, null); console.log("user µs/req", (process.cpuUsage(c0).user / n / 2).toFixed(1)); await rt.runPromise(svc.abortApp(jobId)).catch(() => {}); await rt.dispose(); await server.close(); process.exit(0) }
await effectLoop(1000)
for (let i = 0; i < 1000; i++) { await promiseOnce(); await rawOnce() }
for (let round = 0; round < 2; round++) {
  const RE = []
  const E = await effectLoop(n, RE)
  const P = []
  const R = []
  for (let i = 0; i < n; i++) { P.push(await promiseOnce()); R.push(await rawOnce()) }
  console.log(`effect loop p50 ${(median(E) * 1000).toFixed(0)} µs (raw ${(median(RE) * 1000).toFixed(0)} µs) | runPromise each p50 ${(median(P) * 1000).toFixed(0)} µs (raw ${(median(R) * 1000).toFixed(0)} µs)`)
}
void started
await rt.runPromise(svc.abortApp(jobId)).catch(() => {})
await rt.dispose()
await server.close()
fs.rmSync(workspace, { recursive: true, force: true })
fs.rmSync(rawDir, { recursive: true, force: true })
