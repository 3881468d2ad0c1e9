/**
 * ChannelDir: a job channel's private directory (0700, owned by the job's user
 * when it has one), made before the transport listens in it and removed when
 * the channel closes. Imports nothing of the protocol.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import { LaunchFailed } from "../Errors.js"

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const launchFailed = (jobId: string, reason: string, cause?: unknown) =>
  new LaunchFailed(cause === undefined ? { jobId, reason } : { jobId, reason, cause })

/**
 * Creates the channel directory (0700, owned by `owner` when given; with `reuse`,
 * keeps an existing real directory). Synchronous
 * calls: each is a few microseconds, where the promise API would cost a thread-pool
 * round trip per call (about 0.5 ms each on a loaded machine, on every job's start).
 */
export const makePrivateDir = (
  jobId: string,
  dir: string,
  owner: { readonly uid: number; readonly gid: number } | undefined,
  reuse = false
): Effect.Effect<void, LaunchFailed> =>
  Effect.try({
    try: () => {
      if (reuse) {
        const stat = fs.lstatSync(dir, { throwIfNoEntry: false })
        if (stat?.isDirectory()) {
          fs.chmodSync(dir, 0o700)
          if (owner) fs.chownSync(dir, owner.uid, owner.gid)
          return
        }
        if (stat) fs.rmSync(dir, { force: true })
      }
      fs.mkdirSync(dir, { mode: 0o700 })
      try {
        fs.chmodSync(dir, 0o700)
        if (owner) fs.chownSync(dir, owner.uid, owner.gid)
      } catch (error) {
        fs.rmSync(dir, { recursive: true, force: true })
        throw error
      }
    },
    catch: (error) => launchFailed(jobId, `cannot create the channel directory ${dir}: ${describe(error)}`, error)
  })

/** Removes the channel directory and what is in it (a failure is logged, not raised). */
export const removeDir = (dir: string): Effect.Effect<void> =>
  Effect.tryPromise(() => fsp.rm(dir, { recursive: true, force: true })).pipe(
    Effect.catchAll((error) => Effect.logWarning(`could not remove the channel directory ${dir}: ${describe(error)}`))
  )
