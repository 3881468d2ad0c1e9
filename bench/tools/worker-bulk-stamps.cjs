// Preloaded into a bench job: per request on each socket, first 'data' → last
// 'data' → the reply's write (µs), medians to $cwd/worker-bulk-stamps.json at exit.
"use strict"
const net = require("node:net")
const fs = require("node:fs")
const path = require("node:path")
const per = new Map()
const state = (s) => {
  let st = per.get(s)
  if (!st) per.set(s, (st = { first: 0, last: 0, chunks: 0, rows: [] }))
  return st
}
const write = net.Socket.prototype.write
net.Socket.prototype.write = function (...args) {
  const st = per.get(this)
  if (st && st.first !== 0) {
    const t = performance.now()
    st.rows.push({ recv: (st.last - st.first) * 1000, toReply: (t - st.last) * 1000, chunks: st.chunks })
    st.first = 0
    st.chunks = 0
  }
  return write.apply(this, args)
}
const emit = net.Socket.prototype.emit
net.Socket.prototype.emit = function (name, ...args) {
  if (name === "data") {
    const st = state(this)
    const t = performance.now()
    if (st.first === 0) st.first = t
    st.last = t
    st.chunks++
  }
  return emit.call(this, name, ...args)
}
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1] }
process.on("exit", () => {
  const out = []
  for (const st of per.values()) if (st.rows.length > 5) out.push({ n: st.rows.length, recvUs: med(st.rows.map((r) => r.recv)), toReplyUs: med(st.rows.map((r) => r.toReply)), chunks: med(st.rows.map((r) => r.chunks)) })
  try { fs.writeFileSync(path.join(process.cwd(), "worker-bulk-stamps.json"), JSON.stringify(out)) } catch {}
})
