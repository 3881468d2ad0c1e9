// The flexec bench worker (copied to each job's app dir). Handlers: bench/echo
// (the payload back), bench/sink (the payload's length and how it arrived).
// set.rawSock: also serve the raw baseline's ping-pong on that socket, from
// this same process. set.ignoreAbort: ignore abort and SIGTERM. The time of
// exit (ms, performance.timeOrigin-based) is written to <cwd>/exit-time.
"use strict"
const fs = require("node:fs")
const path = require("node:path")
const { runJob } = require("@flexec/core/worker")
const jobDir = process.cwd()
const now = () => performance.timeOrigin + performance.now()
process.on("exit", () => {
  try { fs.writeFileSync(path.join(jobDir, "exit-time"), String(now())) } catch {}
})

runJob({
  async run(ctx) {
    if (typeof ctx.set.rawSock === "string") require(String(ctx.set.rawProto)).serveRaw(ctx.set.rawSock, { kind: "hello" })
    if (ctx.set.ignoreAbort) {
      process.on("SIGTERM", () => {})
      return new Promise(() => { setInterval(() => {}, 1 << 30) })
    }
    await new Promise((resolve) => {
      if (ctx.signal.aborted) return resolve()
      ctx.signal.addEventListener("abort", resolve, { once: true })
    })
    return 0
  },
  handlers: {
    bench: {
      echo: (message) => message.payload,
      cpu: () => process.cpuUsage(),
      sink: (message) => {
        const p = /** @type {any} */ (message.payload)
        return { len: p.byteLength, offset: p.byteOffset, bufLen: p.buffer.byteLength }
      }
    }
  }
})
