/**
 * The CLI's Slurm support, kept apart from the commands: `flexec doctor`'s
 * Slurm checks and the launcher of `flexec run --backend slurm`.
 *
 * @internal
 */
import { SlurmJobLauncher } from "@flexec/executor-slurm"
import type { SlurmLauncher } from "@flexec/executor-slurm"
import type { BackendUnavailable } from "@flexec/core"
import { Effect } from "effect"

/** One finding of `flexec doctor` (the shape `DoctorCommand` prints). */
export interface SlurmCheck {
  readonly level: "ok" | "warn" | "fail" | "info"
  readonly name: string
  readonly detail: string
  readonly fix?: string
}

/** The launcher of `flexec run --backend slurm` (SLURM_CONF and PATH from the environment); fails when Slurm cannot be asked. */
export const slurmLauncher = (): Effect.Effect<SlurmLauncher, BackendUnavailable> => SlurmJobLauncher.makeEffect({})

/**
 * The Slurm checks: the clients (`sbatch`, `squeue`, `scancel`, `scontrol`), the
 * controller (`scontrol show config`), and the cgroup plugins that give jobs a
 * memory limit, OOM detection and a kill of the whole job. A machine without
 * Slurm gets `info` (only `--backend slurm` needs it), never `fail`.
 */
export const slurmChecks: Effect.Effect<ReadonlyArray<SlurmCheck>> = Effect.gen(function* () {
  const launcher = yield* Effect.sync(() => SlurmJobLauncher.make({ commandTimeoutMs: 10_000 }))
  const commands = Object.entries(launcher.commands)
  const missing = commands.filter(([name, file]) => file === name)
  if (missing.length === commands.length) {
    return [{
      level: "info",
      name: "slurm",
      detail: "no Slurm clients on the PATH; only --backend slurm needs them",
      fix: "install Slurm's clients (Debian: slurm-client), or try a single-host cluster: sudo bash scripts/slurm-up.sh"
    }]
  }
  const checks: Array<SlurmCheck> = [
    missing.length === 0
      ? { level: "ok", name: "slurm", detail: `clients ${commands.map(([, file]) => file).join(", ")}` }
      : { level: "warn", name: "slurm", detail: `missing ${missing.map(([name]) => name).join(", ")} on the PATH`, fix: "install Slurm's clients (Debian: slurm-client)" }
  ]
  if (launcher.problem !== undefined || launcher.cluster === undefined) {
    checks.push({
      level: "warn",
      name: "slurmctld",
      detail: launcher.problem?.detail ?? "the controller gave no configuration",
      fix: `start slurmctld, or point SLURM_CONF at the cluster's slurm.conf${process.env.SLURM_CONF ? ` (now ${process.env.SLURM_CONF})` : ""}`
    })
    return checks
  }
  const cluster = launcher.cluster
  checks.push({
    level: "ok",
    name: "slurmctld",
    detail: `answers: cluster ${cluster.clusterName ?? "?"}, Slurm ${cluster.version ?? "?"}${cluster.jobCompFile ? `, jobcomp ${cluster.jobCompFile}` : ", no jobcomp file (a job's exit is lost once squeue forgets it)"}`
  })
  const caps = launcher.capabilities
  checks.push(
    caps.memoryLimit === true
      ? { level: "ok", name: "cgroups", detail: `${cluster.proctrack}, ${cluster.taskPlugin}, ${cluster.cgroupPlugin ?? "cgroup"}: memory limits, OOM detection, the whole job killed on abort` }
      : {
        level: "warn",
        name: "cgroups",
        detail: `ProctrackType=${cluster.proctrack ?? "?"} TaskPlugin=${cluster.taskPlugin ?? "?"} ConstrainRAMSpace=${cluster.constrainRam ? "yes" : "no"}: no memory limit or OOM detection, and a setsid'd child may survive an abort`,
        fix: "slurm.conf: ProctrackType=proctrack/cgroup, TaskPlugin=task/cgroup; cgroup.conf: ConstrainRAMSpace=yes"
      }
  )
  checks.push({
    level: "info",
    name: "channel",
    detail: "unix socket: a Slurm job must run on this host (jobs on other nodes need the TCP channel, not in this release)"
  })
  return checks
})
