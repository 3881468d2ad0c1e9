/**
 * Reading a job's deployed `meta.json`, which the job itself may have written:
 * never through a link, never from a FIFO or a device, never unbounded.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { InvalidJobMeta, JobMetaMissing } from "../../Errors.js"
import type { JobId } from "../../JobId.js"
import { describeValue } from "../backendGuard.js"

/** Largest deployed meta.json read (bytes). */
export const MAX_META_BYTES = 4 * 1024 * 1024

/** The parsed JSON of `<jobDir>/meta.json`. */
export const readDeployedMeta = (jobId: JobId, jobDir: string): Effect.Effect<unknown, JobMetaMissing | InvalidJobMeta> =>
  // one step: plain reads, then the outcome
  Effect.suspend((): Effect.Effect<unknown, JobMetaMissing | InvalidJobMeta> => {
    const metaPath = path.join(jobDir, "meta.json")
    let jobDirStat: fs.Stats | undefined
    try {
      jobDirStat = fs.lstatSync(jobDir, { throwIfNoEntry: false })
    } catch {
      jobDirStat = undefined
    }
    if (jobDirStat === undefined) return Effect.fail(new JobMetaMissing({ jobId, path: metaPath }))
    if (jobDirStat.isSymbolicLink() || !jobDirStat.isDirectory()) {
      return Effect.fail(new InvalidJobMeta({ jobId, issues: `${jobDir} must be a directory, not a symbolic link or a file` }))
    }
    // O_NONBLOCK and regular files only: a FIFO or a device never blocks the parent
    let text: string
    let fd: number | undefined
    try {
      fd = fs.openSync(metaPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
      const stat = fs.fstatSync(fd)
      if (!stat.isFile()) return Effect.fail(new InvalidJobMeta({ jobId, issues: `${metaPath} must be a regular file` }))
      if (stat.size > MAX_META_BYTES) {
        return Effect.fail(new InvalidJobMeta({ jobId, issues: `${metaPath} is ${stat.size} bytes, over the ${MAX_META_BYTES} allowed` }))
      }
      text = fs.readFileSync(fd, "utf8")
    } catch {
      return Effect.fail(new JobMetaMissing({ jobId, path: metaPath }))
    } finally {
      if (fd !== undefined) fs.closeSync(fd)
    }
    try {
      return Effect.succeed(JSON.parse(text) as unknown)
    } catch (e) {
      return Effect.fail(new InvalidJobMeta({ jobId, issues: `${metaPath} is not valid JSON: ${describeValue(e)}` }))
    }
  })
