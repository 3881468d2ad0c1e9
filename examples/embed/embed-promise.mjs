// Embeds flexec in a site's own parent process, Promise style: deploys the
// hello job, starts it, greets it once it is started, waits for its outcome.
// Run: node examples/embed/embed-promise.mjs   (exit status = the return code)
import { createProcessExecutor } from "@flexec/executor-process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const app = fileURLToPath(new URL("../hello-job/app", import.meta.url))
const site = "site-1", jobId = "embedded-hello"
const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-embed-"))
fs.cpSync(app, path.join(workspace, jobId, `app_${site}`), { recursive: true })
fs.writeFileSync(path.join(workspace, jobId, "meta.json"), JSON.stringify({ job_id: jobId }))

const executor = await createProcessExecutor({ client: { clientName: site }, instanceId: `embed-promise-${process.pid}` })
let returnCode = 127
try {
  const events = executor.events() // live from here on: no event of this job is missed
  await executor.startApp({ jobId, args: { workspace, set: { rounds: 3, roundMs: 100 } } })
  for await (const event of events) {
    if (event.jobId !== jobId) continue
    if (event._tag === "Started") {
      const reply = await executor.sendToJob({
        jobId, channel: "hello", topic: "greet", message: { headers: {}, payload: { name: "embedder" } }
      })
      console.log(`job says: ${reply.payload.greeting}`)
    }
    if (event._tag === "Completed") break
  }
  const outcome = await executor.awaitCompletion(jobId)
  console.log(`completed: return code ${outcome.returnCode}, exit ${JSON.stringify(outcome.exit)}`)
  returnCode = outcome.returnCode
} catch (error) {
  console.error(`failed: ${error._tag ?? "Error"}: ${error.message}`)
} finally {
  await executor.close()
  fs.rmSync(workspace, { recursive: true, force: true })
}
process.exit(returnCode)
