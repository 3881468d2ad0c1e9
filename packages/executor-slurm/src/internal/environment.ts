/**
 * The environment a Slurm job is submitted with.
 *
 * @internal
 */
import * as path from "node:path"
import type { LaunchRequest } from "./core.js"

/**
 * The job's environment: exactly `request.env`, plus `NODE_PATH` led by the
 * worker runtime's directory and `SLURM_CONF` when the site set one. Slurm adds
 * its own `SLURM_*` variables on the node; nothing of the parent's is added.
 */
export const jobEnvironment = (request: LaunchRequest, slurmConf: string | undefined): Record<string, string> => {
  const env: Record<string, string> = {}
  // sbatch's own input variables would steer the submission: not the job's to set
  for (const [k, v] of Object.entries(request.env)) if (!k.startsWith("SBATCH_")) env[k] = v
  env.NODE_PATH = [request.workerRuntime.nodePath, request.env.NODE_PATH]
    .filter((p): p is string => p !== undefined && p.length > 0)
    .join(path.delimiter)
  if (slurmConf !== undefined) env.SLURM_CONF = slurmConf
  return env
}
