/**
 * The job's output, read back from its log file (slurmstepd writes the job's
 * stdout and stderr into `--output` directly: no pipe reaches the parent), as
 * lines on a `Stream` that ends when the job has ended and the file is drained.
 *
 * @internal
 */
import { Duration, Effect, Option, PubSub, Stream } from "effect"
import * as fs from "node:fs"
import { StringDecoder } from "node:string_decoder"
import type { LogLine } from "./core.js"

/** How often the file is read for new bytes. */
const readInterval = Duration.millis(100)
/** Lines kept for subscribers that come late, and buffered per subscriber (the oldest go first). */
const replay = 256
const capacity = 1024
/** A line longer than this is cut (a job that never prints a newline cannot grow the parent). */
const maxLine = 64 * 1024

type LogEvent = Option.Option<LogLine>

/** Options of `tailLog`. */
export interface TailOptions {
  readonly file: string
  /** Where this run's output starts (the file is appended to). */
  readonly offset: number
  /** True once the job has ended: the next read to the end of the file is the last. */
  readonly ended: () => boolean
  /** False while the job is known not to run yet (pending): the file is not read then. */
  readonly mayWrite: () => boolean
}

/**
 * Tails the file in a fiber of the current scope (closing it ends the stream)
 * and returns the stream of its lines.
 */
export const tailLog = (options: TailOptions): Effect.Effect<Stream.Stream<LogLine>, never, import("effect").Scope.Scope> =>
  Effect.gen(function* () {
    const lines = yield* Effect.acquireRelease(PubSub.sliding<LogEvent>({ capacity, replay }), (p) => PubSub.shutdown(p))
    let fd: number | undefined
    let offset = options.offset
    let pending = ""
    let finished = false
    const decoder = new StringDecoder("utf8")
    const buffer = Buffer.alloc(64 * 1024)

    const publish = (line: string) =>
      Effect.runSync(PubSub.publish(lines, Option.some({ stream: "stdout" as const, line: line.endsWith("\r") ? line.slice(0, -1) : line, time: Date.now() })))

    const consume = (text: string) => {
      const all = pending + text
      let start = 0
      let nl = all.indexOf("\n")
      while (nl >= 0) {
        const line = all.slice(start, nl)
        for (let i = 0; i < line.length || i === 0; i += maxLine) {
          publish(line.slice(i, i + maxLine))
          if (line.length === 0) break
        }
        start = nl + 1
        nl = all.indexOf("\n", start)
      }
      let rest = all.slice(start)
      while (rest.length > maxLine) {
        publish(rest.slice(0, maxLine))
        rest = rest.slice(maxLine)
      }
      pending = rest
    }

    const readAvailable = (): void => {
      if (fd === undefined) {
        try {
          fd = fs.openSync(options.file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
        } catch {
          return
        }
      }
      for (;;) {
        let n: number
        try {
          n = fs.readSync(fd, buffer, 0, buffer.length, offset)
        } catch {
          return
        }
        if (n === 0) return
        offset += n
        consume(decoder.write(buffer.subarray(0, n)))
      }
    }

    const finish = Effect.sync(() => {
      if (finished) return
      finished = true
      readAvailable()
      consume(decoder.end())
      if (pending.length > 0) {
        publish(pending)
        pending = ""
      }
      Effect.runSync(PubSub.publish(lines, Option.none()))
      if (fd !== undefined) {
        try {
          fs.closeSync(fd)
        } catch {
          // closed
        }
        fd = undefined
      }
    })

    const loop = Effect.gen(function* () {
      while (!options.ended()) {
        if (options.mayWrite()) yield* Effect.sync(readAvailable)
        yield* Effect.sleep(readInterval)
      }
    }).pipe(Effect.ensuring(finish))
    yield* Effect.forkScoped(loop)

    return Stream.unwrapScoped(
      Effect.gen(function* () {
        if (yield* PubSub.isShutdown(lines)) return Stream.empty
        const queue = yield* PubSub.subscribe(lines)
        return Stream.fromQueue(queue).pipe(Stream.takeWhile(Option.isSome), Stream.map((l) => l.value))
      })
    )
  })
