/**
 * Bad input on the real cluster: a typed error that says what was wrong, and
 * nothing half-done (nothing queued, nothing registered, no record).
 */
import { deployJob, mockClient } from "@flexec/testing"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { createSlurmExecutor, SlurmJobLauncher } from "../src/index.js"
import { baseOptions, countingSlurmBin, liveJobsNamed, slurmConf, slurmReady, tempDir } from "./helpers.js"

const ready = slurmReady("bad-input.test.ts")
// made only when the tests run (skipped files leave nothing in the temp dir)
const root = ready ? tempDir("flexec-slurm-bad-") : ""
afterAll(() => {
  if (root !== "") fs.rmSync(root, { recursive: true, force: true })
})
const run = `${process.pid.toString(36)}${Date.now().toString(36)}`

const rejection = async (promise: Promise<unknown>): Promise<Record<string, unknown>> => {
  try {
    await promise
  } catch (e) {
    return e as Record<string, unknown>
  }
  throw new Error("expected a rejection")
}

describe.skipIf(!ready)("slurm bad input [needs a Slurm cluster: skipped without one, fails under FLEXEC_REQUIRE_SLURM=1]", () => {
  it("slurmBin without sbatch: BackendUnavailable at executor start, naming the command", async () => {
    const bin = fs.mkdtempSync(path.join(root, "bin-"))
    const e = await rejection(
      createSlurmExecutor({ ...baseOptions, slurmBin: bin, client: mockClient(), runtimeDir: path.join(root, "rt-bin"), instanceId: `bad-${run}-1` })
    )
    expect(e._tag).toBe("BackendUnavailable")
    expect(String(e.detail)).toContain(path.join(bin, "sbatch"))
    expect(String(e.detail)).toContain("does not exist")
    // the launcher made alone says the same, and refuses to launch or recover
    const launcher = SlurmJobLauncher.make({ ...baseOptions, slurmBin: bin })
    expect(launcher.problem?.detail).toContain("sbatch")
    expect((await Effect.runPromise(Effect.flip(launcher.recover("x"))))._tag).toBe("BackendUnavailable")
  })

  it("a controller that does not answer: BackendUnavailable at executor start, with Slurm's message", async () => {
    const conf = path.join(root, "down.conf")
    // the same cluster's config, pointing at a port nobody listens on
    fs.writeFileSync(conf, fs.readFileSync(slurmConf, "utf8").replace(/^SlurmctldPort=.*$/m, "SlurmctldPort=1"))
    const e = await rejection(
      createSlurmExecutor({ ...baseOptions, slurmConf: conf, client: mockClient(), runtimeDir: path.join(root, "rt-down"), instanceId: `bad-${run}-2` })
    )
    expect(e._tag).toBe("BackendUnavailable")
    expect(String(e.detail)).toMatch(/scontrol show config: .*Unable to contact slurm controller/)
  }, 60_000)

  it("an unknown partition: LaunchFailed with sbatch's message; nothing queued or registered", async () => {
    const instanceId = `bad-${run}-3`
    const runtimeDir = path.join(root, "rt-part")
    const workspace = fs.mkdtempSync(path.join(root, "ws-"))
    const executor = await createSlurmExecutor({ ...baseOptions, partition: "nosuchpartition", client: mockClient(), runtimeDir, instanceId })
    try {
      const job = await Effect.runPromise(deployJob({ workspace, jobId: "job-p", clientName: mockClient().clientName, fixture: "exit-with", args: [0] }))
      const e = await rejection(executor.startApp({ jobId: "job-p", jobMeta: job.meta, args: { workspace, set: job.set } }))
      expect(e._tag).toBe("LaunchFailed")
      expect(String(e.reason)).toMatch(/sbatch refused the job: .*Invalid partition name specified/)
      // the engine completes the failed launch (outcome not 0) and unregisters it
      expect((await executor.awaitCompletion("job-p")).returnCode).not.toBe(0)
      expect(await executor.jobs()).toEqual([])
      expect(liveJobsNamed(`flexec.${instanceId}.`)).toEqual([])
      const records = path.join(runtimeDir, "slurm", "jobs")
      expect(fs.existsSync(records) ? fs.readdirSync(records) : []).toEqual([])
    } finally {
      await executor.close()
    }
  })

  it("an unknown launcher_spec.<site>.slurm key: InvalidJobMeta naming it and the allowed ones; nothing queued", async () => {
    const instanceId = `bad-${run}-4`
    const workspace = fs.mkdtempSync(path.join(root, "ws-"))
    const executor = await createSlurmExecutor({ ...baseOptions, client: mockClient(), runtimeDir: path.join(root, "rt-spec"), instanceId })
    try {
      const job = await Effect.runPromise(
        deployJob({
          workspace,
          jobId: "job-s",
          clientName: mockClient().clientName,
          fixture: "exit-with",
          args: [0],
          meta: { launcher_spec: { "site-1": { slurm: { partition: "debug", exclusive: true } } } }
        })
      )
      const e = await rejection(executor.startApp({ jobId: "job-s", jobMeta: job.meta, args: { workspace, set: job.set } }))
      expect(e._tag).toBe("InvalidJobMeta")
      expect(String(e.issues)).toContain("launcher_spec.site-1.slurm.exclusive")
      expect(String(e.issues)).toContain("partition, time, qos, constraint, reservation, nice")
      expect(await executor.jobs()).toEqual([])
      expect(liveJobsNamed(`flexec.${instanceId}.`)).toEqual([])
    } finally {
      await executor.close()
    }
  })

  it("an sbatch that submitted but did not answer in time: BackendUnavailable, and the job it queued is cancelled", async () => {
    const instanceId = `bad-${run}-5`
    const workspace = fs.mkdtempSync(path.join(root, "ws-"))
    // an sbatch that reaches the controller, then hangs past the command timeout
    const bin = countingSlurmBin(root)
    const real = fs.readFileSync(path.join(bin.dir, "sbatch"), "utf8").split("\n").find((l) => l.startsWith("exec "))!.slice(5)
    fs.writeFileSync(path.join(bin.dir, "sbatch"), `#!/bin/sh\n${real} "$@"\nsleep 30\n`, { mode: 0o755 })
    const executor = await createSlurmExecutor({
      ...baseOptions,
      slurmBin: bin.dir,
      commandTimeoutMs: 3_000,
      sbatchArgs: ["--begin=now+3600"],
      client: mockClient(),
      runtimeDir: path.join(root, "rt-slow"),
      instanceId
    })
    try {
      const job = await Effect.runPromise(deployJob({ workspace, jobId: "job-t", clientName: mockClient().clientName, fixture: "exit-with", args: [0] }))
      const e = await rejection(executor.startApp({ jobId: "job-t", jobMeta: job.meta, args: { workspace, set: job.set } }))
      expect(e._tag).toBe("BackendUnavailable")
      expect(String(e.detail)).toMatch(/sbatch .*: no answer within 3000 ms/)
      expect(liveJobsNamed(`flexec.${instanceId}.job-t`), "the job the slow sbatch queued").toEqual([])
      expect(bin.calls().some((c) => c.startsWith("scancel "))).toBe(true)
    } finally {
      await executor.close()
    }
  }, 60_000)
})
