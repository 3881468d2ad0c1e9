/**
 * The leak checks run after every test: nothing of the test is left registered,
 * live, in `ch/`, or as an OS process.
 *
 * @internal
 *
 * @since 0.1.0
 */
import type { Capabilities, JobLauncher } from "@flexec/core"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { ConformanceContext } from "./context.js"
import { pollUntil } from "./pollUntil.js"
import { processesOfRun, jobPrefix } from "./processes.js"

/** The leak checks: nothing of this test is left registered, live, in `ch/`, or as an OS process. */
export const leakChecks = (h: {
  readonly common: ConformanceContext
  readonly launcher: JobLauncher
  readonly runtimeDir: string
  readonly capabilities: Capabilities
  readonly jobIds: ReadonlyArray<string>
}) =>
  Effect.gen(function* () {
    const running = (h.launcher as { readonly running?: () => number }).running
    if (typeof running === "function") {
      yield* pollUntil("the launcher to report no live job (running() === 0)", () => running.call(h.launcher) === 0, 2_000).pipe(
        Effect.mapError(() => new Error(`leak: the launcher still reports ${running.call(h.launcher)} live job(s) after the test`))
      )
    }
    const chDir = path.join(h.runtimeDir, "ch")
    const socketDirs = fs.existsSync(chDir) ? fs.readdirSync(chDir) : []
    if (socketDirs.length > 0) return yield* Effect.fail(new Error(`leak: socket directories left in ${chDir}: ${socketDirs.join(", ")}`))
    if (h.capabilities.processes === true && h.jobIds.length > 0) {
      const ids = new Set(h.jobIds)
      const ours = () =>
        processesOfRun(jobPrefix(h.common.runId)).filter((pid) => {
          try {
            const env = fs.readFileSync(`/proc/${pid}/environ`, "latin1").split("\0")
            return env.some((v) => v.startsWith("FLEXEC_JOB_ID=") && ids.has(v.slice("FLEXEC_JOB_ID=".length)))
          } catch {
            return false
          }
        })
      yield* pollUntil("this test's job processes to be gone", () => ours().length === 0, h.common.timeouts.processGoneMs).pipe(
        Effect.mapError(() => new Error(`leak: OS processes of this test's jobs still run: ${ours().join(", ")}`))
      )
    }
  })
