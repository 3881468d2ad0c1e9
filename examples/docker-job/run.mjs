// Runs the hello job (examples/hello-job) in a container through the Docker
// backend: deploys it into a temporary workspace, starts it, greets it, prints
// its log and outcome. Exit status = the job's return code.
//
//   FLEXEC_EXAMPLE_IMAGE   the job image (default flexec-node:test; or the one build-image.sh builds)
//   FLEXEC_CONTAINER_USER  uid:gid the container runs as (default: the parent's)
//   FLEXEC_INSTANCE_ID     the executor instance (default docker-hello-<pid>)
import { createDockerExecutor } from "@flexec/executor-docker"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const hello = fileURLToPath(new URL("../hello-job", import.meta.url))
const site = "site-1", jobId = "hello-job"
const image = process.env.FLEXEC_EXAMPLE_IMAGE ?? "flexec-node:test"
const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-docker-hello-"))
fs.mkdirSync(path.join(workspace, jobId))
fs.copyFileSync(path.join(hello, "meta.json"), path.join(workspace, jobId, "meta.json"))
fs.cpSync(path.join(hello, "app"), path.join(workspace, jobId, `app_${site}`), { recursive: true })

const executor = await createDockerExecutor({
  client: { clientName: site },
  image, // the site's job image; never pulled (pullPolicy "never"): a missing image is ImageNotFound
  allowedImages: [image],
  instanceId: process.env.FLEXEC_INSTANCE_ID ?? `docker-hello-${process.pid}`,
  ...(process.env.FLEXEC_CONTAINER_USER ? { containerUser: process.env.FLEXEC_CONTAINER_USER } : {}),
  graceMs: 5_000
})
let code = 127
try {
  const events = executor.events()
  await executor.startApp({ jobId, args: { workspace, set: { rounds: 3, roundMs: 100 } } })
  console.log(`starting ${jobId} in ${image}`)
  for await (const event of events) {
    if (event.jobId !== jobId) continue
    if (event._tag === "Started") {
      const reply = await executor.sendToJob({ jobId, channel: "hello", topic: "greet", message: { headers: {}, payload: { name: "docker" } } })
      console.log(`job says: ${reply.payload.greeting}`)
    } else if (event._tag === "Completed") {
      const { returnCode, exit } = event.outcome
      console.log(`completed: return code ${returnCode}, exit ${JSON.stringify(exit)}`)
      code = returnCode
      break
    }
  }
  console.log("--- job log ---")
  process.stdout.write(fs.readFileSync(path.join(workspace, jobId, "log.txt"), "utf8"))
} catch (error) {
  console.error(`failed: ${error._tag ?? "Error"}: ${error.message}`)
} finally {
  await executor.close()
  fs.rmSync(workspace, { recursive: true, force: true })
}
process.exit(code)
