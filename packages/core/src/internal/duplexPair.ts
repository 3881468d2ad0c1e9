/**
 * An in-memory pair of connected byte streams, like the two ends of a socket
 * (Node 20 has no `stream.duplexPair`). Imports only `node:` built-ins.
 *
 * What one end writes, the other reads, in order. Writes respect backpressure:
 * a write's callback runs once the peer has room (its readable buffer is under
 * its high-water mark). `end()` on one end ends the other's readable side, and
 * since neither end allows half-open streams, both then finish and close.
 * `destroy()` on one end ends the peer's readable side (buffered data stays
 * readable) and the peer then closes; a write by the peer after that fails with
 * an `EPIPE` error (which destroys it), as on a socket whose other end is gone.
 */
import { Buffer } from "node:buffer"
import { Duplex } from "node:stream"

const brokenPipe = (): Error => Object.assign(new Error("write EPIPE: the other end is gone"), { code: "EPIPE" })

class PairEnd extends Duplex {
  peer: PairEnd | undefined
  /** The callback of our last write, held while the peer's buffer is full. */
  private blockedWrite: ((error?: Error | null) => void) | undefined

  constructor() {
    super({ allowHalfOpen: false })
  }

  /** Delivers bytes from the peer; false when this end's buffer is full. */
  deliver(chunk: Buffer): boolean {
    if (this.destroyed || this.readableEnded) return true
    return this.push(chunk)
  }

  /** The peer went away: end this end's readable side. */
  peerGone(): void {
    if (!this.destroyed && !this.readableEnded) this.push(null)
  }

  override _read(): void {
    // We have room again: let the peer's blocked write complete.
    const peer = this.peer
    if (peer) peer.unblock()
  }

  unblock(): void {
    const callback = this.blockedWrite
    this.blockedWrite = undefined
    if (callback) callback()
  }

  override _write(chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const peer = this.peer
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array)
    if (!peer || peer.destroyed || peer.readableEnded) return callback(brokenPipe())
    if (peer.deliver(bytes)) callback()
    else this.blockedWrite = callback
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer?.peerGone()
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.peer
    this.peer = undefined
    this.unblock()
    if (peer) {
      peer.peer = undefined
      peer.unblock()
      peer.peerGone()
    }
    callback(error)
  }
}

/** Two connected in-memory `Duplex` streams: what one writes, the other reads. */
export const duplexPair = (): [Duplex, Duplex] => {
  const a = new PairEnd()
  const b = new PairEnd()
  a.peer = b
  b.peer = a
  return [a, b]
}
