/**
 * The one place the Slurm tests decide whether a cluster is there, and what
 * they share: the cluster's config, a `slurmBin` of counting shims, and
 * checks on processes and queued jobs.
 */
import { engineReady } from "@flexec/testing"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { SlurmJobLauncher } from "../src/index.js"
import type { SlurmLauncherOptions } from "../src/index.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const repo = path.resolve(here, "..", "..", "..")

/** The cluster's client config: `FLEXEC_SLURM_CONF`, else where `scripts/slurm-up.sh` writes it. */
export const slurmConf =
  process.env.FLEXEC_SLURM_CONF ??
  execFileSync("bash", [path.join(repo, "scripts", "slurm-up.sh"), "--print-conf"], { encoding: "utf8", env: process.env }).trim()

/** How to get a cluster on this machine. */
export const howToStartSlurm = "start one with `bash scripts/slurm-up.sh` (root; installs slurm-wlm and munge from Debian once)"

/** The options every test launcher shares. */
export const baseOptions: SlurmLauncherOptions = { slurmConf, pollIntervalMs: 200, commandTimeoutMs: 20_000 }

const problem = (() => {
  if (!fs.existsSync(slurmConf)) return `${slurmConf} does not exist`
  const launcher = SlurmJobLauncher.make(baseOptions)
  if (launcher.problem !== undefined) return launcher.problem.detail
  if (!launcher.capabilities.memoryLimit) return `the cluster does not confine jobs with cgroups (ProctrackType=${launcher.cluster?.proctrack}, TaskPlugin=${launcher.cluster?.taskPlugin})`
  return undefined
})()

/**
 * `true` when the cluster answers. Otherwise the Slurm tests skip loudly,
 * except with `FLEXEC_REQUIRE_SLURM=1` (CI), where this throws and the file fails.
 */
export const slurmReady = (file: string): boolean =>
  engineReady({ file, problem, what: `usable Slurm cluster (SLURM_CONF=${slurmConf})`, how: howToStartSlurm, requireVar: "FLEXEC_REQUIRE_SLURM" })

/** The Slurm clients the launcher would use, by name. */
const realClient = (name: string): string => {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const file = path.join(dir, name)
    if (dir !== "" && fs.existsSync(file)) return file
  }
  throw new Error(`${name} is not on the PATH`)
}

/**
 * A `slurmBin` of wrapper scripts that log each call (`<dir>/calls.log`: one line per call, the command's
 * name first; `<dir>/timed.log`: the same lines led by the epoch milliseconds the call began) and exec the real client.
 */
export const countingSlurmBin = (root: string): {
  readonly dir: string
  readonly calls: () => ReadonlyArray<string>
  readonly timed: () => ReadonlyArray<{ readonly at: number; readonly call: string }>
} => {
  const dir = fs.mkdtempSync(path.join(root, "slurm-bin-"))
  const log = path.join(dir, "calls.log")
  const timedLog = path.join(dir, "timed.log")
  for (const name of ["sbatch", "squeue", "scancel", "scontrol"]) {
    fs.writeFileSync(path.join(dir, name), `#!/bin/sh\necho "$(date +%s%3N) ${name} $*" >> '${timedLog}'\necho "${name} $*" >> '${log}'\nexec '${realClient(name)}' "$@"\n`, { mode: 0o755 })
  }
  const linesOf = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0) : [])
  return {
    dir,
    calls: () => linesOf(log),
    timed: () => linesOf(timedLog).map((l) => ({ at: Number(l.slice(0, l.indexOf(" "))), call: l.slice(l.indexOf(" ") + 1) }))
  }
}

/** A temporary directory for a test. */
export const tempDir = (prefix: string): string => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

/** `/proc/<pid>` gone or a zombie. */
export const isDead = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return /\) [ZX] /.test(stat)
  } catch {
    return true
  }
}

/** The environment a process started with (`/proc/<pid>/environ`). */
export const environOf = (pid: number): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const entry of fs.readFileSync(`/proc/${pid}/environ`, "latin1").split("\0")) {
    const eq = entry.indexOf("=")
    if (eq > 0) out[entry.slice(0, eq)] = entry.slice(eq + 1)
  }
  return out
}

/** squeue's view of the jobs named like `prefix*` of this user, not yet ended: `id|name|state` lines. */
export const liveJobsNamed = (prefix: string): ReadonlyArray<string> => {
  const out = execFileSync(realClient("squeue"), ["-h", "--me", "-O", "JobID:|,Name:|,State:|"], {
    encoding: "utf8",
    env: { ...process.env, SLURM_CONF: slurmConf }
  })
  return out.split("\n").filter((l) => l.split("|")[1]?.startsWith(prefix) === true)
}

/** Live (non-zombie) processes whose environment has `FLEXEC_JOB_ID=<jobId>` exactly. */
export const processesOfJob = (jobId: string): ReadonlyArray<number> =>
  fs
    .readdirSync("/proc")
    .filter((name) => /^[0-9]+$/.test(name) && Number(name) !== process.pid)
    .map(Number)
    .filter((pid) => {
      try {
        return environOf(pid).FLEXEC_JOB_ID === jobId && !isDead(pid)
      } catch {
        return false
      }
    })
