/**
 * HelloRouter: many job channels behind one listening port. A connection is
 * read up to its first frame; a hello naming a job whose channel is routed
 * here goes to that channel with every byte it sent put back (the channel
 * server then reads the hello itself and decides: token, version, the rest).
 * Anything else (no hello in time, another first frame, an unknown job, more
 * than a hello's worth of bytes without one) is destroyed. Imports `Frame`
 * and the deadlines.
 *
 * @since 0.1.0
 */
import { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import type { Deadlines } from "../internal/deadlines.js"
import { FrameDecoder, MAX_HEADER_BYTES } from "./Frame.js"

/** Takes a stream accepted for a channel. */
export type AcceptStream = (stream: Duplex, peer: string) => void

/** The routes of one port. */
export interface HelloRouter {
  /** Routes connections whose hello names `jobId` to `accept`; the result removes the route. `undefined`: the job has one already. */
  readonly add: (jobId: string, accept: AcceptStream) => (() => void) | undefined
  /** Takes a stream the port accepted (see the module). */
  readonly route: AcceptStream
  /** Routes now. */
  readonly size: () => number
}

/** Most bytes read before a hello is complete: its length prefix and its largest header. */
const MAX_HELLO_BYTES = 8 + MAX_HEADER_BYTES

/** Makes a router; a connection that has not sent its hello within `timeoutMs` (a deadline in `deadlines`) is destroyed. */
export const makeHelloRouter = (timeoutMs: number, deadlines: Deadlines): HelloRouter => {
  const routes = new Map<string, AcceptStream>()

  const route = (stream: Duplex, peer: string): void => {
    const chunks: Array<Buffer> = []
    let total = 0
    let done = false
    const decoder = new FrameDecoder(MAX_HELLO_BYTES)
    const finish = (target: AcceptStream | undefined): void => {
      if (done) return
      done = true
      deadline.cancel()
      stream.off("data", onData)
      if (target === undefined) {
        stream.destroy()
        return
      }
      // paused, the bytes back in front: the channel reads them as if first
      stream.pause()
      stream.unshift(Buffer.concat(chunks, total))
      target(stream, peer)
    }
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      total += chunk.length
      decoder.push(chunk, (event) => {
        if (done) return
        const header = event.type === "frame" ? event.header : undefined
        finish(header?.kind === "hello" && typeof header.jobId === "string" ? routes.get(header.jobId) : undefined)
      })
      if (!done && total > MAX_HELLO_BYTES) finish(undefined)
    }
    const deadline = deadlines.add(timeoutMs, () => finish(undefined))
    stream.on("error", () => {})
    stream.once("close", () => finish(undefined))
    stream.on("data", onData)
  }

  return {
    add: (jobId, accept) => {
      if (routes.has(jobId)) return undefined
      routes.set(jobId, accept)
      return () => {
        if (routes.get(jobId) === accept) routes.delete(jobId)
      }
    },
    route,
    size: () => routes.size
  }
}
