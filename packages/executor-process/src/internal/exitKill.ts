/**
 * The last resort when the parent exits without closing its executor: one
 * process `'exit'` listener (installed while a guarded job runs) that SIGKILLs
 * every such job's process group and removes its pid file and channel
 * directory. An `'exit'` listener cannot wait, so there is no SIGTERM and no
 * grace period here: the orderly abort is the executor's `close()` (which the
 * Promise facade also runs on SIGINT/SIGTERM/SIGHUP and uncaught errors).
 *
 * @internal
 */
import * as fs from "node:fs"
import { signalGroup } from "./group.js"
import type { ProcessGroup } from "./group.js"
import { removePidFile } from "./pidFile.js"

/** A running job the hook kills on exit. */
export interface ExitKillEntry {
  readonly group: ProcessGroup
  readonly pidFile: string
  readonly channelDir: string | undefined
}

const live = new Set<ExitKillEntry>()

const onExit = (): void => {
  for (const entry of live) {
    try {
      signalGroup(entry.group, "SIGKILL")
      removePidFile(entry.pidFile)
      if (entry.channelDir !== undefined) fs.rmSync(entry.channelDir, { recursive: true, force: true })
    } catch {
      // the others still go
    }
  }
  live.clear()
}

/** Kills `entry`'s group if the process exits before the returned function is called. */
export const killOnExit = (entry: ExitKillEntry): (() => void) => {
  if (live.size === 0) process.on("exit", onExit)
  live.add(entry)
  return () => {
    if (live.delete(entry) && live.size === 0) process.off("exit", onExit)
  }
}
