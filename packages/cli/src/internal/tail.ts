/**
 * Follows a growing log file line by line (the job log the backend writes).
 *
 * @internal
 */
import { Effect } from "effect"
import * as fs from "node:fs"

/** A follower: `read` returns the complete lines added since the last call; `flush` also the partial last one. */
export interface LogFollower {
  readonly read: Effect.Effect<ReadonlyArray<string>>
  readonly flush: Effect.Effect<ReadonlyArray<string>>
}

/**
 * Follows `file` from its start. A file that does not exist yet reads as
 * empty; a file that shrank (rotated) is read again from its start.
 */
export const followFile = (file: string): LogFollower => {
  let offset = 0
  let partial = ""
  const decoder = new TextDecoder()
  const readNew = (): string => {
    let fd: number
    try {
      fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    } catch {
      return ""
    }
    try {
      const size = fs.fstatSync(fd).size
      if (size < offset) offset = 0
      let text = ""
      const buf = Buffer.alloc(64 * 1024)
      while (offset < size) {
        const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - offset), offset)
        if (n <= 0) break
        offset += n
        text += decoder.decode(buf.subarray(0, n), { stream: true })
      }
      return text
    } finally {
      fs.closeSync(fd)
    }
  }
  const lines = (final: boolean): ReadonlyArray<string> => {
    const all = (partial + readNew()).split("\n")
    partial = all.pop() ?? ""
    if (final && partial !== "") {
      all.push(partial)
      partial = ""
    }
    return all.map((l) => l.replace(/\r$/, ""))
  }
  return { read: Effect.sync(() => lines(false)), flush: Effect.sync(() => lines(true)) }
}
