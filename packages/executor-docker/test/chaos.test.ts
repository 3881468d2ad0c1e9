/**
 * Chaos for the Docker backend (issue 8), on the real engine: ~40 jobs
 * (`FLEXEC_CHAOS_JOBS`) with random faults from a seeded plan
 * (`FLEXEC_CHAOS_SEED`, printed), six containers at a time, then the same
 * invariants as the process backend's chaos (the harness is shared:
 * executor-process/test/support/chaos-harness.ts): one `Completed` per job with
 * the outcome table's code, every allocation freed exactly once, no container
 * labelled with this run left (asked of the engine), no socket directory left,
 * the heap back within a bound after a forced GC. Faults from outside are
 * `docker kill` (SIGKILL) and `docker pause` / `unpause` (a frozen job).
 */
import { makeJobExecutor } from "@flexec/core"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { afterAll, describe, expect, it } from "vitest"
import { allFaultKinds, runChaos } from "../../executor-process/test/support/chaos-harness.js"
import type { ChaosBackend } from "../../executor-process/test/support/chaos-harness.js"
import { makeDockerClient } from "../src/DockerClient.js"
import { makeDockerLauncher } from "../src/index.js"
import { cleanupRoots, dockerReady, removeRunContainers, runLabels, socketPath, testImage, testUser } from "./helpers.js"

const ready = dockerReady("chaos.test.ts")
const client = makeDockerClient({ socketPath })

afterAll(async () => {
  await removeRunContainers()
  cleanupRoots()
})

/** The container of a job (by its `flexec.job_id` label, within this run). */
const containerOf = (jobId: string) =>
  client.listByLabels({ ...runLabels, "flexec.job_id": jobId }).pipe(
    Effect.mapError((e) => new Error(e.message)),
    Effect.flatMap((list) => (list[0] ? Effect.succeed(list[0].id) : Effect.fail(new Error(`no container for ${jobId}`))))
  )

const docker = (...args: ReadonlyArray<string>) =>
  Effect.async<void, Error>((resume) => {
    execFile("docker", ["-H", `unix://${socketPath}`, ...args], { timeout: 30_000 }, (error, _out, stderr) =>
      resume(error ? Effect.fail(new Error(`docker ${args.join(" ")}: ${stderr || error.message}`)) : Effect.void)
    )
  })

const backend: ChaosBackend = {
  name: "docker",
  kinds: allFaultKinds,
  makeExecutor: (o) =>
    makeJobExecutor({
      client: { clientName: "site-1" },
      ...o,
      labels: runLabels,
      launcher: makeDockerLauncher({ image: testImage, docker: { socketPath }, containerUser: testUser })
    }),
  kill: (jobId) => Effect.flatMap(containerOf(jobId), (id) => docker("kill", "-s", "KILL", id)),
  freeze: (jobId) => Effect.flatMap(containerOf(jobId), (id) => docker("pause", id)),
  thaw: (jobId) => Effect.flatMap(containerOf(jobId), (id) => docker("unpause", id)),
  alive: () =>
    client.listByLabels(runLabels).pipe(
      Effect.map((list) => list.map((c) => `container ${c.names.join(",")} (${c.state})`)),
      Effect.catchAll((e) => Effect.succeed([`cannot list containers: ${e.message}`]))
    ),
  cleanup: () => Effect.promise(() => removeRunContainers()).pipe(Effect.asVoid),
  startTimeoutMs: 60_000,
  // counted from the container's start: a never-connecting job is killed after this
  shortStartTimeoutMs: 2_000,
  graceMs: 300,
  // `docker stop` rounds it up to 1 s
  killTimeoutMs: 300,
  jobMs: 90_000,
  heapBoundBytes: 32 * 1024 * 1024
}

describe.skipIf(!ready)("chaos: docker backend [needs a Docker engine: skipped without one, fails under FLEXEC_REQUIRE_DOCKER=1]", () => {
  it("jobs with random faults in containers: one Completed each with the table's code, freed once, no container left, heap bounded", async () => {
    const report = await Effect.runPromise(Effect.scoped(runChaos(backend, { defaultJobs: 40, concurrency: 6 })))
    expect(report.problems).toEqual([])
    expect(report.leaks).toEqual([])
    expect(report.outcomesOk).toBe(report.jobs - (report.faults["refused"] ?? 0))
  }, 600_000)
})
