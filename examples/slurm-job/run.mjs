// Runs examples/hello-job on a Slurm cluster, the job reaching its parent over
// the TCP + TLS channel (as a job on another node would): deploys it into a
// temporary workspace, submits it with sbatch, talks to it over tls://, and
// prints the outcome. Exit status = the job's return code.
// Needs a cluster: SLURM_CONF (or FLEXEC_SLURM_CONF) naming its slurm.conf,
// e.g. the private one `bash scripts/slurm-up.sh` starts.
import { createSlurmExecutor } from "@flexec/executor-slurm"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const site = "site-1"
const jobId = "hello-job"
const slurmConf = process.env.FLEXEC_SLURM_CONF ?? process.env.SLURM_CONF
// on a real cluster the workspace is on a filesystem every node mounts at the same path
const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-slurm-hello-"))
fs.mkdirSync(path.join(workspace, jobId), { recursive: true })
fs.copyFileSync(path.join(here, "..", "hello-job", "meta.json"), path.join(workspace, jobId, "meta.json"))
fs.cpSync(path.join(here, "..", "hello-job", "app"), path.join(workspace, jobId, `app_${site}`), { recursive: true })

const executor = await createSlurmExecutor({
  client: { clientName: site },
  instanceId: `slurm-hello-${process.pid}`,
  ...(slurmConf !== undefined ? { slurmConf } : {}),
  // the job dials tls://127.0.0.1:<port> and pins the parent's certificate; on a cluster:
  // host "0.0.0.0", a fixed port, and advertiseHost = this host's name on the compute network
  channel: { transport: "tcp", host: "127.0.0.1", tls: true },
  pollIntervalMs: 200
})
let code = 127
try {
  const events = executor.events()
  await executor.startApp({ jobId, args: { workspace, set: { rounds: 3, roundMs: 100 } } })
  console.log(`submitted ${jobId}`)
  for await (const event of events) {
    if (event.jobId !== jobId) continue
    if (event._tag === "Started") {
      const reply = await executor.sendToJob({ jobId, channel: "hello", topic: "greet", message: { headers: {}, payload: { name: "slurm" } }, timeout: 20_000 })
      console.log(`started; job says: ${reply.payload.greeting}`)
    } else if (event._tag === "Completed") {
      const { returnCode, exit } = event.outcome
      console.log(`completed: return code ${returnCode}, exit ${JSON.stringify(exit)}`)
      code = returnCode
      break
    }
  }
  console.log(code === 0 ? "Success" : `Failed (${code})`)
} finally {
  await executor.close()
  fs.rmSync(workspace, { recursive: true, force: true })
}
process.exitCode = code
