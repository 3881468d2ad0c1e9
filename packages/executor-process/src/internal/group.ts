/**
 * Signals to a job's process group, guarded against pid reuse.
 *
 * @internal
 */
import { readStat } from "./procfs.js"

/** The job's process group: led by the job's first process. */
export interface ProcessGroup {
  /** The group id, equal to the leader's pid. */
  readonly pgid: number
  /** The leader's start time (/proc/<pid>/stat field 22), when known. */
  readonly leaderStartTime: string | undefined
}

/** What `signalGroup` did. */
export type SignalResult = "sent" | "gone" | "reused" | "denied"

/**
 * Sends `signal` to every process of the group. Once the leader is gone its pid
 * may be reused: if a process with the leader's pid exists and is not the
 * leader (another start time), the group is not signalled. While no process
 * has that pid, the id cannot name another group, so the group's remaining
 * members (children that kept the group) are signalled.
 */
export const signalGroup = (group: ProcessGroup, signal: NodeJS.Signals): SignalResult => {
  const leader = readStat(group.pgid)
  if (leader !== undefined && group.leaderStartTime !== undefined && leader.startTime !== group.leaderStartTime) {
    return "reused"
  }
  try {
    process.kill(-group.pgid, signal)
    return "sent"
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    return code === "EPERM" ? "denied" : "gone"
  }
}
