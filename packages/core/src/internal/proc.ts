/**
 * Facts about processes read from /proc (Linux), for the owner lock and for
 * recovery checks in the backends.
 */
import * as fs from "node:fs"

/** The start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22), or `undefined`. */
export const processStartTime = (pid: number): string | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // the command name (field 2) may contain spaces and parentheses: split after the last ")"
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // rest[0] is field 3 (state); field 22 is rest[19]
    return rest[19]
  } catch {
    return undefined
  }
}

/** The boot id, so start times from another boot never match. */
export const bootId = (): string => {
  try {
    return fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
  } catch {
    return "unknown"
  }
}

/** True when `pid` exists (a zombie counts as gone). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return true
  }
}

/** The initial environment of `pid` (/proc/<pid>/environ), or `undefined` when it cannot be read. */
export const processEnviron = (pid: number): Map<string, string> | undefined => {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/environ`, "utf8")
    const out = new Map<string, string>()
    for (const entry of raw.split("\0")) {
      const i = entry.indexOf("=")
      if (i > 0) out.set(entry.slice(0, i), entry.slice(i + 1))
    }
    return out
  } catch {
    return undefined
  }
}
