// The raw baseline worker: connect to the unix socket in BENCH_SOCK, say hello,
// answer echo/sink frames, and exit when the parent closes the socket.
"use strict"
const path = require("node:path")
const { serveRaw } = require(path.join(__dirname, "rawproto.cjs"))
serveRaw(process.env.BENCH_SOCK, { kind: "hello", pid: process.pid }, () => process.exit(0))
