/**
 * The job's output, read back from the files slurmstepd writes (`--output` for
 * stdout, `--error` for stderr: no pipe reaches the parent), as labelled lines
 * on a `Stream` that ends when the job has ended and the files are drained;
 * every line is appended to the job log too.
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

/**
 * Readies `file` for appending: returns its size (where this run's output starts), or 0 after removing
 * something planted there that is not a plain single-link file (a symlink, a FIFO, a hard link; its
 * target is never touched). Throws for a directory.
 */
export const prepareOutputFile = (file: string): number => {
  const stat = fs.lstatSync(file, { throwIfNoEntry: false })
  if (stat === undefined) return 0
  if (stat.isFile() && stat.nlink === 1) return stat.size
  if (stat.isDirectory()) throw new Error(`${file} is a directory`)
  fs.unlinkSync(file)
  return 0
}

/** One file slurmstepd writes (`--output` or `--error`), read back from `offset`, its lines labelled `stream`. */
export interface TailSource {
  readonly file: string
  /** Where this run's output starts (the file is appended to). */
  readonly offset: number
  readonly stream: LogLine["stream"]
}

/** Options of `tailLog`. */
export interface TailOptions {
  /** Read in this order each round (stdout first: a line seen on stderr was written after what stdout holds then). */
  readonly sources: ReadonlyArray<TailSource>
  /** The job log (`paths.logFile`): every line read, of either stream, is appended to it (its descriptor is opened by the caller). */
  readonly sink: number | undefined
  /** True once the job has ended: the next read to the end of the files is the last. */
  readonly ended: () => boolean
  /** False while the job is known not to run yet (pending): the files are not read then. */
  readonly mayWrite: () => boolean
}

interface Source {
  readonly spec: TailSource
  fd: number | undefined
  offset: number
  pending: string
  readonly decoder: StringDecoder
}

/**
 * Tails the files in a fiber of the current scope (closing it ends the stream)
 * and returns the stream of their lines.
 */
export const tailLog = (options: TailOptions): Effect.Effect<Stream.Stream<LogLine>, never, import("effect").Scope.Scope> =>
  Effect.gen(function* () {
    const lines = yield* Effect.acquireRelease(PubSub.sliding<LogEvent>({ capacity, replay }), (p) => PubSub.shutdown(p))
    const sources: Array<Source> = options.sources.map((spec) => ({ spec, fd: undefined, offset: spec.offset, pending: "", decoder: new StringDecoder("utf8") }))
    let finished = false
    const buffer = Buffer.alloc(64 * 1024)

    const publish = (stream: LogLine["stream"], raw: string) => {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw
      if (options.sink !== undefined) {
        try {
          fs.writeSync(options.sink, `${line}\n`)
        } catch {
          // the job log is best effort: the stream still gets the line
        }
      }
      Effect.runSync(PubSub.publish(lines, Option.some({ stream, line, time: Date.now() })))
    }

    const consume = (source: Source, text: string) => {
      const stream = source.spec.stream
      const all = source.pending + text
      let start = 0
      let nl = all.indexOf("\n")
      while (nl >= 0) {
        const line = all.slice(start, nl)
        for (let i = 0; i < line.length || i === 0; i += maxLine) {
          publish(stream, line.slice(i, i + maxLine))
          if (line.length === 0) break
        }
        start = nl + 1
        nl = all.indexOf("\n", start)
      }
      let rest = all.slice(start)
      while (rest.length > maxLine) {
        publish(stream, rest.slice(0, maxLine))
        rest = rest.slice(maxLine)
      }
      source.pending = rest
    }

    const readSource = (source: Source): void => {
      if (source.fd === undefined) {
        try {
          source.fd = fs.openSync(source.spec.file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
        } catch {
          return
        }
      }
      for (;;) {
        let n: number
        try {
          n = fs.readSync(source.fd, buffer, 0, buffer.length, source.offset)
        } catch {
          return
        }
        if (n === 0) return
        source.offset += n
        consume(source, source.decoder.write(buffer.subarray(0, n)))
      }
    }
    const readAvailable = (): void => {
      for (const source of sources) readSource(source)
    }

    const finish = Effect.sync(() => {
      if (finished) return
      finished = true
      readAvailable()
      for (const source of sources) {
        consume(source, source.decoder.end())
        if (source.pending.length > 0) {
          publish(source.spec.stream, source.pending)
          source.pending = ""
        }
        if (source.fd !== undefined) {
          try {
            fs.closeSync(source.fd)
          } catch {
            // closed
          }
          source.fd = undefined
        }
      }
      Effect.runSync(PubSub.publish(lines, Option.none()))
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
