// Where a process job's start goes: parent-side and job-side timestamps on one
// monotonic clock (process.hrtime), medians over N starts. The job is the bench
// echo worker with bench/tools/start-stamps.cjs preloaded.
import * as child_process from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { createProcessExecutor } from "@flexec/executor-process"
import { deployJob, eventPump, median, site, tempDir } from "../lib/common.mjs"

const n = Number(process.argv[2] ?? 15)
const ns = () => process.hrtime.bigint()
let marks = []
const mark = (what) => marks.push([what, ns()])
const spawn = child_process.ChildProcess.prototype.spawn
child_process.ChildProcess.prototype.spawn = function (...args) {
  mark("parent: spawn() call")
  try { return spawn.apply(this, args) } finally { mark("parent: spawn() returned") }
}
let reads = 0
let writes = 0
const emit = net.Socket.prototype.emit
net.Socket.prototype.emit = function (name, ...args) {
  if (name === "data" && this._flexecWatch && reads < 3) mark(`parent: channel data ${++reads}`)
  return emit.call(this, name, ...args)
}
const write = net.Socket.prototype.write
net.Socket.prototype.write = function (...args) {
  if (this._flexecWatch && writes < 3) mark(`parent: channel write ${++writes}`)
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
const runs = []
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
  const child = JSON.parse(fs.readFileSync(path.join(jobDir, "start-stamps.json"), "utf8"))
  const all = [...marks, ["job: node time origin", BigInt(child.origin)], ["job: preload runs", BigInt(child.preload)], ...child.events.map(([w, t]) => [`job: ${w}`, BigInt(t)])]
  if (i >= 2) runs.push(new Map(all.map(([w, t]) => [w, Number(t - t0) / 1e6])))
}
const names = [...runs[0].keys()]
const rows = names.map((w) => [w, median(runs.map((r) => r.get(w) ?? NaN))]).sort((a, b) => a[1] - b[1])
for (const [w, t] of rows) console.log(`${t.toFixed(1).padStart(7)} ms  ${w}`)
pump.stop()
await executor.close()
fs.rmSync(workspace, { recursive: true, force: true })
