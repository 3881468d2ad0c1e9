/**
 * The rc file `<jobDir>/_process_rc.txt`: deleted before launch, read once after
 * the exit (no symlinks followed, at most 32 bytes), then deleted.
 */
import * as fs from "node:fs"

/** Removes a stale rc file (never following a link: a link itself is removed). */
export const removeRcFile = (file: string): void => {
  // usually absent: look first, as a failed unlink costs an exception (~0.2 ms on a job's start)
  if (fs.lstatSync(file, { throwIfNoEntry: false }) === undefined) return
  try {
    fs.unlinkSync(file)
  } catch {
    // gone meanwhile
  }
}

/** Reads and deletes the rc file; `undefined` when absent, a link, or not an integer. */
export const consumeRcFile = (file: string): number | undefined => {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
    if (!fs.fstatSync(fd).isFile()) return undefined
    const buf = Buffer.alloc(32)
    const n = fs.readSync(fd, buf, 0, 32, 0)
    const text = buf.subarray(0, n).toString("utf8").split(/\r?\n/)[0]!.trim()
    return /^-?\d+$/.test(text) ? Number.parseInt(text, 10) : undefined
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
    removeRcFile(file)
  }
}
