// The raw baseline's wire: `u32 length (BE) | u8 op | data`, over a unix socket.
// op 0 = hello (child → parent), 1 = echo (the data comes back), 2 = sink (an
// 8-byte reply with the data's length). The reader allocates one buffer per
// frame and copies the chunks into it, as flexec's decoder does.
"use strict"
const net = require("node:net")

/** Incremental reader: calls onFrame(op, data) per frame. */
function reader(onFrame) {
  const prefix = Buffer.alloc(5)
  let prefixLen = 0
  let frame
  let pos = 0
  return (chunk) => {
    let buf = chunk
    while (buf.length > 0) {
      if (frame) {
        const n = Math.min(frame.length - pos, buf.length)
        buf.copy(frame, pos, 0, n)
        pos += n
        buf = buf.subarray(n)
        if (pos === frame.length) {
          const f = frame
          frame = undefined
          onFrame(prefix[4], f)
        }
        continue
      }
      const n = Math.min(5 - prefixLen, buf.length)
      buf.copy(prefix, prefixLen, 0, n)
      prefixLen += n
      buf = buf.subarray(n)
      if (prefixLen < 5) continue
      prefixLen = 0
      const len = prefix.readUInt32BE(0) - 1
      if (len === 0) onFrame(prefix[4], Buffer.alloc(0))
      else {
        frame = Buffer.allocUnsafe(len)
        pos = 0
      }
    }
  }
}

/**
 * Writes one frame: small frames as one buffer (one write, one wake-up of the
 * peer), large ones as two chunks (prefix, data) without copying the data.
 */
function send(socket, op, data) {
  if (data.length <= SMALL) {
    const frame = Buffer.allocUnsafe(5 + data.length)
    frame.writeUInt32BE(data.length + 1, 0)
    frame[4] = op
    data.copy(frame, 5)
    return socket.write(frame)
  }
  const head = Buffer.allocUnsafe(5)
  head.writeUInt32BE(data.length + 1, 0)
  head[4] = op
  socket.write(head)
  return socket.write(data)
}
const SMALL = 16 * 1024

/** The child's side: connect, say hello, answer echo and sink frames. */
function serveRaw(path, hello, onClose) {
  const socket = net.createConnection(path)
  socket.on("connect", () => send(socket, 0, Buffer.from(JSON.stringify(hello))))
  socket.on("data", reader((op, data) => {
    if (op === 1) send(socket, 1, data)
    else if (op === 2) {
      const ack = Buffer.alloc(8)
      ack.writeDoubleBE(data.length, 0)
      send(socket, 2, ack)
    }
  }))
  socket.on("error", () => {})
  socket.on("close", () => onClose && onClose())
  return socket
}

module.exports = { reader, send, serveRaw }
