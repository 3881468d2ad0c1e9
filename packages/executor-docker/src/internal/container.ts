/**
 * A job's container spec: the Engine API create body (hardened, only the job's
 * own directory and socket directory mounted), the labels it carries, the
 * exit read back from its inspect state, and the job tree handed to the
 * container user.
 *
 * @internal
 */
import { resolveCommand } from "@flexec/core"
import type { JobExit, LaunchRequest } from "@flexec/core"
import { Duration } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { ContainerState } from "../DockerClient.js"
import { containerPaths, isRecord } from "./spec.js"
import type { DockerJobSpec } from "./spec.js"

/** Labels the launcher puts on every container. */
export const Labels = {
  jobId: "flexec.job_id",
  site: "flexec.site",
  instance: "flexec.instance",
  channelDir: "flexec.channel_dir",
  socketName: "flexec.socket_name"
} as const

const signalNames = new Map<number, string>(
  Object.entries(os.constants.signals).map(([name, number]) => [number as number, name])
)

/** The exit of a container that is gone, or never ran. */
export const lostExit: JobExit = { code: null, signal: null, oomKilled: false, lost: true }

/** The exit of a container that is no longer running, from its inspect state. */
export const exitOfState = (state: Pick<ContainerState, "status" | "exitCode" | "oomKilled">): JobExit => {
  // `created`: it never ran (a start that failed, or a parent that died before the start).
  if (state.status === "created") return lostExit
  const code = state.exitCode
  // With `Init: true`, docker-init exits 128+n when the job died of signal n.
  const signal = code > 128 && code <= 128 + 64 ? signalNames.get(code - 128) : undefined
  if (signal !== undefined) return { code: null, signal, oomKilled: state.oomKilled, lost: false }
  return { code, signal: null, oomKilled: state.oomKilled, lost: false }
}

/** Recursively hands `dir` to `uid:gid` without following symlinks (except `skip`). */
export const chownTree = (dir: string, uid: number, gid: number, skip: ReadonlySet<string>): void => {
  const visit = (p: string) => {
    if (skip.has(p)) return
    const st = fs.lstatSync(p)
    if (st.uid !== uid || st.gid !== gid) fs.lchownSync(p, uid, gid)
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) visit(path.join(p, name))
  }
  visit(dir)
}

/** Inputs of `containerBody` (exported for tests). */
export interface ContainerBodyInput {
  readonly request: LaunchRequest
  readonly image: string
  readonly spec: DockerJobSpec
  readonly user: { readonly uid: number; readonly gid: number }
  readonly network: string
  readonly shareStartup: boolean
  readonly shareLocal: boolean
  readonly workerModulePath: string
  readonly workerNodePath: string
  /** The host's `@flexec/core` package root to mount read-only, if any. */
  readonly workerRuntimeSource?: string | undefined
  readonly defaultContainerOptions: Readonly<Record<string, unknown>> | undefined
}

/** The Engine API create body of a job's container. */
export const containerBody = (input: ContainerBodyInput): Record<string, unknown> => {
  const { request: req, spec, user } = input
  const workspace = containerPaths.workspace
  const jobDir = `${workspace}/${req.jobId}`
  const relApp = path.relative(req.paths.jobDir, req.paths.appDir)
  const appDir = relApp === "" || relApp.startsWith("..") || path.isAbsolute(relApp)
    ? `${jobDir}/app_${req.site}`
    : `${jobDir}/${relApp.split(path.sep).join("/")}`
  const startup = `${workspace}/startup`
  const local = `${workspace}/local`

  const env: Record<string, string> = { ...req.env }
  // The host's PATH and HOME mean nothing in the image: keep the image's unless the site set its own.
  for (const name of ["PATH", "HOME"]) if (env[name] !== undefined && env[name] === process.env[name]) delete env[name]
  if (env.TMPDIR !== undefined) env.TMPDIR = "/tmp"
  env.FLEXEC_PARENT_URL = `unix://${containerPaths.channelDir}/${req.channel.socketName}`
  env.FLEXEC_WORKSPACE = workspace
  env.FLEXEC_JOB_DIR = jobDir
  env.FLEXEC_STARTUP_DIR = startup
  env.FLEXEC_WORKER_MODULE = input.workerModulePath
  env.NODE_PATH = input.workerNodePath
  if (spec.memory !== undefined) {
    const heapMiB = Math.max(16, Math.floor((spec.memory / 1024 ** 2) * 0.75))
    env.NODE_OPTIONS = [env.NODE_OPTIONS, `--max-old-space-size=${heapMiB}`].filter((s) => s !== undefined && s !== "").join(" ")
  }

  const command = resolveCommand(req.commandTemplate ?? ["node", "{appDir}/main.js"], {
    workspace,
    jobDir,
    appDir,
    jobId: req.jobId,
    startup
  })

  const mounts: Array<Record<string, unknown>> = [
    { Type: "tmpfs", Target: workspace },
    { Type: "bind", Source: req.paths.jobDir, Target: jobDir, ReadOnly: false },
    { Type: "bind", Source: req.channel.dir, Target: containerPaths.channelDir, ReadOnly: true }
  ]
  if (input.shareStartup) mounts.push({ Type: "bind", Source: req.paths.startup, Target: startup, ReadOnly: true })
  if (input.shareLocal) mounts.push({ Type: "bind", Source: req.paths.local, Target: local, ReadOnly: true })
  if (input.workerRuntimeSource !== undefined) {
    mounts.push({ Type: "bind", Source: input.workerRuntimeSource, Target: `${input.workerNodePath}/@flexec/core`, ReadOnly: true })
  }

  const site = input.defaultContainerOptions ?? {}
  const siteHost = isRecord(site.HostConfig) ? site.HostConfig : {}
  const siteSecurity = Array.isArray(siteHost.SecurityOpt) ? (siteHost.SecurityOpt as Array<string>) : []
  const hostConfig: Record<string, unknown> = {
    ...siteHost,
    Init: true,
    NetworkMode: input.network,
    CapDrop: ["ALL"],
    SecurityOpt: [...new Set([...siteSecurity, "no-new-privileges"])],
    PidsLimit: typeof siteHost.PidsLimit === "number" ? siteHost.PidsLimit : 1024,
    Mounts: mounts
  }
  if (spec.memory !== undefined) {
    hostConfig.Memory = spec.memory
    hostConfig.MemorySwap = spec.memory
  }
  if (spec.cpus !== undefined) hostConfig.NanoCpus = Math.round(spec.cpus * 1e9)
  if (spec.shmSize !== undefined) hostConfig.ShmSize = spec.shmSize
  if (req.gpus.length > 0) {
    hostConfig.DeviceRequests = [{ Driver: "", Count: 0, DeviceIDs: [...req.gpus], Capabilities: [["gpu"]] }]
  }

  const { HostConfig: _ignored, ...siteConfig } = site
  return {
    ...siteConfig,
    Image: input.image,
    Cmd: [...command],
    Entrypoint: spec.entrypoint !== undefined ? [...spec.entrypoint] : Array.isArray(siteConfig.Entrypoint) ? siteConfig.Entrypoint : [],
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    Labels: {
      ...req.labels,
      [Labels.jobId]: req.jobId,
      [Labels.site]: req.site,
      [Labels.instance]: req.instanceId,
      [Labels.channelDir]: req.channel.dir,
      [Labels.socketName]: req.channel.socketName
    },
    User: `${user.uid}:${user.gid}`,
    WorkingDir: jobDir,
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: false,
    Tty: false,
    StopSignal: "SIGTERM",
    StopTimeout: Math.max(0, Math.ceil(Duration.toSeconds(req.killTimeout))),
    HostConfig: hostConfig
  }
}
