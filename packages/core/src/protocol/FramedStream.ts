/**
 * FramedStream: a byte stream (a unix socket, one end of an in-memory pair, any
 * `Duplex` a transport accepts) cut into frames by the decoder of `Frame.ts`,
 * read in push mode, with writes that keep each frame whole and wait for
 * `drain`. Imports `Frame` only.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import type { Duplex } from "node:stream"
import * as codec from "./Frame.js"

/** Receives a `FramedStream`'s events in push mode (see `FramedStream.listen`). */
export interface FrameListener {
  /** A decoder event (`frame`, `oversize` or `error`), called as soon as it is decoded. */
  readonly onEvent: (event: codec.DecodeEvent) => void
  /** The stream has ended or closed (called once, after the last event). */
  readonly onEnd: () => void
}

/** Flow control of a stream read in push mode. */
export interface ReadControl {
  /** Stops reading from the stream (the peer's writes then wait on the socket buffer). */
  readonly pause: () => void
  /** Reads again after `pause`. */
  readonly resume: () => void
}

/** A byte stream cut into frames, with writes that respect backpressure. */
export interface FramedStream {
  /**
   * Reads until the first event and hands it to `onFirst` synchronously, from
   * the stream's `data` handler (`undefined`: the stream ended or closed
   * first); then reads no more until `listen` (events decoded from the rest of
   * that chunk wait for it). The handshake's way to answer a hello without a
   * turn of a fiber. Call it once, before `listen`.
   */
  readonly first: (onFirst: (event: codec.DecodeEvent | undefined) => void) => void
  /**
   * Switches to push mode: the events already decoded, then every event as it
   * is decoded, go to `listener` (synchronously, from the stream's `data`
   * handler), and `onEnd` once the stream has ended. Call it once.
   */
  readonly listen: (listener: FrameListener) => ReadControl
  /**
   * Writes one frame's chunks back to back (never interleaved with another
   * frame), then waits for `drain` if the stream's buffer is full. `false` when
   * the stream is closed.
   */
  readonly write: (chunks: ReadonlyArray<Uint8Array>) => Effect.Effect<boolean>
  /**
   * `write` without an Effect: frames are written in call order, at once when
   * no earlier frame waits for `drain`. `done` (optional) gets the same result
   * `write` would, when `write` would complete.
   */
  readonly writeNow: (chunks: ReadonlyArray<Uint8Array>, done?: (written: boolean) => void) => void
  /** Destroys the stream (idempotent). */
  readonly destroy: Effect.Effect<void>
}

/** Options of `makeFramedStream`. */
export interface FramedStreamOptions {
  /** Largest frame accepted; larger ones become `oversize` events. */
  readonly maxFrameBytes: number
  /**
   * A tighter limit for the first frame (the hello). `accept` sees the first
   * event as it is decoded; when it returns true the limit becomes
   * `maxFrameBytes` before the rest of that chunk is decoded.
   */
  readonly firstFrame?: {
    readonly maxFrameBytes: number
    readonly accept: (event: codec.DecodeEvent) => boolean
  }
}

/** A frame waiting for the stream to drain, with the callback of its writer. */
interface QueuedWrite {
  readonly chunks: ReadonlyArray<Uint8Array>
  readonly done: ((written: boolean) => void) | undefined
}

/**
 * Wraps a `Duplex` as a `FramedStream`. Nothing is read before `first` or
 * `listen`; then the stream flows, under the listener's `pause`/`resume`.
 * Writes go through one ordered queue that waits for `drain`. The stream is
 * destroyed when the scope closes.
 */
export const makeFramedStream = (
  stream: Duplex,
  options: FramedStreamOptions
): Effect.Effect<FramedStream, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => unsafeMakeFramedStream(stream, options)),
      (made) => Effect.sync(made.release)
    ),
    (made) => made.framed
  )

/**
 * `makeFramedStream` without a scope: `release` destroys the stream and
 * detaches from it (idempotent). For code that must start reading a stream
 * synchronously (the channel server's accept) and hands `release` to a scope
 * later.
 */
export const unsafeMakeFramedStream = (
  stream: Duplex,
  options: FramedStreamOptions
): { readonly framed: FramedStream; readonly release: () => void } => {
  const decoder = new codec.FrameDecoder(options.firstFrame?.maxFrameBytes ?? options.maxFrameBytes)
  const events: Array<codec.DecodeEvent> = []
  let first = options.firstFrame
  let failed = false
  let ended = stream.destroyed || stream.readableEnded
  let listener: FrameListener | undefined
  let endDelivered = false
  const deliverEnd = () => {
    if (listener === undefined || endDelivered) return
    endDelivered = true
    listener.onEnd()
  }
  const onEnd = () => {
    ended = true
    deliverFirstEnd()
    deliverEnd()
  }
  const onError = () => {
    // 'close' follows; the error itself ends the stream for us
    ended = true
    deliverFirstEnd()
    deliverEnd()
  }
  /** Set by `first` until the first event (or the end) has been handed over. */
  let onFirst: ((event: codec.DecodeEvent | undefined) => void) | undefined
  const deliverFirstEnd = () => {
    const deliver = onFirst
    onFirst = undefined
    deliver?.(undefined)
  }
  let paused = false
  const emit = (event: codec.DecodeEvent) => {
    if (event.type === "error") failed = true
    if (first !== undefined) {
      const accept = first.accept
      first = undefined
      if (accept(event)) decoder.maxFrame = options.maxFrameBytes
    }
    if (onFirst !== undefined) {
      const deliver = onFirst
      onFirst = undefined
      // nothing more is read until `listen`: the rest of this chunk waits in `events`
      paused = true
      stream.pause()
      deliver(event)
      return
    }
    if (listener !== undefined) listener.onEvent(event)
    else events.push(event)
  }
  const onData = (chunk: Uint8Array) => {
    if (failed) return
    decoder.push(chunk, emit)
    if (failed) return listener !== undefined ? deliverEnd() : undefined
    // a pause asked for while Node was switching the stream to flowing mode
    if (paused && !stream.isPaused()) stream.pause()
  }

  // ---- writes: one ordered queue, held while the stream's buffer is full ----
  const queue: Array<QueuedWrite> = []
  let draining = false
  const closedForWrites = () => stream.destroyed || stream.writableEnded
  const flush = () => {
    draining = false
    while (queue.length > 0) {
      const item = queue.shift()!
      if (closedForWrites()) {
        item.done?.(false)
        continue
      }
      const room = item.chunks.length === 0 || codec.writeFrameChunks(stream, item.chunks)
      if (!room) {
        draining = true
        // completes once the stream drains, with the frames queued behind it
        queue.unshift({ chunks: [], done: item.done })
        return
      }
      item.done?.(true)
    }
  }
  const onDrain = () => {
    if (!draining) return
    // the head is the placeholder of the frame that filled the buffer
    const head = queue.shift()
    head?.done?.(true)
    flush()
  }
  const failQueued = () => {
    draining = false
    const waiting = queue.splice(0)
    for (const item of waiting) item.done?.(false)
  }
  const onClose = () => {
    onEnd()
    failQueued()
  }
  const writeNow = (chunks: ReadonlyArray<Uint8Array>, done?: (written: boolean) => void): void => {
    if (closedForWrites()) return done?.(false)
    if (draining || queue.length > 0) {
      queue.push({ chunks, done })
      return
    }
    const room = chunks.length === 0 || codec.writeFrameChunks(stream, chunks)
    if (room) return done?.(true)
    draining = true
    queue.push({ chunks: [], done })
  }

  stream.on("end", onEnd)
  stream.on("close", onClose)
  stream.on("error", onError)
  stream.on("drain", onDrain)
  let released = false
  const release = (): void => {
    if (released) return
    released = true
    onFirst = undefined
    stream.destroy()
    stream.off("data", onData)
    stream.off("end", onEnd)
    stream.off("close", onClose)
    stream.off("drain", onDrain)
    // keep a no-op error listener: a late error must not crash the process
    stream.off("error", onError)
    stream.on("error", () => {})
    failQueued()
  }

  let flowing = false
  const flow = () => {
    if (flowing) return
    flowing = true
    stream.on("data", onData)
  }

  const firstEvent = (deliver: (event: codec.DecodeEvent | undefined) => void): void => {
    const ready = events.shift()
    if (ready !== undefined) return deliver(ready)
    if (failed || ended || stream.destroyed) return deliver(undefined)
    onFirst = deliver
    flow()
    stream.resume()
  }

  const listen = (l: FrameListener): ReadControl => {
    listener = l
    for (const event of events.splice(0)) l.onEvent(event)
    if (failed || ended || stream.destroyed) {
      deliverEnd()
    } else {
      flow()
      paused = false
      stream.resume()
    }
    return {
      pause: () => {
        if (paused) return
        paused = true
        stream.pause()
      },
      resume: () => {
        if (!paused) return
        paused = false
        if (!stream.destroyed) stream.resume()
      }
    }
  }

  const write = (chunks: ReadonlyArray<Uint8Array>): Effect.Effect<boolean> =>
    Effect.async<boolean>((resume) => {
      writeNow(chunks, (written) => resume(written ? Effect.succeed(true) : Effect.succeed(false)))
    })

  const destroy = Effect.sync(() => {
    stream.destroy()
  })
  const framed: FramedStream = { first: firstEvent, listen, write, writeNow, destroy }
  return { framed, release }
}
