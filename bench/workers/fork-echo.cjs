// A peer of the RTT and bulk measurements: Node's fork() IPC channel (started
// with serialization "advanced", so Buffers and objects go by structured
// clone). Each message { id, op, data }: op "echo" comes back as it is, op
// "sink" gets { id, len } (the data's byte length). Exits when the channel closes.
"use strict"
process.on("message", (/** @type {any} */ m) => {
  if (m.op === "sink") process.send({ id: m.id, len: m.data.byteLength })
  else process.send(m)
})
process.on("disconnect", () => process.exit(0))
