// Preloaded into a bench job (`node --require`): the time from a socket's
// 'data' event to the next socket write, per request; median written to
// $cwd/worker-stamps.json at exit. For bench/tools/rtt-breakdown.mjs.
"use strict"
const net = require("node:net")
const fs = require("node:fs")
const path = require("node:path")
const spans = new Map()
let dataAt = 0
let dataSocket
const write = net.Socket.prototype.write
net.Socket.prototype.write = function (...args) {
  if (dataAt !== 0 && this === dataSocket) {
    const key = this.remoteAddress ?? /** @type {any} */ (this)._pipeName ?? "sock"
    const list = spans.get(this) ?? []
    list.push(performance.now() - dataAt)
    spans.set(this, list)
    dataAt = 0
  }
  return write.apply(this, args)
}
const emit = net.Socket.prototype.emit
net.Socket.prototype.emit = function (name, ...args) {
  if (name === "data") {
    dataAt = performance.now()
    dataSocket = this
  }
  return emit.call(this, name, ...args)
}
process.on("exit", () => {
  const out = []
  for (const list of spans.values()) {
    const sorted = [...list].sort((a, b) => a - b)
    out.push({ n: sorted.length, p50us: sorted[Math.floor(sorted.length / 2)] * 1000 })
  }
  try { fs.writeFileSync(path.join(process.cwd(), "worker-stamps.json"), JSON.stringify(out)) } catch {}
})
