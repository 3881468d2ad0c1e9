/**
 * The conformance suite of @flexec/testing against the Slurm backend on the
 * real cluster: every job is a real batch job (sbatch, slurmstepd, the job's
 * cgroup), running the worker fixture as `main.js` with this host's node.
 * Capabilities are the launcher's own, read from `scontrol show config`.
 */
import { conformanceSuite } from "@flexec/testing"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { SlurmJobLauncher } from "../src/index.js"
import { baseOptions, liveJobsNamed, slurmReady } from "./helpers.js"

const ready = slurmReady("conformance.test.ts")

/** Job records and socket directories found when a test's launcher was released (must stay empty). */
const leftBehind: Array<string> = []
const entriesOf = (dir: string): ReadonlyArray<string> => (fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => path.join(dir, f)) : [])

describe.skipIf(!ready)("slurm conformance [needs a Slurm cluster: skipped without one, fails under FLEXEC_REQUIRE_SLURM=1]", () => {
  // the suite reads the launcher's capabilities while it registers its groups: only with a cluster
  if (!ready) {
    it.skip("the conformance suite [skipped: no Slurm cluster]", () => undefined)
    return
  }
  const common = conformanceSuite({
    name: "slurm",
    makeLauncher: ({ runtimeDir }) =>
      Effect.acquireRelease(
        SlurmJobLauncher.makeEffect({ ...baseOptions, runtimeDir, killTimeoutMs: 300 }),
        () =>
          Effect.sync(() => {
            leftBehind.push(...entriesOf(path.join(runtimeDir, "slurm", "jobs")), ...entriesOf(path.join(runtimeDir, "ch")))
          })
      ),
    // Slurm's documented additions on the node (sbatch and slurmstepd's output environment variables);
    // SLURM_CONF is the site's, set by the backend (jobEnvironment). None carries a parent's value (the suite checks).
    jobEnvAdditions: ["SLURM_*", "SLURMD_NODENAME", "SLURM_CONF", "ENVIRONMENT", "HOSTNAME", "PWD", "TMPDIR"],
    // sbatch → running takes up to the scheduler's tick (about 1 s here), and status comes every 200 ms
    timeouts: {
      testMs: 60_000,
      eventMs: 20_000,
      graceMs: 300,
      killTimeoutMs: 300,
      startTimeoutMs: 20_000,
      shortStartTimeoutMs: 2_500,
      processGoneMs: 8_000,
      // The KILL is sent at killAfter (launcher.test.ts times the scancel); its end is seen only after
      // slurmstepd, slurmctld's COMPLETING and the next squeue tick, each slower on a loaded machine.
      killSlackMs: 3_000
    }
  })

  describe("leaks after the suite", () => {
    it("no job of this run is left in the queue", () => {
      expect(liveJobsNamed(`flexec.conf-${common.runId}-`)).toEqual([])
    })
    it("no job record or socket directory was left when a test's launcher was released", () => {
      expect(leftBehind).toEqual([])
    })
  })
})

