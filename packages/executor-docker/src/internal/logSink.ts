/**
 * Where a container's demultiplexed output goes: the job's log file (an fd the
 * parent opened itself, without following symlinks, before the start) and the
 * handle's `logs` stream (line by line).
 */
import type { LogLine } from "@flexec/core"
import { Duration, Effect, Option, PubSub, Stream } from "effect"
import * as fs from "node:fs"
import { StringDecoder } from "node:string_decoder"
import type { OutputChunk } from "../DockerClient.js"

/** Longest partial line kept before it is emitted as a line of its own. */
const maxPendingLine = 64 * 1024

/** Lines kept for a subscriber that comes late. */
const replayLines = 1024

/** Receives the container's output. */
export interface LogSink {
  readonly write: (chunk: OutputChunk) => void
  /** The output ended: flush partial lines and end the stream. */
  readonly end: () => void
  /** No more writes to the fd (called before it is closed). */
  readonly detach: () => void
  readonly logs: Stream.Stream<LogLine>
}

/**
 * Opens `<jobDir>/log.txt` for appending without following a symlink and
 * without blocking on a FIFO; refuses anything but a regular file.
 */
export const openLogFile = (file: string): number => {
  const { O_WRONLY, O_CREAT, O_APPEND, O_NOFOLLOW, O_NONBLOCK } = fs.constants
  const fd = fs.openSync(file, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK, 0o644)
  try {
    if (!fs.fstatSync(fd).isFile()) throw new Error(`${file} is not a regular file`)
    return fd
  } catch (e) {
    fs.closeSync(fd)
    throw e
  }
}

/** A sink writing to `fd` (at most `maxBytes`) and to a replaying PubSub of lines. */
export const makeLogSink = (fd: number, maxBytes: number): Effect.Effect<LogSink> =>
  Effect.gen(function* () {
    const pubsub = yield* PubSub.unbounded<Option.Option<LogLine>>({ replay: replayLines })
    const publish = (value: Option.Option<LogLine>) => Effect.runSync(PubSub.publish(pubsub, value))
    let attached = true
    let ended = false
    let written = 0
    let truncated = false
    const split = {
      stdout: { decoder: new StringDecoder("utf8"), pending: "" },
      stderr: { decoder: new StringDecoder("utf8"), pending: "" }
    }
    const emit = (stream: "stdout" | "stderr", line: string) =>
      publish(Option.some({ stream, line: line.endsWith("\r") ? line.slice(0, -1) : line, time: Date.now() }))

    const toFile = (bytes: Buffer) => {
      if (!attached || truncated) return
      try {
        if (written + bytes.length > maxBytes) {
          truncated = true
          fs.writeSync(fd, `\n[flexec] log truncated at ${maxBytes} bytes; the rest is only in the logs stream\n`)
          return
        }
        fs.writeSync(fd, bytes)
        written += bytes.length
      } catch {
        // A full disk must not take the parent down; the stream still gets the lines.
        truncated = true
      }
    }

    const write = (chunk: OutputChunk) => {
      if (ended) return
      toFile(chunk.bytes)
      const state = split[chunk.stream]
      let text = state.pending + state.decoder.write(chunk.bytes)
      let index: number
      while ((index = text.indexOf("\n")) >= 0) {
        emit(chunk.stream, text.slice(0, index))
        text = text.slice(index + 1)
      }
      while (text.length > maxPendingLine) {
        emit(chunk.stream, text.slice(0, maxPendingLine))
        text = text.slice(maxPendingLine)
      }
      state.pending = text
    }

    const end = () => {
      if (ended) return
      ended = true
      for (const stream of ["stdout", "stderr"] as const) {
        const state = split[stream]
        const rest = state.pending + state.decoder.end()
        if (rest.length > 0) emit(stream, rest)
        state.pending = ""
      }
      publish(Option.none())
    }

    const logs = Stream.fromPubSub(pubsub).pipe(
      Stream.takeWhile(Option.isSome),
      Stream.map((o) => o.value)
    )
    return { write, end, detach: () => (attached = false), logs }
  })

/** Waits for the end of the output (`done`), giving up after 5 s. */
export const outputEnded = (done: Promise<unknown>): Effect.Effect<void> =>
  Effect.promise(() => done).pipe(Effect.timeout(Duration.seconds(5)), Effect.ignore)
