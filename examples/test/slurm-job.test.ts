/** examples/slurm-job/run.mjs on the real cluster: hello-job over tls:// ends in Success. */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { engineReady } from "@flexec/testing"
import { SlurmJobLauncher } from "@flexec/executor-slurm"
import { expect, it } from "vitest"
import { examplesDir, repoRoot, runNode } from "./support.js"

const slurmConf =
  process.env.FLEXEC_SLURM_CONF ??
  execFileSync("bash", [path.join(repoRoot, "scripts", "slurm-up.sh"), "--print-conf"], { encoding: "utf8" }).trim()
const problem = !fs.existsSync(slurmConf) ? `${slurmConf} does not exist` : SlurmJobLauncher.make({ slurmConf }).problem?.detail

const ready = engineReady({
  file: "examples/test/slurm-job.test.ts",
  problem,
  what: `usable Slurm cluster (SLURM_CONF=${slurmConf})`,
  how: "start one with `bash scripts/slurm-up.sh` (root; installs slurm-wlm and munge from Debian once)",
  requireVar: "FLEXEC_REQUIRE_SLURM"
})

it.skipIf(!ready)("examples/slurm-job: hello-job submitted to Slurm answers over tls:// and succeeds", async () => {
  const { code, out } = await runNode(path.join(examplesDir, "slurm-job", "run.mjs"), 90_000, { ...process.env, FLEXEC_SLURM_CONF: slurmConf })
  expect(out).toContain("job says: hello slurm, from hello-job on site-1")
  expect(out).toMatch(/completed: return code 0, exit \{"code":0,"signal":null/)
  expect(out).toMatch(/Success\n$/)
  expect(code).toBe(0)
}, 120_000)
