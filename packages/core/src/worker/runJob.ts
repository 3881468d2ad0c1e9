/**
 * `runJob`: the worker runtime bound to this Node process (`process.env`, a
 * socket to the parent, `process.exit`, the active handles that decide the rc file).
 * Internal module; the public surface is `./index.ts`.
 */
import { connectParent } from "./connect.js"
import { runJobWith } from "./runtime.js"
import type { JobSpec } from "./types.js"

/** The multiset difference `now - baseline` of resource names. */
const extraResources = (now: ReadonlyArray<string>, baseline: ReadonlyArray<string>): Array<string> => {
  const counts = new Map<string, number>()
  for (const name of baseline) counts.set(name, (counts.get(name) ?? 0) + 1)
  const extra: Array<string> = []
  for (const name of now) {
    const left = counts.get(name) ?? 0
    if (left > 0) counts.set(name, left - 1)
    else extra.push(name)
  }
  return extra
}

/**
 * Runs the job in this process: reads and deletes its `FLEXEC_*` secrets from
 * `process.env`, connects to `FLEXEC_PARENT_URL` (`unix://<path>`, `tcp://host:port`,
 * `tls://host:port` pinned by `FLEXEC_CHANNEL_CERT_SHA256`), says hello,
 * reports Started, runs `run(ctx)` while answering the built-in topics and
 * `handlers`, reports Stopped, flushes the socket and exits the process with
 * the exit code (see `runJobWith` for the codes).
 *
 * Work still alive at exit — handles that would keep Node running, other than
 * the runtime's own and those open when `runJob` was called (stdio) — makes it
 * write the code to `<FLEXEC_JOB_DIR>/_process_rc.txt` first (NVFlare's rule).
 */
export const runJob = (spec: JobSpec): Promise<never> => {
  let baseline = process.getActiveResourcesInfo()
  // A job whose parent went away (and was adopted by a new one) has no reader on
  // its stdout/stderr any more: a write must not kill it with EPIPE. Guarded once
  // Started is acknowledged (or before the runtime's first diagnostic), not
  // before: creating the stdio streams costs about 2 ms on the way to Started.
  // The handles they create join the baseline of `workAlive`.
  let guarded = false
  const guardStdio = (): void => {
    if (guarded) return
    guarded = true
    const before = process.getActiveResourcesInfo()
    process.stdout.on("error", () => undefined)
    process.stderr.on("error", () => undefined)
    baseline = baseline.concat(extraResources(process.getActiveResourcesInfo(), before))
  }
  return runJobWith(spec, {
    env: process.env,
    connect: connectParent,
    exit: (code) => process.exit(code),
    workAlive: () => extraResources(process.getActiveResourcesInfo(), baseline).length > 0,
    log: (line) => {
      guardStdio()
      console.error(line)
    },
    started: guardStdio
  }) as Promise<never>
}
