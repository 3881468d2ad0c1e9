// An embedding program that ends without close(), for parent-exit.test.ts.
// argv[2]: JSON { runtimeDir, instanceId, workspace, jobId, how, onParentExit? }.
// Starts the job, waits until it is Started, prints `READY`, then ends as `how` says:
//   "exit"    process.exit(0)                 "throw"  an uncaught exception
//   "reject"  an unhandled rejection          "wait"   waits (the test sends a signal)
//   "own-handler"  waits, with a SIGTERM handler of its own that exits 3
import { waitForStarted } from "@flexec/testing"
import { createProcessExecutor } from "../../dist/index.js"

const config = JSON.parse(process.argv[2])
const executor = await createProcessExecutor({
  client: { clientName: "site-1" },
  runtimeDir: config.runtimeDir,
  instanceId: config.instanceId,
  recover: "off",
  graceMs: 3000,
  killTimeoutMs: 1000,
  ...(config.onParentExit !== undefined ? { onParentExit: config.onParentExit } : {})
})
await executor.startApp({ jobId: config.jobId, args: { workspace: config.workspace } })
// waits on the executor's events, not a polling loop
await waitForStarted(executor, config.jobId, 20_000)
process.stdout.write("READY\n")
switch (config.how) {
  case "exit":
    process.exit(0)
    break
  case "throw":
    setTimeout(() => {
      throw new Error("boom: an uncaught exception")
    }, 10)
    break
  case "reject":
    void Promise.reject(new Error("boom: an unhandled rejection"))
    break
  case "own-handler":
    process.on("SIGTERM", () => {
      process.stdout.write("own handler\n")
      process.exit(3)
    })
    setInterval(() => {}, 1 << 30)
    break
  default:
    setInterval(() => {}, 1 << 30)
}
