/**
 * A parent for the crash tests (run by vite-node in its own process): starts one
 * job through the Slurm launcher, prints `STARTED` once the job is
 * Started, then waits to be SIGKILLed (so none of its finalizers run, as when a
 * real parent dies).
 *
 * argv: workspace runtimeDir instanceId jobId options-json job-json client-json labels-json [executor-options-json]
 */
import type { ClientInfo } from "@flexec/core"
import { makeJobExecutor } from "@flexec/core"
import { Effect, Queue } from "effect"
import { SlurmJobLauncher } from "../../src/index.js"
import type { SlurmLauncherOptions } from "../../src/index.js"

const [workspace, runtimeDir, instanceId, jobId, optionsJson, jobJson, clientJson, labelsJson, executorJson] = process.argv.slice(2) as Array<string>
const options = JSON.parse(optionsJson!) as SlurmLauncherOptions
const job = JSON.parse(jobJson!) as { meta: Record<string, unknown>; set: Record<string, unknown> }
const client = JSON.parse(clientJson!) as ClientInfo
const labels = JSON.parse(labelsJson!) as Record<string, string>
/** More executor options (the channel, the reconnect window). */
const more = JSON.parse(executorJson ?? "{}") as Record<string, unknown>

Effect.runPromise(
  Effect.scoped(
    Effect.gen(function* () {
      const launcher = yield* SlurmJobLauncher.makeEffect({ ...options, runtimeDir: runtimeDir! })
      const executor = yield* makeJobExecutor({ ...more, client, runtimeDir: runtimeDir!, instanceId: instanceId!, launcher, labels, startTimeoutMs: 30_000 })
      // subscribed before the start, so Started cannot be missed
      const events = yield* executor.subscribe
      yield* executor.startApp({ jobId: jobId!, jobMeta: job.meta as never, args: { workspace: workspace!, set: job.set } })
      for (;;) {
        const event = yield* Queue.take(events)
        if (event.jobId !== jobId) continue
        if (event._tag === "Started") break
        if (event._tag === "Completed") return yield* Effect.fail(new Error(`${jobId} completed before it started`))
      }
      process.stdout.write("STARTED\n")
      return yield* Effect.never
    })
  )
).catch((e) => {
  process.stderr.write(`parent: ${String(e)}\n`)
  process.exit(1)
})
