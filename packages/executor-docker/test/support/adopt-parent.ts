/**
 * A parent for the adopt test (run by vite-node in its own process): starts one
 * job in a container through the Docker launcher, prints `STARTED` once the job
 * is Started, then waits to be SIGKILLed (so none of its finalizers run, as
 * when a real parent dies).
 *
 * argv: workspace runtimeDir instanceId jobId image socketPath job-json client-json labels-json [then]
 * `then` = `exit`: after STARTED, `process.exit(0)` without closing anything; `exit-leave`: the
 * same with `onParentExit: "leave"`.
 */
import type { ClientInfo } from "@flexec/core"
import { makeJobExecutor } from "@flexec/core"
import { Effect, Queue } from "effect"
import { makeDockerLauncher } from "../../src/index.js"

const [workspace, runtimeDir, instanceId, jobId, image, socketPath, jobJson, clientJson, labelsJson, then] = process.argv.slice(2) as Array<string>
const job = JSON.parse(jobJson!) as { meta: Record<string, unknown>; set: Record<string, unknown> }
const client = JSON.parse(clientJson!) as ClientInfo
const labels = JSON.parse(labelsJson!) as Record<string, string>

Effect.runPromise(
  Effect.scoped(
    Effect.gen(function* () {
      const launcher = makeDockerLauncher({
        image: image!,
        docker: { socketPath: socketPath! },
        containerUser: { uid: Number(process.env.FLEXEC_TEST_UID ?? 1000), gid: Number(process.env.FLEXEC_TEST_GID ?? 1000) },
        ...(then === "exit-leave" ? { onParentExit: "leave" as const } : {})
      })
      const executor = yield* makeJobExecutor({ client, runtimeDir: runtimeDir!, instanceId: instanceId!, launcher, labels })
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
      if (then === "exit" || then === "exit-leave") process.exit(0)
      return yield* Effect.never
    })
  )
).catch((e) => {
  process.stderr.write(`adopt-parent: ${String(e)}\n`)
  process.exit(1)
})
