/**
 * Job records: one per submitted job in `<runtimeDir>/slurm/jobs/<slurmJobId>.json`
 * (directory 0700, file 0600: it holds the channel token, which must never be in
 * a job's name or comment, both public), so that a later parent of the same
 * instance can reap or adopt what a crashed one left.
 *
 * @internal
 */
import { Either, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"

/** The content of a job record. */
export const JobRecord = Schema.Struct({
  version: Schema.Literal(1),
  slurmJobId: Schema.String.pipe(Schema.pattern(/^[0-9]+$/)),
  jobId: Schema.String,
  instanceId: Schema.String,
  /** The Slurm job name (`flexec.<instance>.<job>`): matched again at recovery (ids restart with a wiped cluster). */
  name: Schema.String,
  channelToken: Schema.String,
  channelDir: Schema.String,
  logFile: Schema.String,
  /** Epoch milliseconds of the submission. */
  submittedAt: Schema.Number
})

/** A decoded job record. */
export type JobRecord = typeof JobRecord.Type

const decode = Schema.decodeUnknownEither(Schema.parseJson(JobRecord))

/** `<runtimeDir>/slurm`: the backend's own files (records, the wrapper). */
export const slurmDir = (runtimeDir: string): string => path.join(runtimeDir, "slurm")

/** `<runtimeDir>/slurm/jobs`. */
export const recordDir = (runtimeDir: string): string => path.join(slurmDir(runtimeDir), "jobs")

/** Makes `dir` (0700), refusing a symlink or a non-directory there. */
export const ensurePrivateDir = (dir: string): void => {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const stat = fs.lstatSync(dir)
  if (!stat.isDirectory()) throw new Error(`${dir} is not a directory`)
  if ((stat.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700)
}

/** Writes the record atomically (0600, a temporary file renamed into place); returns its path. */
export const writeRecord = (runtimeDir: string, record: JobRecord): string => {
  const dir = recordDir(runtimeDir)
  ensurePrivateDir(slurmDir(runtimeDir))
  ensurePrivateDir(dir)
  const file = path.join(dir, `${record.slurmJobId}.json`)
  const tmp = `${file}.${process.pid}.tmp`
  const { O_WRONLY, O_CREAT, O_TRUNC, O_NOFOLLOW } = fs.constants
  const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600)
  try {
    fs.writeSync(fd, JSON.stringify(record))
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
  return file
}

/** Removes a record; a missing one is fine. */
export const removeRecord = (file: string): void => {
  try {
    fs.unlinkSync(file)
  } catch {
    // already gone
  }
}

/** One file of the record directory: its path, and its content or why it has none. */
export interface RecordEntry {
  readonly file: string
  readonly record: Either.Either<JobRecord, string>
}

/** Every `*.json` of `<runtimeDir>/slurm/jobs` (none when the directory does not exist). */
export const readRecords = (runtimeDir: string): ReadonlyArray<RecordEntry> => {
  const dir = recordDir(runtimeDir)
  let names: Array<string>
  try {
    names = fs.readdirSync(dir)
  } catch {
    return []
  }
  return names
    .filter((name) => name.endsWith(".json"))
    .map((name) => {
      const file = path.join(dir, name)
      try {
        const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
        let text: string
        try {
          text = fs.readFileSync(fd, "utf8")
        } finally {
          fs.closeSync(fd)
        }
        const record = Either.mapLeft(decode(text), () => "not a valid job record")
        return {
          file,
          record: Either.flatMap(record, (r) =>
            name === `${r.slurmJobId}.json` ? Either.right(r) : Either.left("its name is not its Slurm job id")
          )
        }
      } catch (e) {
        return { file, record: Either.left(`unreadable: ${(e as NodeJS.ErrnoException).code ?? String(e)}`) }
      }
    })
}

/** The wrapper every job runs: it execs the job's argv unchanged (no shell word splitting, no interpolation). */
export const wrapperScript = '#!/bin/sh\n# flexec: runs the job\'s argv as given\nexec "$@"\n'

/** Writes (once) `<runtimeDir>/slurm/flexec-exec.sh` (0700) and returns its path. sbatch copies its content at submission. */
export const ensureWrapper = (runtimeDir: string): string => {
  const dir = slurmDir(runtimeDir)
  ensurePrivateDir(dir)
  const file = path.join(dir, "flexec-exec.sh")
  const current = (() => {
    try {
      const stat = fs.lstatSync(file)
      return stat.isFile() ? fs.readFileSync(file, "utf8") : undefined
    } catch {
      return undefined
    }
  })()
  if (current !== wrapperScript) {
    const tmp = `${file}.${process.pid}.tmp`
    fs.writeFileSync(tmp, wrapperScript, { mode: 0o700 })
    fs.renameSync(tmp, file)
  }
  return file
}
