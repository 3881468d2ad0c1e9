// Runs examples/hello-job end to end through the process backend:
// deploys it into a temporary workspace, starts it, shows its progress,
// talks to it, and prints the outcome. Exit status = the job's return code.
import { createProcessExecutor } from "@flexec/executor-process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const site = "site-1"
const jobId = "hello-job"
const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-hello-"))
fs.mkdirSync(path.join(workspace, jobId), { recursive: true })
fs.copyFileSync(path.join(here, "meta.json"), path.join(workspace, jobId, "meta.json"))
fs.cpSync(path.join(here, "app"), path.join(workspace, jobId, `app_${site}`), { recursive: true })

const t0 = Date.now()
const at = () => `${((Date.now() - t0) / 1000).toFixed(2)}s`.padStart(7)
const executor = await createProcessExecutor({
  client: { clientName: site },
  instanceId: `hello-${process.pid}`
})
let code = 127
try {
  const events = executor.events()
  await executor.startApp({ jobId, args: { workspace, set: { rounds: 5, roundMs: 150 } } })
  console.log(`${at()}  starting  ${jobId} in ${workspace}`)
  for await (const event of events) {
    if (event.jobId !== jobId) continue
    if (event._tag === "Started") {
      console.log(`${at()}  started`)
      const reply = await executor.sendToJob({ jobId, channel: "hello", topic: "greet", message: { headers: {}, payload: { name: "operator" } } })
      console.log(`${at()}  job says: ${reply.payload.greeting}`)
    } else if (event._tag === "Stopped") {
      console.log(`${at()}  stopped`)
    } else if (event._tag === "Completed") {
      const { returnCode, reason, exit } = event.outcome
      console.log(`${at()}  completed return code ${returnCode}${reason ? ` (${reason})` : ""}, exit code ${exit.code}, signal ${exit.signal ?? "none"}`)
      code = returnCode
      break
    }
  }
  console.log("--- job log ---")
  process.stdout.write(fs.readFileSync(path.join(workspace, jobId, "log.txt"), "utf8"))
  console.log(code === 0 ? "Success" : `Failed (${code})`)
} finally {
  await executor.close()
  fs.rmSync(workspace, { recursive: true, force: true })
}
process.exit(code)
