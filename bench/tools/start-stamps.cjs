// Preloaded into a bench job (`node --require`): monotonic timestamps (ns,
// process.hrtime, comparable across processes) of the job's start: Node's time
// origin, this preload, the require of @flexec/core/worker, connect, and the
// first socket writes and reads. Written to $cwd/start-stamps.json at exit.
"use strict"
const Module = require("node:module")
const net = require("node:net")
const fs = require("node:fs")
const path = require("node:path")
const ns = () => process.hrtime.bigint()
const s = { origin: String(ns() - BigInt(Math.round(performance.now() * 1e6))), preload: String(ns()), events: [] }
const mark = (what) => s.events.push([what, String(ns())])
const M = /** @type {any} */ (Module)
const load = M._load
M._load = function (request, ...rest) {
  if (request !== "@flexec/core/worker") return load.call(this, request, ...rest)
  mark("require worker: start")
  try {
    return load.call(this, request, ...rest)
  } finally {
    mark("require worker: done")
  }
}
const connect = net.createConnection
net.createConnection = net.connect = function (...args) {
  mark("connect: call")
  const socket = connect.apply(this, args)
  socket.once("connect", () => mark("connect: connected"))
  return socket
}
const write = net.Socket.prototype.write
let writes = 0
net.Socket.prototype.write = function (...args) {
  if (writes < 3) mark(`write ${++writes}`)
  return write.apply(this, args)
}
const emit = net.Socket.prototype.emit
let reads = 0
net.Socket.prototype.emit = function (name, ...args) {
  if (name === "data" && reads < 3) mark(`data ${++reads}`)
  return emit.call(this, name, ...args)
}
process.on("exit", () => {
  try { fs.writeFileSync(path.join(process.cwd(), "start-stamps.json"), JSON.stringify(s)) } catch {}
})
