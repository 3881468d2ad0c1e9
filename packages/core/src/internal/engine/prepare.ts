/**
 * Preparing a job before anything is registered: the deployed meta read and
 * checked against the one given, the backend's own check, the argv, the GPU
 * count, the paths; then, once the channel listens, the `LaunchRequest` with
 * the job's environment. No registry, no fibers: what it decides can be tested
 * without an engine.
 */
import { Effect } from "effect"
import type { Duration } from "effect"
import * as path from "node:path"
import type { StartAppError, StartAppParams } from "../../ClientExecutor.js"
import { InvalidJobMeta, LaunchFailed } from "../../Errors.js"
import type { ExecutorOptions } from "../../ExecutorOptions.js"
import { decodeClientInfo, decodeJobId } from "../../JobId.js"
import type { ClientInfo, JobId } from "../../JobId.js"
import type { ChannelInfo, JobLauncher, JobPaths, LaunchRequest } from "../../JobLauncher.js"
import { resolveCommand } from "../../JobLauncher.js"
import { decodeJobMeta, launcherSpecFor, mergeWithDeployed, resourceSpecFor } from "../../JobMeta.js"
import type { JobMeta } from "../../JobMeta.js"
import type { Allocation, ResourceManager } from "../../ResourceManager.js"
import { adapt, gpuIdsOf } from "../../ResourceManagerAdapter.js"
import { BackendFault, boundedCall, describeValue } from "../backendGuard.js"
import { buildJobEnv } from "../jobEnv.js"
import type { WorkerRuntimeFiles } from "../workerRuntime.js"
import { readDeployedMeta } from "./deployedMeta.js"

/** A job that passed every check: what registering and launching it needs. */
export interface PreparedJob {
  readonly jobId: JobId
  readonly client: ClientInfo
  readonly site: string
  readonly meta: JobMeta
  readonly paths: JobPaths
  readonly commandTemplate: ReadonlyArray<string> | undefined
  readonly command: ReadonlyArray<string>
  readonly allocation: Allocation
  readonly gpus: ReadonlyArray<string>
  readonly set: Readonly<Record<string, unknown>>
  /** `set` as the job's `FLEXEC_SET`. */
  readonly setJson: string
  readonly token: string
  readonly resourceManager: ResourceManager | undefined
}

/** What the executor adds to every job. */
export interface ExecutorFacts {
  readonly options: ExecutorOptions
  readonly client: ClientInfo
  readonly instanceId: string
  readonly runtimeDir: string
  readonly backendSlack: Duration.Duration
}

/** The argv template: the job's own `launcher_spec.<site|default>.process.command` with BYOC, else the site's. */
export const commandFor = (
  jobId: string,
  meta: JobMeta,
  site: string,
  siteCommand: ReadonlyArray<string> | undefined
): Effect.Effect<ReadonlyArray<string> | undefined, InvalidJobMeta> => {
  const own = launcherSpecFor(meta, site, "process")?.command
  if (own !== undefined) {
    if (meta.byoc !== true) {
      return Effect.fail(
        new InvalidJobMeta({
          jobId,
          issues: "launcher_spec.process.command needs a deployed meta with byoc: true and a site that allows BYOC (allowByoc)"
        })
      )
    }
    if (!Array.isArray(own) || own.length === 0 || !own.every((a) => typeof a === "string" && a.length > 0)) {
      return Effect.fail(new InvalidJobMeta({ jobId, issues: "launcher_spec.process.command must be a non-empty array of non-empty strings" }))
    }
    return Effect.succeed(own as ReadonlyArray<string>)
  }
  if (siteCommand !== undefined && (siteCommand.length === 0 || !siteCommand.every((a) => typeof a === "string"))) {
    return Effect.fail(new InvalidJobMeta({ jobId, issues: "the site's command must be a non-empty array of strings" }))
  }
  return Effect.succeed(siteCommand)
}

/** `resource_spec.num_of_gpus` must be the allocation's GPU count. */
export const checkGpuCount = (jobId: string, meta: JobMeta, site: string, gpus: ReadonlyArray<string>): Effect.Effect<void, InvalidJobMeta> => {
  const requested = resourceSpecFor(meta, site).num_of_gpus
  if (requested === undefined || requested === null) return Effect.void
  if (typeof requested !== "number" || !Number.isInteger(requested) || requested < 0) {
    return Effect.fail(new InvalidJobMeta({ jobId, issues: `resource_spec.num_of_gpus must be an integer ≥ 0, got ${JSON.stringify(requested)}` }))
  }
  if (requested !== gpus.length) {
    return Effect.fail(new InvalidJobMeta({ jobId, issues: `resource_spec asks for ${requested} GPU(s) but the allocation holds ${gpus.length}` }))
  }
  return Effect.void
}

/**
 * The backend's `validate`, bounded. Its `InvalidJobMeta` is the caller's (about this
 * job); a hang, a defect or an undeclared error is the backend's fault: `LaunchFailed`.
 */
const validateWithBackend = (launcher: JobLauncher, jobId: JobId, meta: JobMeta, site: string, slack: Duration.Duration) => {
  if (launcher.validate === undefined) return Effect.void
  // called on the launcher: a class's method keeps its `this`
  return boundedCall(launcher.name, `job ${jobId}: validate`, () => launcher.validate!(meta, site), slack).pipe(
    Effect.mapError((e): InvalidJobMeta | LaunchFailed => {
      if (e instanceof BackendFault) return new LaunchFailed({ jobId, reason: e.message })
      if ((e as { _tag?: unknown } | null)?._tag !== "InvalidJobMeta") {
        return new LaunchFailed({ jobId, reason: `backend "${launcher.name}": validate failed with an undeclared error: ${describeValue(e)}` })
      }
      return e.jobId === jobId ? e : new InvalidJobMeta({ jobId, issues: e.issues })
    })
  )
}

/** Checks `params` against the deployed job and the backend; nothing is registered or launched. */
export const prepareJob = (
  facts: ExecutorFacts,
  launcher: JobLauncher,
  params: StartAppParams
): Effect.Effect<PreparedJob, StartAppError> =>
  Effect.gen(function* () {
    const jobId = yield* decodeJobId(params.jobId)
    const client: ClientInfo = params.client === undefined ? facts.client : yield* decodeClientInfo(params.client)
    const site = client.clientName
    const workspaceArg = (params.args as StartAppParams["args"] | undefined)?.workspace
    if (typeof workspaceArg !== "string" || workspaceArg.length === 0) {
      return yield* new InvalidJobMeta({ jobId, issues: "args.workspace must be the path of the workspace" })
    }
    const paths = pathsOf(facts, jobId, site, workspaceArg)
    const deployed = yield* decodeJobMeta(jobId, yield* readDeployedMeta(jobId, paths.jobDir))
    // the given meta's job_id is a protected key: a different one is JobMetaMismatch (the drift check)
    if (params.jobMeta !== undefined) yield* decodeJobMeta(jobId, params.jobMeta, { checkJobId: false })
    const meta = yield* mergeWithDeployed(jobId, deployed, params.jobMeta, facts.options.allowByoc === true)
    yield* validateWithBackend(launcher, jobId, meta, site, facts.backendSlack)
    const commandTemplate = yield* commandFor(jobId, meta, site, facts.options.command)
    const allocation: Allocation = params.allocatedResource ?? {}
    const gpus = gpuIdsOf(allocation)
    yield* checkGpuCount(jobId, meta, site, gpus)
    const set = params.args.set ?? {}
    const setJson = yield* Effect.try({
      try: () => JSON.stringify(set),
      catch: () => new InvalidJobMeta({ jobId, issues: "args.set must be JSON-serializable" })
    })
    const resourceManager = params.resourceManager === undefined ? undefined : adapt(params.resourceManager)
    if (Object.keys(allocation).length > 0 && resourceManager === undefined) {
      return yield* new InvalidJobMeta({ jobId, issues: "allocatedResource was given without the resourceManager it is freed to" })
    }
    const command = resolveCommand(commandTemplate ?? [process.execPath, "{appDir}/main.js"], {
      workspace: paths.workspace,
      jobDir: paths.jobDir,
      appDir: paths.appDir,
      jobId,
      startup: paths.startup
    })
    return {
      jobId,
      client,
      site,
      meta,
      paths,
      commandTemplate,
      command,
      allocation,
      gpus,
      set,
      setJson,
      token: params.token ?? "",
      resourceManager
    }
  })

/** The job's paths under its workspace. */
export const pathsOf = (facts: ExecutorFacts, jobId: string, site: string, workspaceArg: string): JobPaths => {
  const workspace = path.resolve(workspaceArg)
  const jobDir = path.join(workspace, jobId)
  return {
    workspace,
    jobDir,
    appDir: path.join(jobDir, `app_${site}`),
    startup: facts.options.startup ?? path.join(workspace, "startup"),
    local: path.join(workspace, "local"),
    logFile: path.join(jobDir, "log.txt"),
    rcFile: path.join(jobDir, "_process_rc.txt"),
    runtimeDir: facts.runtimeDir
  }
}

/** The transport's job variables (the TLS pin): `FLEXEC_CHANNEL_*` names only, never the token. */
const channelEnvOf = (channel: ChannelInfo): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(channel.env ?? {})) {
    if (name.startsWith("FLEXEC_CHANNEL_") && name !== "FLEXEC_CHANNEL_TOKEN") env[name] = value
  }
  return env
}

/** The `LaunchRequest` of `job`, once its channel listens; `channelToken` is what its worker says hello with. */
export const launchRequestOf = (
  facts: ExecutorFacts & { readonly killTimeout: Duration.Duration; readonly workerRuntime: WorkerRuntimeFiles },
  job: PreparedJob,
  channel: ChannelInfo,
  channelToken: string
): LaunchRequest => ({
  jobId: job.jobId,
  client: job.client,
  site: job.site,
  instanceId: facts.instanceId,
  meta: job.meta,
  paths: job.paths,
  allocation: job.allocation,
  gpus: job.gpus,
  commandTemplate: job.commandTemplate,
  command: job.command,
  env: buildJobEnv({
    parent: process.env,
    inherit: facts.options.inheritEnv ?? [],
    site: facts.options.env ?? {},
    flexec: {
      FLEXEC_PARENT_URL: channel.url,
      FLEXEC_CHANNEL_TOKEN: channelToken,
      ...channelEnvOf(channel),
      FLEXEC_JOB_ID: job.jobId,
      FLEXEC_CLIENT_NAME: job.site,
      FLEXEC_INSTANCE_ID: facts.instanceId,
      FLEXEC_WORKSPACE: job.paths.workspace,
      FLEXEC_JOB_DIR: job.paths.jobDir,
      FLEXEC_STARTUP_DIR: job.paths.startup,
      FLEXEC_SET: job.setJson,
      FLEXEC_WORKER_MODULE: facts.workerRuntime.modulePath,
      FLEXEC_JOB_AUTH_TOKEN: job.client.token,
      FLEXEC_JOB_TOKEN_SIGNATURE: job.client.tokenSignature,
      FLEXEC_JOB_SSID: job.client.ssid,
      FLEXEC_RECONNECT_MS: facts.options.reconnectWindowMs === undefined ? undefined : String(facts.options.reconnectWindowMs)
    }
  }),
  channel,
  set: job.set,
  labels: { ...facts.options.labels },
  killTimeout: facts.killTimeout,
  workerRuntime: facts.workerRuntime
})
