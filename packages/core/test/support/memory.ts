/**
 * Memory readings that do not depend on when the garbage collector last ran:
 * a full collection (twice, with a turn between so finalizers and the sweep
 * run) before each reading, so what is read is what is retained. The core's
 * vitest runs its workers with `--expose-gc`.
 */
import * as net from "node:net"

const collect = (): void => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("memory readings need --expose-gc (packages/core/vitest.config.ts sets it for the test workers)")
  gc()
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

/** `process.memoryUsage()` after two full collections: retained memory only. */
export const retainedMemory = async (): Promise<NodeJS.MemoryUsage> => {
  collect()
  await turn()
  collect()
  await turn()
  return process.memoryUsage()
}

/** The same, for synchronous tests (one collection, no turn). */
export const retainedMemorySync = (): NodeJS.MemoryUsage => {
  collect()
  return process.memoryUsage()
}

/**
 * Receivers that get a frame prefix claiming a huge length, kept to prove the
 * memory checks catch them: one allocates the claimed length up front, the
 * other buffers every byte it reads. Each listens on `socketPath` and counts
 * the bytes it got.
 */
export const badReceiver = (kind: "allocates-claimed" | "buffers-everything", socketPath: string) => {
  const held: Array<Buffer> = []
  let received = 0
  const server = net.createServer((socket) => {
    let prefix = Buffer.alloc(0)
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length
      if (kind === "buffers-everything") {
        held.push(Buffer.from(chunk))
        return
      }
      if (held.length === 0) {
        prefix = Buffer.concat([prefix, chunk])
        if (prefix.length >= 4) held.push(Buffer.allocUnsafe(prefix.readUInt32BE(0)))
      }
    })
    socket.on("error", () => {})
  })
  return {
    listen: () => new Promise<void>((resolve) => server.listen(socketPath, resolve)),
    received: () => received,
    close: () =>
      new Promise<void>((resolve) => {
        held.length = 0
        server.close(() => resolve())
      })
  }
}
