/**
 * The OS processes of a run or a job, found by the `FLEXEC_JOB_ID` of their
 * initial environment (Linux `/proc`).
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"

/** Pids of OS processes whose initial environment carries `FLEXEC_JOB_ID=<prefix>...` (Linux `/proc`). */
export const processesOfRun = (jobIdPrefix: string): ReadonlyArray<number> => {
  let entries: Array<string>
  try {
    entries = fs.readdirSync("/proc")
  } catch {
    return []
  }
  const needle = `FLEXEC_JOB_ID=${jobIdPrefix}`
  const found: Array<number> = []
  for (const name of entries) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      const env = fs.readFileSync(`/proc/${name}/environ`, "latin1")
      if (env.split("\0").some((v) => v.startsWith(needle))) {
        // a zombie is gone for our purposes
        const stat = fs.readFileSync(`/proc/${name}/stat`, "latin1")
        if (!/\) Z /.test(stat)) found.push(Number(name))
      }
    } catch {
      // gone, or not ours
    }
  }
  return found
}

/** Pids of live OS processes whose initial environment carries exactly `FLEXEC_JOB_ID=<jobId>` (Linux `/proc`). */
export const processesOfJob = (jobId: string): ReadonlyArray<number> =>
  processesOfRun(jobId).filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(`FLEXEC_JOB_ID=${jobId}`)
    } catch {
      return false
    }
  })

/** The job id prefix of a run. */
export const jobPrefix = (runId: string) => `c${runId}-`
