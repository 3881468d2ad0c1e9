/**
 * The cluster's configuration as `scontrol show config` prints it, and what the
 * backend can truthfully claim from it.
 *
 * @internal
 */
import type { Capabilities } from "./core.js"

/** The facts of the cluster the backend depends on. */
export interface ClusterConfig {
  readonly version: string | undefined
  readonly clusterName: string | undefined
  readonly proctrack: string | undefined
  readonly taskPlugin: string | undefined
  readonly cgroupPlugin: string | undefined
  readonly constrainRam: boolean
  readonly gresTypes: ReadonlyArray<string>
  /** `JobCompLoc` when `JobCompType=jobcomp/filetxt`: a line per finished job. */
  readonly jobCompFile: string | undefined
  readonly minJobAgeSeconds: number | undefined
}

/** Parses `scontrol show config` (`Key = Value` lines; cgroup.conf's keys included). */
export const parseShowConfig = (text: string): ClusterConfig => {
  const values = new Map<string, string>()
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z][A-Za-z0-9_]*)\s*=\s?(.*)$/.exec(line.trimEnd())
    if (match) values.set(match[1]!.toLowerCase(), match[2]!.trim())
  }
  const get = (key: string): string | undefined => {
    const v = values.get(key.toLowerCase())
    return v === undefined || v === "" || v === "(null)" ? undefined : v
  }
  const jobCompType = get("JobCompType")
  const minJobAge = /^([0-9]+)/.exec(get("MinJobAge") ?? "")
  return {
    version: get("SLURM_VERSION"),
    clusterName: get("ClusterName"),
    proctrack: get("ProctrackType"),
    taskPlugin: get("TaskPlugin"),
    cgroupPlugin: get("CgroupPlugin"),
    constrainRam: (get("ConstrainRAMSpace") ?? "").toLowerCase() === "yes",
    gresTypes: (get("GresTypes") ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0),
    jobCompFile: jobCompType === "jobcomp/filetxt" ? get("JobCompLoc") : undefined,
    minJobAgeSeconds: minJobAge ? Number(minJobAge[1]) : undefined
  }
}

/** Jobs are tracked and limited by cgroups: `proctrack/cgroup`, `task/cgroup` and `ConstrainRAMSpace=yes`. */
export const cgroupConfined = (config: ClusterConfig): boolean =>
  config.proctrack === "proctrack/cgroup" &&
  (config.taskPlugin ?? "").split(",").map((s) => s.trim()).includes("task/cgroup") &&
  config.constrainRam

/**
 * What the backend can do on this cluster. Memory limits and OOM detection
 * only where cgroups confine each job (else `--mem` is bookkeeping, and an
 * over-allocating job is not killed as `OUT_OF_MEMORY`); GPUs only where the
 * cluster knows the `gpu` gres. With `config` undefined (the controller did not
 * answer at start) only what needs no cgroup is claimed.
 */
export const capabilitiesOf = (config: ClusterConfig | undefined): Capabilities => {
  const confined = config !== undefined && cgroupConfined(config)
  return {
    signals: true,
    oomDetection: confined,
    recover: true,
    adopt: true,
    logs: true,
    memoryLimit: confined,
    gpus: config !== undefined && config.gresTypes.includes("gpu"),
    // the job's processes are OS processes of the node; with the unix channel that node is this host
    processes: true
  }
}
