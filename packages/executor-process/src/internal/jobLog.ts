/**
 * The job log: `log.txt` with rotation by renaming (`log.txt` → `log.txt.1` →
 * `log.txt.2`), written line by line, never through a path the job planted.
 *
 * @internal
 */
import * as fs from "node:fs"
import { StringDecoder } from "node:string_decoder"

const { O_WRONLY, O_CREAT, O_APPEND, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = fs.constants

/**
 * Flags of every open: no symlink is followed (ELOOP), and a planted FIFO
 * cannot block the open (ENXIO without a reader); `O_NONBLOCK` changes nothing
 * for a regular file.
 */
const openFlags = O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK

const codeOf = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code

const unlinkQuietly = (file: string): void => {
  try {
    fs.unlinkSync(file)
  } catch {
    // already gone, or not ours to remove: the next open says which
  }
}

/** An open log file. */
export interface OpenedLog {
  readonly fd: number
  readonly size: number
  /** Something that was not a plain file of ours (symlink, FIFO, hard link) was removed first. */
  readonly replaced: boolean
}

/**
 * Opens `file` for appending. A symlink, FIFO or other non-regular file, or a
 * regular file with more than one link, at that path is unlinked (its target is
 * never touched) and a fresh file is created with `O_EXCL`. A directory there
 * fails the open.
 */
export const openLogFile = (file: string, mode = 0o600): OpenedLog => {
  let replaced = false
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number
    try {
      fd = fs.openSync(file, openFlags | (replaced ? O_EXCL : 0), mode)
    } catch (e) {
      const code = codeOf(e)
      if (code === "ELOOP" || code === "ENXIO" || code === "EEXIST") {
        unlinkQuietly(file)
        replaced = true
        continue
      }
      throw e
    }
    const stat = fs.fstatSync(fd)
    if (!stat.isFile() || stat.nlink !== 1) {
      fs.closeSync(fd)
      unlinkQuietly(file)
      replaced = true
      continue
    }
    return { fd, size: stat.size, replaced }
  }
  throw new Error(`${file} was replaced again while it was being opened`)
}

/** Options of `JobLog`. */
export interface JobLogOptions {
  /** Rotate when a write would take the current file past this many bytes. */
  readonly maxBytes: number
  /** Files kept, `log.txt` included (3: `log.txt`, `.1`, `.2`). */
  readonly files: number
  /** Owner given to every file created (when jobs run as another user). */
  readonly owner?: { readonly uid: number; readonly gid: number } | undefined
}

/**
 * A rotating log written with synchronous appends (each line reaches the file
 * before it is published elsewhere). Write errors never reach the job: once the
 * file cannot be written the log stops writing and counts what it dropped.
 */
export class JobLog {
  private fd: number | undefined
  private size: number
  /** Lines that could not be written. */
  dropped = 0
  /** Why the log stopped writing, if it did. */
  failure: string | undefined
  /** The first open replaced a planted file. */
  readonly replaced: boolean

  constructor(readonly file: string, private readonly options: JobLogOptions) {
    const opened = openLogFile(file)
    this.fd = opened.fd
    this.size = opened.size
    this.replaced = opened.replaced
    this.chown(opened.fd)
  }

  private chown(fd: number): void {
    if (this.options.owner !== undefined) fs.fchownSync(fd, this.options.owner.uid, this.options.owner.gid)
  }

  /** Appends one line (a newline is added). */
  write(line: string): void {
    if (this.fd === undefined) {
      this.dropped++
      return
    }
    const bytes = Buffer.from(line + "\n", "utf8")
    if (this.size > 0 && this.size + bytes.length > this.options.maxBytes) this.rotate()
    if (this.fd === undefined) {
      this.dropped++
      return
    }
    try {
      fs.writeSync(this.fd, bytes)
      this.size += bytes.length
    } catch (e) {
      this.stop(`write failed: ${codeOf(e) ?? String(e)}`)
      this.dropped++
    }
  }

  private rotate(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd)
    this.fd = undefined
    const files = Math.max(1, this.options.files)
    // renames move whatever is at a name (a planted symlink moves as a link): nothing is written through them
    for (let i = files - 1; i >= 1; i--) {
      const from = i === 1 ? this.file : `${this.file}.${i - 1}`
      try {
        fs.renameSync(from, `${this.file}.${i}`)
      } catch {
        // a missing older file is normal; anything else only costs old content
      }
    }
    if (files === 1) unlinkQuietly(this.file)
    try {
      const opened = openLogFile(this.file)
      this.fd = opened.fd
      this.size = opened.size
      this.chown(opened.fd)
    } catch (e) {
      this.stop(`reopening after rotation failed: ${codeOf(e) ?? String(e)}`)
    }
  }

  private stop(reason: string): void {
    this.failure ??= reason
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd)
      } catch {
        // nothing left to do with it
      }
    }
    this.fd = undefined
  }

  /** Closes the file; later writes are dropped. */
  close(): void {
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd)
      } catch {
        // already closed
      }
    }
    this.fd = undefined
  }
}

/**
 * Splits a byte stream into UTF-8 lines (a trailing `\r` is dropped). A line
 * longer than `maxLine` characters is cut into pieces of that size, so a job
 * that never prints a newline cannot grow the parent's memory.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder("utf8")
  private pending = ""

  constructor(private readonly emit: (line: string) => void, private readonly maxLine = 64 * 1024) {}

  /** Feeds a chunk; emits every complete line. */
  push(chunk: Buffer): void {
    this.consume(this.decoder.write(chunk))
  }

  /** Emits what is left (a last line without a newline). */
  end(): void {
    this.consume(this.decoder.end())
    if (this.pending.length > 0) {
      const rest = this.pending
      this.pending = ""
      this.emitLine(rest)
    }
  }

  private consume(text: string): void {
    const all = this.pending + text
    let start = 0
    let nl = all.indexOf("\n", start)
    while (nl >= 0) {
      this.emitLine(all.slice(start, nl))
      start = nl + 1
      nl = all.indexOf("\n", start)
    }
    let data = all.slice(start)
    while (data.length > this.maxLine) {
      this.emit(data.slice(0, this.maxLine))
      data = data.slice(this.maxLine)
    }
    this.pending = data
  }

  private emitLine(line: string): void {
    const clean = line.endsWith("\r") ? line.slice(0, -1) : line
    for (let i = 0; i < clean.length || i === 0; i += this.maxLine) {
      this.emit(clean.slice(i, i + this.maxLine))
      if (clean.length === 0) break
    }
  }
}
