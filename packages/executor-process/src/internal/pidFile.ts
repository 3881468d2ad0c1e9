/**
 * Pid files: one per running job in `<runtimeDir>/pids/<jobId>.json` (directory
 * 0700, file 0600: it holds the channel token), so a later parent of the same
 * instance can find, verify and reap or adopt what a crashed one left.
 *
 * @internal
 */
import { Either, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"

/** The content of a pid file. */
export const PidFile = Schema.Struct({
  version: Schema.Literal(1),
  pid: Schema.Int.pipe(Schema.positive()),
  /** The job's process group (the job leads it: equal to `pid`). */
  pgid: Schema.Int.pipe(Schema.positive()),
  /** /proc/<pid>/stat field 22. */
  startTime: Schema.String.pipe(Schema.pattern(/^[0-9]+$/)),
  /** /proc/sys/kernel/random/boot_id when the job started. */
  bootId: Schema.String,
  jobId: Schema.String,
  instanceId: Schema.String,
  channelToken: Schema.String,
  channelDir: Schema.String,
  /** Epoch milliseconds of the launch. */
  startedAt: Schema.Number,
  labels: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
})

/** A decoded pid file. */
export type PidFile = typeof PidFile.Type

const PidFileJson = Schema.parseJson(PidFile)
const decode = Schema.decodeUnknownEither(PidFileJson)

/** `<runtimeDir>/pids`. */
export const pidDir = (runtimeDir: string): string => path.join(runtimeDir, "pids")

/** `<runtimeDir>/pids/<jobId>.json`. */
export const pidFilePath = (runtimeDir: string, jobId: string): string => path.join(pidDir(runtimeDir), `${jobId}.json`)

/** Creates `<runtimeDir>/pids` (0700), refusing a symlink or a non-directory there. */
export const ensurePidDir = (runtimeDir: string): string => {
  const dir = pidDir(runtimeDir)
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const stat = fs.lstatSync(dir)
  if (!stat.isDirectory()) throw new Error(`${dir} is not a directory`)
  if ((stat.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700)
  return dir
}

/** Runtime directories whose pid directory this process has made (checked again when it is gone). */
const ensuredPidDirs = new Set<string>()

/** Writes the pid file atomically (a temporary file renamed into place). */
export const writePidFile = (runtimeDir: string, content: PidFile): string => {
  const file = pidFilePath(runtimeDir, content.jobId)
  const tmp = `${file}.${process.pid}.tmp`
  const { O_WRONLY, O_CREAT, O_TRUNC, O_NOFOLLOW } = fs.constants
  const open = () => fs.openSync(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600)
  let fd: number
  if (!ensuredPidDirs.has(runtimeDir)) {
    ensurePidDir(runtimeDir)
    ensuredPidDirs.add(runtimeDir)
    fd = open()
  } else {
    try {
      fd = open()
    } catch (error) {
      // the directory went away since: make it again, once
      if ((error as { code?: unknown }).code !== "ENOENT") throw error
      ensurePidDir(runtimeDir)
      fd = open()
    }
  }
  try {
    // our own value, typed: JSON as the schema's encoding would give (no transformation in it)
    fs.writeSync(fd, JSON.stringify(content))
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
  return file
}

/** Removes a pid file; a missing file is fine. */
export const removePidFile = (file: string): void => {
  try {
    fs.unlinkSync(file)
  } catch {
    // already gone
  }
}

/** One entry of the pid directory: its file, and its content or why it has none. */
export interface PidFileEntry {
  readonly file: string
  readonly content: Either.Either<PidFile, string>
}

/** Reads every `*.json` of `<runtimeDir>/pids` (none when the directory does not exist). */
export const readPidFiles = (runtimeDir: string): ReadonlyArray<PidFileEntry> => {
  const dir = pidDir(runtimeDir)
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
      let text: string
      try {
        const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
        try {
          text = fs.readFileSync(fd, "utf8")
        } finally {
          fs.closeSync(fd)
        }
      } catch (e) {
        return { file, content: Either.left(`unreadable: ${(e as NodeJS.ErrnoException).code ?? String(e)}`) }
      }
      return {
        file,
        content: Either.mapLeft(decode(text), () => "not a valid pid file")
      }
    })
}
