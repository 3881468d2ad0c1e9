/**
 * `flexec run --backend slurm` and `flexec doctor`'s Slurm lines against the
 * real single-host cluster (`bash scripts/slurm-up.sh`). Skips loudly without
 * one, except with FLEXEC_REQUIRE_SLURM=1 (CI), where it fails.
 */
import { SlurmJobLauncher } from "@flexec/executor-slurm"
import { engineReady } from "@flexec/testing"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { helloJob, runCli } from "./helpers.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const slurmConf =
  process.env.FLEXEC_SLURM_CONF ??
  execFileSync("bash", [path.resolve(here, "../../../scripts/slurm-up.sh"), "--print-conf"], { encoding: "utf8" }).trim()

const problem = !fs.existsSync(slurmConf) ? `${slurmConf} does not exist` : SlurmJobLauncher.make({ slurmConf }).problem?.detail
const ready = engineReady({
  file: "packages/cli/test/slurm.test.ts",
  problem,
  what: `usable Slurm cluster (SLURM_CONF=${slurmConf})`,
  how: "start one with `bash scripts/slurm-up.sh`",
  requireVar: "FLEXEC_REQUIRE_SLURM"
})
const env = { ...process.env, SLURM_CONF: slurmConf }

describe.skipIf(!ready)("flexec with Slurm [needs a Slurm cluster: skipped without one, fails under FLEXEC_REQUIRE_SLURM=1]", () => {
  it("run --backend slurm: examples/hello-job as a batch job, its log and return code 0", async () => {
    const { code, stdout, stderr } = await runCli(["run", helloJob, "--backend", "slurm"], 120_000, env)
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout).toMatch(/starting\s+hello-job on site-1 \(slurm backend/)
    expect(stdout).toContain("| round 5/5")
    expect(stdout).toMatch(/outcome\s+return code 0 \(success\); exit code 0, signal none/)
  }, 130_000)

  it("doctor: the clients, the controller and the cgroup plugins", async () => {
    const { code, stdout } = await runCli(["doctor"], 60_000, env)
    expect(code).toBe(0)
    expect(stdout).toMatch(/^ok\s+slurm\s+clients .*sbatch/m)
    expect(stdout).toMatch(/^ok\s+slurmctld\s+answers: cluster \S+, Slurm \d+\.\d+/m)
    expect(stdout).toMatch(/^ok\s+cgroups\s+proctrack\/cgroup/m)
  })

  it("doctor with a controller that does not answer: a warning with Slurm's message, not a failure", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-doctor-"))
    try {
      const conf = path.join(dir, "slurm.conf")
      fs.writeFileSync(conf, fs.readFileSync(slurmConf, "utf8").replace(/^SlurmctldPort=.*$/m, "SlurmctldPort=1"))
      const { code, stdout } = await runCli(["doctor"], 60_000, { ...process.env, SLURM_CONF: conf })
      expect(code).toBe(0)
      expect(stdout).toMatch(/^warn\s+slurmctld\s+.*Unable to contact slurm controller/m)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 70_000)
})
