// A flexec parent in a process of its own, for the crash-recovery tests.
// argv[2]: JSON { runtimeDir, instanceId, clientName, workspace, env, jobs: [{ jobId, meta, set }], channel? }.
// Starts every job, waits until each is Started, prints one line
// `READY {"jobs":[{"jobId","pid"}]}` (pids from the launcher's pid files), then
// waits to be killed.
import * as fs from "node:fs"
import * as path from "node:path"
import { createProcessExecutor } from "../../dist/index.js"

const config = JSON.parse(process.argv[2])
const fail = (error) => {
  process.stdout.write(`FAILED ${error?._tag ?? ""} ${error?.message ?? String(error)}\n`)
  process.exit(1)
}

try {
  const executor = await createProcessExecutor({
    client: { clientName: config.clientName },
    runtimeDir: config.runtimeDir,
    instanceId: config.instanceId,
    recover: "off",
    graceMs: 200,
    killTimeoutMs: 500,
    env: config.env,
    ...(config.channel !== undefined ? { channel: config.channel } : {})
  })
  for (const job of config.jobs) {
    await executor.startApp({ jobId: job.jobId, jobMeta: job.meta, args: { workspace: config.workspace, set: job.set } })
  }
  const deadline = Date.now() + 15_000
  for (const job of config.jobs) {
    while ((await executor.checkStatus(job.jobId)) !== "started") {
      if (Date.now() > deadline) fail(new Error(`${job.jobId} did not start: ${await executor.checkStatus(job.jobId)}`))
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const jobs = config.jobs.map(({ jobId }) => {
    const pidFile = JSON.parse(fs.readFileSync(path.join(config.runtimeDir, "pids", `${jobId}.json`), "utf8"))
    return { jobId, pid: pidFile.pid }
  })
  process.stdout.write(`READY ${JSON.stringify({ jobs })}\n`)
  setInterval(() => {}, 1 << 30)
} catch (error) {
  fail(error)
}
