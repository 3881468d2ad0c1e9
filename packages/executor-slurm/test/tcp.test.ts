/**
 * A Slurm job reaching its parent over the TCP + TLS channel (the executor
 * option `channel`), on the real cluster: the job dials `tls://127.0.0.1:<port>`
 * and pins the parent's certificate; no unix socket exists for it.
 */
import { deployJob, fixtureFacts, mockClient } from "@flexec/testing"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { createSlurmExecutor } from "../src/index.js"
import { baseOptions, slurmReady, tempDir } from "./helpers.js"

const ready = slurmReady("tcp.test.ts")
const root = ready ? tempDir("flexec-slurm-tcp-") : ""
afterAll(() => {
  if (root !== "") fs.rmSync(root, { recursive: true, force: true })
})

/** The socket files under the runtime directory's channel folder. */
const socketsUnder = (dir: string): Array<string> =>
  fs.existsSync(dir) ? fs.readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith(".sock")) : []

describe.skipIf(!ready)("slurm over tls:// [needs a Slurm cluster: skipped without one, fails under FLEXEC_REQUIRE_SLURM=1]", () => {
  it("channel: { transport: \"tcp\", tls: true }: the job's echo of 0 B and 1 MiB is byte-exact, no unix socket is made, abort gives 9", async () => {
    const runtimeDir = path.join(root, "rt")
    const workspace = fs.mkdtempSync(path.join(root, "ws-"))
    const executor = await createSlurmExecutor({
      ...baseOptions,
      client: mockClient(),
      runtimeDir,
      instanceId: `tcp-${process.pid.toString(36)}`,
      startTimeoutMs: 60_000,
      channel: { transport: "tcp", tls: true }
    })
    try {
      const job = await Effect.runPromise(deployJob({ workspace, jobId: "job-tls", clientName: mockClient().clientName, fixture: "echo" }))
      await executor.startApp({ jobId: "job-tls", jobMeta: job.meta, args: { workspace, set: job.set } })
      const events = executor.events()[Symbol.asyncIterator]()
      for (let status = await executor.getStatus("job-tls"); status < 2; status = await executor.getStatus("job-tls")) {
        const next = await events.next()
        if (next.done || (next.value._tag === "Completed" && next.value.jobId === "job-tls")) throw new Error("the job ended before Started")
      }
      for (const size of [0, 1024 * 1024]) {
        const sent = new Uint8Array(crypto.randomBytes(size))
        const reply = await executor.sendToJob({ jobId: "job-tls", channel: fixtureFacts.channel, topic: fixtureFacts.echoTopic, message: { headers: {}, payload: sent }, timeout: 20_000 })
        expect(Buffer.from(reply.payload as Uint8Array).equals(Buffer.from(sent))).toBe(true)
      }
      expect(socketsUnder(path.join(runtimeDir, "ch"))).toEqual([])
      await executor.abortApp("job-tls")
      expect((await executor.awaitCompletion("job-tls")).returnCode).toBe(9)
    } finally {
      await executor.close()
    }
  }, 120_000)
})
