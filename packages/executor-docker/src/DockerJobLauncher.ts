/**
 * The Docker backend of flexec: each job is a container created through the
 * Engine API, hardened (no network, all capabilities dropped, no new
 * privileges, a pids limit, the job's memory and CPU limits), with only the
 * job's own directory and socket directory mounted.
 *
 * @since 0.1.0
 */
import {
  BackendUnavailable,
  decodeJobId,
  ImageNotFound,
  InvalidJobMeta,
  LaunchFailed,
  resolveCommand
} from "@flexec/core"
import type { Capabilities, JobExit, JobHandle, JobLauncher, JobMeta, LaunchRequest, RecoveredJob, TerminateOptions } from "@flexec/core"
import { Context, Duration, Effect, Layer, Option, Ref } from "effect"
import type { Scope } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { DockerClient, makeDockerClient } from "./DockerClient.js"
import type { ContainerState, DockerClientService, DockerError } from "./DockerClient.js"
import { asUnavailable, isNotFound, orNotFound } from "./internal/errors.js"
import { makeLogSink, openLogFile } from "./internal/logSink.js"
import {
  allowedSpecKeys,
  checkJobSpec,
  containerName,
  containerPaths,
  imageMatcher,
  launcherOwnedKeys,
  ownedKeysIn,
  parseContainerUser
} from "./internal/spec.js"
import type { DockerJobSpec } from "./internal/spec.js"
import { removeOnExit } from "./internal/exitRemove.js"

/** When the launcher pulls an image. */
export type PullPolicy = "never" | "if-missing" | "always"

/** Options of the Docker launcher (and of `DockerJobExecutor`). */
export interface DockerLauncherOptions {
  /** The site's default image, used when the job's `launcher_spec` names none. */
  readonly image?: string
  /** The engine: `socketPath` (default `DOCKER_HOST`, else `/var/run/docker.sock`). */
  readonly docker?: { readonly socketPath?: string }
  /** Default `"never"`: a missing image is `ImageNotFound`, never a silent pull. */
  readonly pullPolicy?: PullPolicy
  /** The container's network mode (default `"none"`). */
  readonly network?: string
  /** `"uid:gid"` or `{ uid, gid }` the job runs as (default the parent's); the job dir and socket dir are chowned to it. */
  readonly containerUser?: string | { readonly uid: number; readonly gid: number }
  /** Image patterns jobs may use (`*` matches anything, `name` ≡ `name:latest`); default: any local image. */
  readonly allowedImages?: ReadonlyArray<string>
  /** Mount the site's startup folder read-only at `<container workspace>/startup` (default false). */
  readonly shareStartup?: boolean
  /** Mount `<workspace>/local` read-only at `<container workspace>/local` (default false). */
  readonly shareLocal?: boolean
  /**
   * Extra Engine API container-create fields (PascalCase, `HostConfig` merged),
   * e.g. `{ HostConfig: { Ulimits: [...] } }`. They cannot set the launcher's own
   * keys: mounts, network, env, cmd, name, user, image, labels.
   */
  readonly defaultContainerOptions?: Readonly<Record<string, unknown>>
  /** The worker runtime inside the image (default `/opt/flexec/node_modules/@flexec/core/dist/worker.cjs`). */
  readonly workerModulePath?: string
  /** `NODE_PATH` inside the container (default `/opt/flexec/node_modules`). */
  readonly workerNodePath?: string
  /**
   * Mount the host's `@flexec/core` (the engine's `workerRuntime`) read-only at
   * `<workerNodePath>/@flexec/core`, for images that do not carry the runtime (default false).
   */
  readonly mountWorkerRuntime?: boolean
  /** Timeout of each Engine API call but the wait (default 30000). */
  readonly apiTimeoutMs?: number
  /** Timeout of an image pull (default 600000). */
  readonly pullTimeoutMs?: number
  /** The job's `log.txt` stops growing past this many bytes (default 30 MiB); the `logs` stream goes on. */
  readonly maxLogBytes?: number
  /**
   * What happens to running containers when the parent exits without closing
   * its executor. `"abort"` (default): on the process's `'exit'` each container
   * is force-removed through the Engine API (by a short helper process, since an
   * `'exit'` listener cannot wait; no grace period). `"leave"`: they keep
   * running, for a later parent of the same instance to adopt or reap.
   * `createDockerExecutor` also closes the executor in order on
   * SIGINT/SIGTERM/SIGHUP and uncaught errors (unless `"leave"`).
   */
  readonly onParentExit?: "abort" | "leave"
}

/** The Docker launcher: a `JobLauncher` plus the user its jobs run as. */
export interface DockerLauncher extends JobLauncher {
  readonly name: "docker"
  /** The container user: the engine chowns each job's socket directory to it. */
  readonly runAs: { readonly uid: number; readonly gid: number }
  /** The Engine API client it uses. */
  readonly client: DockerClientService
}

/** What the Docker backend can do (declared here only). */
export const dockerCapabilities: Capabilities = {
  signals: true,
  oomDetection: true,
  recover: true,
  adopt: true,
  logs: true,
  memoryLimit: true,
  gpus: true,
  processes: false
}

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

/** The exit of a container that is no longer running, from its inspect state. */
export const exitOfState = (state: Pick<ContainerState, "status" | "exitCode" | "oomKilled">): JobExit => {
  // `created`: it never ran (a start that failed, or a parent that died before the start).
  if (state.status === "created") return { code: null, signal: null, oomKilled: false, lost: true }
  const code = state.exitCode
  // With `Init: true`, docker-init exits 128+n when the job died of signal n.
  const signal = code > 128 && code <= 128 + 64 ? signalNames.get(code - 128) : undefined
  if (signal !== undefined) return { code: null, signal, oomKilled: state.oomKilled, lost: false }
  return { code, signal: null, oomKilled: state.oomKilled, lost: false }
}

const lostExit: JobExit = { code: null, signal: null, oomKilled: false, lost: true }

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Recursively hands `dir` to `uid:gid` without following symlinks (except `skip`). */
const chownTree = (dir: string, uid: number, gid: number, skip: ReadonlySet<string>): void => {
  const visit = (p: string) => {
    if (skip.has(p)) return
    const st = fs.lstatSync(p)
    if (st.uid !== uid || st.gid !== gid) fs.lchownSync(p, uid, gid)
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) visit(path.join(p, name))
  }
  visit(dir)
}

const realpathOr = (p: string): string => {
  try {
    return fs.realpathSync(p)
  } catch {
    return path.resolve(p)
  }
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

/** Builds the Docker launcher over a given Engine API client. */
export const makeWithClient = (options: DockerLauncherOptions, client: DockerClientService): DockerLauncher => {
  const parsedUser = parseContainerUser(options.containerUser)
  const runAs = typeof parsedUser === "string" ? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 } : parsedUser
  const isAllowed = imageMatcher(options.allowedImages)
  const pullPolicy: PullPolicy = options.pullPolicy ?? "never"
  const network = options.network ?? "none"
  const maxLogBytes = options.maxLogBytes ?? 30 * 1024 * 1024
  const workerModulePath = options.workerModulePath ?? containerPaths.workerModulePath
  const workerNodePath = options.workerNodePath ?? containerPaths.workerNodePath
  const apiTimeout = Duration.millis(options.apiTimeoutMs ?? 30_000)

  const notAllowed = (image: string) =>
    `image '${image}' is not allowed by the site (allowedImages: ${(options.allowedImages ?? []).join(", ") || "none"})`

  const validate = (meta: JobMeta, site: string): Effect.Effect<void, InvalidJobMeta> =>
    Effect.suspend(() => {
      const jobId = typeof meta.job_id === "string" ? meta.job_id : ""
      const checked = checkJobSpec(meta, site)
      if (checked._tag === "Left") return Effect.fail(new InvalidJobMeta({ jobId, issues: checked.issues }))
      const image = checked.spec.image ?? options.image
      if (image !== undefined && !isAllowed(image)) return Effect.fail(new InvalidJobMeta({ jobId, issues: notAllowed(image) }))
      return Effect.void
    })

  /** Waits for the container's exit; `after` runs once the exit is known. */
  const makeHandle = (params: {
    readonly jobId: LaunchRequest["jobId"]
    readonly id: string
    readonly name: string
    readonly killTimeout: Duration.Duration
    readonly exitRef: Ref.Ref<Option.Option<JobExit>>
    readonly afterExit: Effect.Effect<void>
    readonly logs?: JobHandle["logs"]
  }): JobHandle => {
    const { id, exitRef } = params
    const unavailable = asUnavailable(client.endpoint.label)

    const record = (exit: JobExit) =>
      Ref.set(exitRef, Option.some(exit)).pipe(Effect.zipRight(params.afterExit), Effect.as(exit))

    /** The state, `None` when the container is gone. */
    const state = orNotFound(client.inspect(id)).pipe(Effect.mapError(unavailable))

    const settle = (current: Option.Option<ContainerState>): Effect.Effect<Option.Option<JobExit>> =>
      Option.isNone(current)
        ? record(lostExit).pipe(Effect.map(Option.some))
        : current.value.running
          ? Effect.succeed(Option.none())
          : record(exitOfState(current.value)).pipe(Effect.map(Option.some))

    const poll: JobHandle["poll"] = Effect.gen(function* () {
      const known = yield* Ref.get(exitRef)
      if (Option.isSome(known)) return known
      return yield* settle(yield* state)
    })

    const waitOnce: Effect.Effect<Option.Option<JobExit>, BackendUnavailable> = Effect.gen(function* () {
      const known = yield* Ref.get(exitRef)
      if (Option.isSome(known)) return known
      const waited = yield* client.wait(id).pipe(Effect.either)
      if (waited._tag === "Left") {
        const e = waited.left
        if (!isNotFound(e)) return yield* unavailable(e)
      }
      // Never report an exit while the container still runs: the inspect has the last word.
      return yield* settle(yield* state)
    })

    const wait: JobHandle["wait"] = Effect.gen(function* () {
      while (true) {
        const exit = yield* waitOnce
        if (Option.isSome(exit)) return exit.value
        // The engine answered the wait but the container runs again (a restart policy): wait anew.
        yield* Effect.sleep(Duration.millis(100))
      }
    })

    const terminate = (opts?: TerminateOptions): Effect.Effect<void> =>
      Effect.gen(function* () {
        if (Option.isSome(yield* Ref.get(exitRef))) return
        const killAfter = Duration.decode(opts?.killAfter ?? params.killTimeout)
        const seconds = Math.max(0, Math.ceil(Duration.toMillis(killAfter) / 1000))
        yield* client.stop(id, seconds).pipe(
          Effect.catchAll((e) => Effect.logWarning(`docker: could not stop container ${params.name} of job ${params.jobId}: ${e.message}`))
        )
      })

    return {
      jobId: params.jobId,
      poll,
      wait,
      terminate,
      ...(params.logs ? { logs: params.logs } : {}),
      info: { containerId: id, containerName: params.name }
    }
  }

  const launch = (req: LaunchRequest): Effect.Effect<JobHandle, LaunchFailed | ImageNotFound | BackendUnavailable, Scope.Scope> =>
    Effect.gen(function* () {
      const jobId = req.jobId
      const failed = (reason: string, cause?: unknown) =>
        new LaunchFailed({ jobId, reason, ...(cause === undefined ? {} : { cause }) })
      const apiFailure = (what: string) => (e: DockerError): LaunchFailed | BackendUnavailable =>
        e._tag === "BackendUnavailable" ? e : failed(`${what}: ${e.detail}`, e)

      if (typeof parsedUser === "string") return yield* failed(parsedUser)
      const owned = ownedKeysIn(options.defaultContainerOptions)
      if (owned.length > 0) {
        return yield* failed(
          `defaultContainerOptions may not set ${owned.join(", ")}: the launcher owns ${launcherOwnedKeys.join(", ")}`
        )
      }
      const checked = checkJobSpec(req.meta, req.site)
      if (checked._tag === "Left") return yield* failed(checked.issues)
      const spec = checked.spec
      const image = spec.image ?? options.image
      if (image === undefined || image === "") {
        return yield* failed(
          "no image: set launcher_spec.<site|default>.docker.image in the job meta, or the Docker executor's `image` option"
        )
      }
      if (!isAllowed(image)) return yield* failed(notAllowed(image))
      if (spec.numOfGpus !== undefined && spec.numOfGpus !== req.gpus.length) {
        return yield* failed(
          `launcher_spec docker.num_of_gpus is ${spec.numOfGpus} but ${req.gpus.length} GPU(s) were allocated`
        )
      }

      // The image: present, or pulled when the policy allows.
      const present = yield* client.imageExists(image).pipe(Effect.mapError(apiFailure(`cannot inspect image ${image}`)))
      if (pullPolicy === "always" || (pullPolicy === "if-missing" && !present)) {
        yield* client.pullImage(image).pipe(
          Effect.catchAll((e): Effect.Effect<never, BackendUnavailable | LaunchFailed | ImageNotFound> =>
            e._tag === "BackendUnavailable"
              ? Effect.fail(e)
              : present
                ? Effect.fail(failed(`pull of ${image} failed: ${e.detail}`, e))
                : Effect.fail(new ImageNotFound({ jobId, image }))
          )
        )
      } else if (!present) {
        return yield* new ImageNotFound({ jobId, image })
      }

      // Never the Docker socket, whatever the paths are.
      const engineSocket = client.endpoint.socketPath === undefined ? undefined : realpathOr(client.endpoint.socketPath)
      // The host's @flexec/core: `<root>/dist/worker.cjs` → `<root>`.
      const workerRuntimeSource =
        options.mountWorkerRuntime === true ? realpathOr(path.dirname(path.dirname(req.workerRuntime.modulePath))) : undefined
      if (workerRuntimeSource !== undefined && !fs.existsSync(path.join(workerRuntimeSource, "package.json"))) {
        return yield* failed(`mountWorkerRuntime: ${workerRuntimeSource} is not the @flexec/core package root`)
      }
      const sources = [req.paths.jobDir, req.channel.dir]
      if (workerRuntimeSource !== undefined) sources.push(workerRuntimeSource)
      if (options.shareStartup === true) sources.push(req.paths.startup)
      if (options.shareLocal === true) sources.push(req.paths.local)
      for (const source of sources) {
        const real = realpathOr(source)
        if (engineSocket !== undefined && (engineSocket === real || engineSocket.startsWith(real.endsWith("/") ? real : `${real}/`))) {
          return yield* failed(`refusing to mount ${source}: it holds the Docker socket ${client.endpoint.socketPath}`)
        }
      }
      for (const [what, p] of [["startup", req.paths.startup], ["local", req.paths.local]] as const) {
        const shared = what === "startup" ? options.shareStartup === true : options.shareLocal === true
        if (shared && !fs.existsSync(p)) return yield* failed(`the shared ${what} folder ${p} does not exist`)
      }

      // The job dir belongs to the container user (its log file stays the parent's).
      yield* Effect.try({
        try: () => chownTree(req.paths.jobDir, runAs.uid, runAs.gid, new Set([req.paths.logFile])),
        catch: (e) =>
          failed(
            `cannot hand the job directory ${req.paths.jobDir} to the container user ${runAs.uid}:${runAs.gid} (running containers as another user needs a root parent): ${describe(e)}`,
            e
          )
      })

      // The log file: opened once, before the start, without following symlinks.
      const fd = yield* Effect.acquireRelease(
        Effect.try({
          try: () => openLogFile(req.paths.logFile),
          catch: (e) => failed(`cannot open the job log ${req.paths.logFile}: ${describe(e)}`, e)
        }),
        (fd) => Effect.sync(() => fs.closeSync(fd))
      )
      const sink = yield* makeLogSink(fd, maxLogBytes)
      yield* Effect.addFinalizer(() => Effect.sync(sink.detach))

      const body = containerBody({
        request: req,
        image,
        spec,
        user: runAs,
        network,
        shareStartup: options.shareStartup === true,
        shareLocal: options.shareLocal === true,
        workerModulePath,
        workerNodePath,
        workerRuntimeSource,
        defaultContainerOptions: options.defaultContainerOptions
      })
      const name = containerName(req.site, jobId, crypto.randomBytes(6).toString("base64url").toLowerCase().replace(/[^a-z0-9]/g, "0").slice(0, 6))

      // Created → removed when the job's scope closes (after the outcome is read).
      const id = yield* Effect.acquireRelease(
        client.createContainer(name, body).pipe(
          Effect.catchAll((e): Effect.Effect<never, BackendUnavailable | LaunchFailed | ImageNotFound> =>
            isNotFound(e) && /image/i.test(e.detail)
              ? Effect.fail(new ImageNotFound({ jobId, image }))
              : Effect.fail(apiFailure(`the engine refused to create the container`)(e))
          )
        ),
        (id) =>
          client.remove(id).pipe(
            Effect.catchAll((e) => Effect.logWarning(`docker: could not remove container ${name} of job ${jobId}: ${e.message}`))
          )
      )
      // a parent that exits without closing the executor removes the container on its way out
      const engineSocketPath = client.endpoint.socketPath
      if (options.onParentExit !== "leave" && engineSocketPath !== undefined) {
        yield* Effect.acquireRelease(
          Effect.sync(() => removeOnExit({ socketPath: engineSocketPath, containerId: id, channelDir: req.channel.dir })),
          (unguard) => Effect.sync(unguard)
        )
      }

      const attachment = yield* Effect.acquireRelease(
        client.attach(id, sink.write).pipe(Effect.mapError(apiFailure("cannot attach to the container's output"))),
        (a) => Effect.sync(a.close)
      )
      const logsDone = attachment.done.then(sink.end)

      yield* client.start(id).pipe(
        Effect.catchAll((e) =>
          client.remove(id).pipe(
            Effect.ignore,
            Effect.zipRight(Effect.fail(apiFailure("the engine could not start the container")(e)))
          )
        )
      )

      const exitRef = yield* Ref.make(Option.none<JobExit>())
      return makeHandle({
        jobId,
        id,
        name,
        killTimeout: req.killTimeout,
        exitRef,
        // The output is complete (or given up on) before the exit is reported.
        afterExit: Effect.promise(() => logsDone).pipe(Effect.timeout(Duration.seconds(5)), Effect.ignore),
        logs: sink.logs
      })
    })

  /**
   * Re-attaches to a recovered container's output (from now on: what it printed
   * while no parent listened is only in the engine's log), appending to
   * `<jobDir>/log.txt` (found as the host source of the job dir's bind mount,
   * opened without following a link the container may have planted) and
   * feeding a fresh `logs` stream. No scope owns it: the attachment ends with
   * the container, and `finish` (run once the exit is known) tears it down.
   * `undefined` when the engine refuses the attach.
   */
  const reattach = (
    jobId: LaunchRequest["jobId"],
    state: ContainerState
  ): Effect.Effect<{ readonly logs: NonNullable<JobHandle["logs"]>; readonly finish: Effect.Effect<void> } | undefined> =>
    Effect.gen(function* () {
      const target = `${containerPaths.workspace}/${jobId}`
      const jobDir = state.mounts.find((m) => m.type === "bind" && m.destination === target)?.source
      const logFile = jobDir === undefined || jobDir === "" ? undefined : path.join(jobDir, "log.txt")
      const opened = logFile === undefined
        ? undefined
        : yield* Effect.try(() => {
          const fd = openLogFile(logFile)
          return { fd, size: fs.fstatSync(fd).size }
        }).pipe(
          Effect.catchAll((e) =>
            Effect.logWarning(`docker: cannot reopen the log ${logFile} of recovered job ${jobId}: ${describe(e.error)}`).pipe(
              Effect.as(undefined)
            )
          )
        )
      if (logFile === undefined) yield* Effect.logWarning(`docker: recovered job ${jobId} has no job directory mounted at ${target}; its output goes to the logs stream only`)
      let closed = false
      const closeFile = () => {
        if (closed || opened === undefined) return
        closed = true
        fs.closeSync(opened.fd)
      }
      const sink = yield* makeLogSink(opened?.fd ?? -1, Math.max(0, maxLogBytes - (opened?.size ?? 0)))
      if (opened === undefined) sink.detach()
      const finishOutput = () => {
        sink.end()
        sink.detach()
        closeFile()
      }
      const attached = yield* client.attach(state.id, sink.write).pipe(Effect.either)
      if (attached._tag === "Left") {
        yield* Effect.logWarning(`docker: cannot re-attach to the output of recovered job ${jobId}: ${attached.left.message}`)
        finishOutput()
        return undefined
      }
      const attachment = attached.right
      const done = attachment.done.then(finishOutput)
      return {
        logs: sink.logs,
        finish: Effect.promise(() => done).pipe(
          Effect.timeout(Duration.seconds(5)),
          Effect.ignore,
          Effect.zipRight(Effect.sync(() => {
            attachment.close()
            finishOutput()
          }))
        )
      }
    })

  const recover = (instanceId: string): Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable> =>
    Effect.gen(function* () {
      const unavailable = asUnavailable(client.endpoint.label)
      const listed = yield* client.listByLabels({ [Labels.instance]: instanceId }).pipe(Effect.mapError(unavailable))
      const found: Array<RecoveredJob> = []
      for (const c of listed) {
        if (c.labels[Labels.instance] !== instanceId) continue
        const jobId = yield* decodeJobId(c.labels[Labels.jobId]).pipe(Effect.option)
        if (Option.isNone(jobId)) continue
        const inspected = yield* orNotFound(client.inspect(c.id)).pipe(Effect.mapError(unavailable))
        if (Option.isNone(inspected)) continue
        const token = inspected.value.env.find((e) => e.startsWith("FLEXEC_CHANNEL_TOKEN="))?.slice("FLEXEC_CHANNEL_TOKEN=".length)
        const channelDir = c.labels[Labels.channelDir]
        const exitRef = yield* Ref.make(Option.none<JobExit>())
        const name = inspected.value.name
        const output = inspected.value.running ? yield* reattach(jobId.value, inspected.value) : undefined
        const handle = makeHandle({
          jobId: jobId.value,
          id: c.id,
          name,
          killTimeout: Duration.seconds(5),
          exitRef,
          // No scope owns a recovered container: its output is read to the end, then it goes once its outcome is read.
          afterExit: (output?.finish ?? Effect.void).pipe(
            Effect.zipRight(client.remove(c.id).pipe(Effect.timeout(apiTimeout))),
            Effect.catchAll((e) => Effect.logWarning(`docker: could not remove recovered container ${name}: ${describe(e)}`))
          ),
          ...(output ? { logs: output.logs } : {})
        })
        found.push({
          jobId: jobId.value,
          instanceId,
          handle,
          ...(token !== undefined && token !== "" ? { channelToken: token } : {}),
          ...(channelDir !== undefined && channelDir !== "" ? { channelDir } : {})
        })
      }
      return found
    })

  return {
    name: "docker",
    capabilities: dockerCapabilities,
    runAs,
    client,
    validate,
    launch,
    recover
  }
}

/** Builds the Docker launcher with its own Engine API client. */
export const make = (options: DockerLauncherOptions = {}): DockerLauncher =>
  makeWithClient(
    options,
    makeDockerClient({
      ...(options.docker?.socketPath !== undefined ? { socketPath: options.docker.socketPath } : {}),
      ...(options.apiTimeoutMs !== undefined ? { timeout: Duration.millis(options.apiTimeoutMs) } : {}),
      ...(options.pullTimeoutMs !== undefined ? { pullTimeout: Duration.millis(options.pullTimeoutMs) } : {})
    })
  )

/** The Docker launcher as a service. */
export class DockerJobLauncher extends Context.Tag("@flexec/executor-docker/DockerJobLauncher")<
  DockerJobLauncher,
  DockerLauncher
>() {
  /** Builds the launcher with its own client (no connection until the first call). */
  static readonly make = make
  /** The launcher with its own client. */
  static readonly layer = (options: DockerLauncherOptions = {}): Layer.Layer<DockerJobLauncher> =>
    Layer.sync(DockerJobLauncher, () => make(options))
  /** The launcher over the `DockerClient` in the context. */
  static readonly layerWithClient = (options: DockerLauncherOptions = {}): Layer.Layer<DockerJobLauncher, never, DockerClient> =>
    Layer.effect(DockerJobLauncher, Effect.map(DockerClient, (client) => makeWithClient(options, client)))
}

/** The keys a job may set in `launcher_spec.<site|default>.docker`. */
export const jobSpecKeys: ReadonlyArray<string> = allowedSpecKeys
