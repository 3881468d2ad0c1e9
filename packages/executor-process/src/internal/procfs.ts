/**
 * Facts about processes read from /proc (Linux): start times, process groups,
 * liveness and the initial environment. Every function answers `undefined`
 * (or `false`) rather than throwing when /proc cannot tell.
 *
 * @internal
 */
import * as fs from "node:fs"

/** The fields of /proc/<pid>/stat this package reads. */
export interface ProcStat {
  /** Field 3: R, S, D, Z, T, ... */
  readonly state: string
  /** Field 5: the process group id. */
  readonly pgrp: number
  /** Field 22: start time in clock ticks since boot, as text (it may exceed 2^53). */
  readonly startTime: string
}

/** Reads /proc/<pid>/stat, or `undefined` when the process does not exist (or /proc is absent). */
export const readStat = (pid: number): ProcStat | undefined => {
  let text: string
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined
  }
  // field 2 (comm) is in parentheses and may hold spaces or ")": split after the last ")"
  const close = text.lastIndexOf(")")
  if (close < 0) return undefined
  const rest = text.slice(close + 2).split(" ")
  // rest[0] is field 3, so field n is rest[n - 3]
  const state = rest[0]
  const pgrp = Number(rest[2])
  const startTime = rest[19]
  if (state === undefined || startTime === undefined || !Number.isInteger(pgrp)) return undefined
  return { state, pgrp, startTime }
}

/** The start time of `pid` (field 22), or `undefined`. */
export const startTimeOf = (pid: number): string | undefined => readStat(pid)?.startTime

let cachedBootId: string | undefined

/** The boot id (/proc/sys/kernel/random/boot_id), so start times from another boot never match. */
export const bootId = (): string => {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
    } catch {
      cachedBootId = "unknown"
    }
  }
  return cachedBootId
}

/**
 * True when `pid` is alive and, if `startTime` is given, is the process that
 * started then. A zombie (exited, awaiting its reaper) counts as dead.
 */
export const isAlive = (pid: number, startTime?: string): boolean => {
  const stat = readStat(pid)
  if (stat !== undefined) {
    if (stat.state === "Z" || stat.state === "X") return false
    return startTime === undefined || stat.startTime === startTime
  }
  // no /proc entry: either the process is gone, or there is no /proc at all
  if (fs.existsSync("/proc/self/stat")) return false
  if (startTime !== undefined) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The value of `name` in the initial environment of `pid` (/proc/<pid>/environ), or `undefined`. */
export const environValue = (pid: number, name: string): string | undefined => {
  let raw: Buffer
  try {
    raw = fs.readFileSync(`/proc/${pid}/environ`)
  } catch {
    return undefined
  }
  const prefix = `${name}=`
  for (const entry of raw.toString("utf8").split("\0")) {
    if (entry.startsWith(prefix)) return entry.slice(prefix.length)
  }
  return undefined
}
