// Embeds flexec in a site's own parent process, Effect style: the executor is a
// Layer (ProcessJobExecutor.layer) providing the ClientExecutor service; closing
// the layer's scope aborts what still runs and releases everything.
// Run: node examples/embed/embed-effect.mjs   (exit status = the return code)
import { ClientExecutor } from "@flexec/core"
import { ProcessJobExecutor } from "@flexec/executor-process"
import { Console, Effect, Queue } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const app = fileURLToPath(new URL("../hello-job/app", import.meta.url))
const site = "site-1", jobId = "embedded-hello"

const deploy = Effect.acquireRelease(
  Effect.sync(() => {
    const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-embed-"))
    fs.cpSync(app, path.join(workspace, jobId, `app_${site}`), { recursive: true })
    fs.writeFileSync(path.join(workspace, jobId, "meta.json"), JSON.stringify({ job_id: jobId }))
    return workspace
  }),
  (workspace) => Effect.sync(() => fs.rmSync(workspace, { recursive: true, force: true }))
)

const program = Effect.gen(function* () {
  const workspace = yield* deploy
  const executor = yield* ClientExecutor
  const events = yield* executor.subscribe // live from here on
  yield* executor.startApp({ jobId, args: { workspace, set: { rounds: 3, roundMs: 100 } } })
  const first = yield* Queue.take(events).pipe(
    Effect.repeat({ until: (e) => e.jobId === jobId && (e._tag === "Started" || e._tag === "Completed") })
  )
  if (first._tag === "Started") {
    const reply = yield* executor.sendToJob({
      jobId, channel: "hello", topic: "greet", message: { headers: {}, payload: { name: "embedder" } }
    })
    yield* Console.log(`job says: ${reply.payload.greeting}`)
  }
  const outcome = yield* executor.awaitCompletion(jobId)
  yield* Console.log(`completed: return code ${outcome.returnCode}, exit ${JSON.stringify(outcome.exit)}`)
  return outcome.returnCode
})

const layer = ProcessJobExecutor.layer({ client: { clientName: site }, instanceId: `embed-effect-${process.pid}` })
const code = await program.pipe(
  Effect.scoped,
  Effect.provide(layer),
  Effect.catchAll((error) => Console.error(`failed: ${error._tag}: ${error.message}`).pipe(Effect.as(127))),
  Effect.runPromise
)
process.exit(code)
