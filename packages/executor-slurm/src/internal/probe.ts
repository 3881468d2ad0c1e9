/**
 * The start-up probe of the cluster: the clients exist and are executable, and
 * the controller answers `scontrol show config` (whose answer gives the
 * cluster's config, hence the launcher's capabilities).
 *
 * @internal
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { SlurmCli, SlurmCommandError } from "./cli.js"
import { parseShowConfig } from "./clusterConfig.js"
import type { ClusterConfig } from "./clusterConfig.js"
import { BackendUnavailable } from "./core.js"

/** What the probe found: the cluster's config if the controller answered, and why the cluster cannot be used if it cannot. */
export interface Probed {
  readonly cluster: ClusterConfig | undefined
  readonly problem: BackendUnavailable | undefined
}

const showConfig = ["show", "config"] as const

/** Why the cluster cannot be used, if it cannot: the failure names the command and Slurm's message. */
const problemOf = (cli: SlurmCli, result: { stdout: string } | SlurmCommandError): BackendUnavailable | undefined => {
  for (const name of ["sbatch", "squeue", "scancel", "scontrol"] as const) {
    const file = cli.paths[name]
    if (!path.isAbsolute(file)) {
      return new BackendUnavailable({ backend: "slurm", detail: `${name}: not found on the PATH (install Slurm's clients, or give slurmBin)` })
    }
    try {
      fs.accessSync(file, fs.constants.X_OK)
    } catch {
      return new BackendUnavailable({ backend: "slurm", detail: `${file}: ${fs.existsSync(file) ? "not executable" : "does not exist"} (slurmBin must hold sbatch, squeue, scancel and scontrol)` })
    }
  }
  if ("_tag" in result) return new BackendUnavailable({ backend: "slurm", detail: `the controller did not answer: ${result.message}` })
  return undefined
}

const probedOf = (cli: SlurmCli, result: { stdout: string } | SlurmCommandError): Probed => ({
  cluster: "_tag" in result ? undefined : parseShowConfig(result.stdout),
  problem: problemOf(cli, result)
})

/** The probe, blocking (within the command timeout; `make` is synchronous). */
export const probeSync = (cli: SlurmCli): Probed => probedOf(cli, cli.runSync("scontrol", showConfig))

/** The probe, without blocking. */
export const probe = (cli: SlurmCli): Effect.Effect<Probed> =>
  Effect.map(Effect.either(cli.run("scontrol", showConfig)), (probed) => probedOf(cli, probed._tag === "Right" ? probed.right : probed.left))
