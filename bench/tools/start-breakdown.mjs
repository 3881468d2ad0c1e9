// Where a process job's start goes: parent-side and job-side timestamps on one
// monotonic clock (process.hrtime), medians over N starts. The job is the bench
// echo worker with bench/tools/start-stamps.cjs preloaded. The raw baseline
// (raw-hello.cjs, same preload, same environment) runs interleaved, and its
// steps are printed in a second column.
import * as child_process from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { createProcessExecutor } from "@flexec/executor-process"
import { deployJob, eventPump, jobLikeEnv, median, rawServer, site, tempDir, workersDir } from "../lib/common.mjs"

const n = Number(process.argv[2] ?? 15)
const ns = () => process.hrtime.bigint()
let marks = []
const mark = (what) => marks.push([what, ns()])
const proto = /** @type {any} */ (child_process.ChildProcess.prototype)
const spawn = proto.spawn
proto.spawn = function (...args) {
  mark("parent: spawn() call")
  try { return spawn.apply(this, args) } finally { mark("parent: spawn() returned") }
}
let reads = 0
let writes = 0
const emit = net.Socket.prototype.emit
net.Socket.prototype.emit = function (name, ...args) {
  if (name === "data" && /** @type {any} */ (this)._flexecWatch && reads < 3) mark(`parent: channel data ${++reads}`)
  return emit.call(this, name, ...args)
}
const write = net.Socket.prototype.write
net.Socket.prototype.write = function (...args) {
  if (/** @type {any} */ (this)._flexecWatch && writes < 3) mark(`parent: channel write ${++writes}`)
  return write.apply(this, args)
}
const serverEmit = net.Server.prototype.emit
net.Server.prototype.emit = function (name, socket, ...rest) {
  if (name === "connection") { socket._flexecWatch = true; mark("parent: accepted") }
  return serverEmit.call(this, name, socket, ...rest)
}
globalThis.__mark = mark
const preload = path.join(path.dirname(fileURLToPath(import.meta.url)), "start-stamps.cjs")
const workspace = tempDir("flexec-bench-ws-")
const executor = await createProcessExecutor({
  client: { clientName: site }, instanceId: `bench-sb-${process.pid}`, graceMs: 2000, killTimeoutMs: 1000,
  command: [process.execPath, "--require", preload, "{appDir}/main.js"]
})
const pump = eventPump(executor)
const rawDir = tempDir("fxb-rawsb-")
const rawSock = path.join(rawDir, "r.sock")
const server = await rawServer(rawSock)
const rawEnv = jobLikeEnv({ BENCH_SOCK: rawSock })
const childMarks = (file) => {
  const child = JSON.parse(fs.readFileSync(file, "utf8"))
  return [["job: node time origin", BigInt(child.origin)], ["job: preload runs", BigInt(child.preload)], ...child.events.map(([w, t]) => [`job: ${w}`, BigInt(t)])]
}
const runs = []
const rawRuns = []
for (let i = 0; i < n + 2; i++) {
  const jobId = `sb-${i}`
  const jobDir = deployJob(workspace, jobId)
  marks = []
  reads = writes = 0
  const t0 = ns()
  await executor.startApp({ jobId, args: { workspace } })
  mark("parent: startApp returned")
  await pump.started(jobId)
  mark("parent: Started at the caller")
  await executor.abortApp(jobId)
  await pump.waitFor(jobId, "Completed")
  pump.forget(jobId)
  const all = [...marks, ...childMarks(path.join(jobDir, "start-stamps.json"))]
  if (i >= 2) runs.push(new Map(all.map(([w, t]) => [w, Number(t - t0) / 1e6])))

  marks = []
  const r0 = ns()
  const child = child_process.spawn(process.execPath, ["--require", preload, path.join(workersDir, "raw-hello.cjs")], {
    env: rawEnv, cwd: rawDir, detached: true, stdio: ["ignore", "pipe", "pipe"]
  })
  child.stdout.resume()
  child.stderr.resume()
  const exited = new Promise((r) => child.once("exit", r))
  const { peer } = await server.nextHello()
  mark("parent: hello read")
  peer.close()
  await exited
  const rawAll = [...marks, ...childMarks(path.join(rawDir, "start-stamps.json"))]
  if (i >= 2) rawRuns.push(new Map(rawAll.map(([w, t]) => [w, Number(t - r0) / 1e6])))
}
const names = [...runs[0].keys()]
const rows = names.map((w) => [w, median(runs.map((r) => r.get(w) ?? NaN)), median(rawRuns.map((r) => r.get(w) ?? NaN))]).sort((a, b) => a[1] - b[1])
const rawOnly = [...rawRuns[0].keys()].filter((w) => !runs[0].has(w)).map((w) => [w, NaN, median(rawRuns.map((r) => r.get(w) ?? NaN))])
console.log(`${"flexec".padStart(9)} ${"raw".padStart(9)}`)
for (const [w, t, r] of [...rows, ...rawOnly]) console.log(`${Number.isNaN(t) ? "".padStart(6) : t.toFixed(1).padStart(6)} ms ${Number.isNaN(r) ? "".padStart(6) : r.toFixed(1).padStart(6)} ms  ${w}`)
pump.stop()
await executor.close()
await server.close()
fs.rmSync(workspace, { recursive: true, force: true })
fs.rmSync(rawDir, { recursive: true, force: true })
