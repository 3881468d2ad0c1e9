/**
 * The SPI a backend implements. Everything a backend needs from the engine is
 * in `LaunchRequest`; everything the engine needs from a backend is in
 * `JobLauncher` and `JobHandle`.
 *
 * @since 0.1.0
 */
import type { Duration, Effect, Option, Scope, Stream } from "effect"
import type { Duplex } from "node:stream"
import type { BackendUnavailable, ImageNotFound, InvalidJobMeta, LaunchFailed } from "./Errors.js"
import type { ClientInfo, JobId } from "./JobId.js"
import type { JobMeta } from "./JobMeta.js"

/**
 * What a backend can do. Declared by the backend, and only there: the engine and
 * the conformance suite read it and never take it from anywhere else.
 */
export interface Capabilities {
  /** Exit records carry the terminating signal, and terminate escalates SIGTERM → SIGKILL. */
  readonly signals: boolean
  /** The backend can tell an OOM kill (`exit.oomKilled`). */
  readonly oomDetection: boolean
  /** `recover` finds jobs a previous parent left behind. */
  readonly recover: boolean
  /** Recovered jobs can be adopted (kept running, their worker reconnects). */
  readonly adopt: boolean
  /** Handles expose `logs`. */
  readonly logs: boolean
  /** The backend enforces a memory limit from `resource_spec[site].memory`. */
  readonly memoryLimit?: boolean
  /** The backend gives jobs GPUs from their allocation. */
  readonly gpus?: boolean
  /** Jobs run as separate OS processes (so leak checks can look at the OS). */
  readonly processes?: boolean
}

/** How a job ended, as the backend saw it. Code and signal are kept apart. */
export interface JobExit {
  /** The exit code, or `null` when the job ended by a signal or no code is known. */
  readonly code: number | null
  /** The terminating signal (`"SIGKILL"`), or `null`. */
  readonly signal: string | null
  /** The backend saw an out-of-memory kill. */
  readonly oomKilled: boolean
  /** The backend lost the job without an exit record. */
  readonly lost: boolean
}

/** One line of a job's output. */
export interface LogLine {
  readonly stream: "stdout" | "stderr"
  readonly line: string
  /** Epoch milliseconds when the parent read it. */
  readonly time: number
}

/** Options of `JobHandle.terminate`. */
export interface TerminateOptions {
  /** Send SIGKILL (or the backend's equivalent) this long after SIGTERM. */
  readonly killAfter?: Duration.DurationInput
}

/** A running job as its backend sees it. */
export interface JobHandle {
  readonly jobId: JobId
  /** The exit, once the job has ended; `None` while it runs. */
  readonly poll: Effect.Effect<Option.Option<JobExit>, BackendUnavailable>
  /** Waits for the exit. Fails with `BackendUnavailable` (retried by the engine) when the backend cannot be asked. */
  readonly wait: Effect.Effect<JobExit, BackendUnavailable>
  /** Idempotent: SIGTERM (or equivalent) now, SIGKILL after `killAfter`. Returns once the kill is sent, not when the job ended. */
  readonly terminate: (options?: TerminateOptions) => Effect.Effect<void>
  /** The job's stdout and stderr, line by line, where `capabilities.logs`. */
  readonly logs?: Stream.Stream<LogLine>
  /** Backend-specific facts (pid, container id) for diagnostics and tests. */
  readonly info?: Readonly<Record<string, string | number>>
}

/** Resolved host paths of one job. */
export interface JobPaths {
  /** The workspace root. */
  readonly workspace: string
  /** `<workspace>/<jobId>`: the job directory, the job's cwd. */
  readonly jobDir: string
  /** `<workspace>/<jobId>/app_<clientName>`. */
  readonly appDir: string
  /** The site's startup folder. */
  readonly startup: string
  /** `<workspace>/local`. */
  readonly local: string
  /** `<jobDir>/log.txt`. */
  readonly logFile: string
  /** `<jobDir>/_process_rc.txt`. */
  readonly rcFile: string
  /** The executor instance's runtime directory. */
  readonly runtimeDir: string
}

/** The parent end of the job's channel, as the backend must hand it to the job. */
export interface ChannelInfo {
  /** The job's private socket directory (0700); Docker mounts it at `/run/flexec`. */
  readonly dir: string
  /** The socket file's name inside `dir`. */
  readonly socketName: string
  /** `<dir>/<socketName>`. */
  readonly socketPath: string
  /** Where the job connects (`FLEXEC_PARENT_URL`): `unix://<socketPath>`, or over TCP `tcp://host:port` / `tls://host:port`. */
  readonly url: string
  /** The job's channel token (also in `env.FLEXEC_CHANNEL_TOKEN`). */
  readonly token: string
  /**
   * What else the job needs to connect, from the transport (over TLS the
   * certificate pin `FLEXEC_CHANNEL_CERT_SHA256`); already in the request's `env`.
   */
  readonly env?: Readonly<Record<string, string>>
  /**
   * Connects a stream to the channel from inside this process, without a socket
   * file: for in-process backends such as `@flexec/testing`'s `InMemoryJobLauncher`.
   */
  readonly connectInProcess: () => Duplex
}

/** Everything a backend gets to launch a job. */
export interface LaunchRequest {
  readonly jobId: JobId
  readonly client: ClientInfo
  /** The site name (the client name). */
  readonly site: string
  /** The executor instance id (label `flexec.instance`). */
  readonly instanceId: string
  /** The merged launch meta (protected keys and `byoc` from the deployed meta). */
  readonly meta: JobMeta
  readonly paths: JobPaths
  /** The allocation the job owns (as the resource manager returned it). */
  readonly allocation: Readonly<Record<string, unknown>>
  /** The allocated GPU ids, normalized; the job must see exactly these. */
  readonly gpus: ReadonlyArray<string>
  /** The site's (or, with BYOC, the job's) argv template, placeholders unresolved; `undefined`: the backend's default. */
  readonly commandTemplate: ReadonlyArray<string> | undefined
  /** The argv with placeholders resolved to host paths (the template or `[node, "{appDir}/main.js"]`). */
  readonly command: ReadonlyArray<string>
  /** The job's whole environment (allowlist, site env, `FLEXEC_*`). Never the parent's environment. */
  readonly env: Readonly<Record<string, string>>
  readonly channel: ChannelInfo
  /** `ctx.set` for the job. */
  readonly set: Readonly<Record<string, unknown>>
  /** Labels the backend attaches to what it creates (containers, pid files). */
  readonly labels: Readonly<Record<string, string>>
  /** The executor's kill timeout (SIGTERM → SIGKILL). */
  readonly killTimeout: Duration.Duration
  /**
   * Where Node jobs find the worker runtime on the host: `modulePath` is the
   * absolute path of `@flexec/core/worker` (also `env.FLEXEC_WORKER_MODULE`),
   * `nodePath` a directory holding `@flexec/core` to put on `NODE_PATH`.
   */
  readonly workerRuntime: { readonly modulePath: string; readonly nodePath: string }
}

/** A job a previous parent of this instance left running. */
export interface RecoveredJob {
  readonly jobId: JobId
  readonly instanceId: string
  readonly handle: JobHandle
  /** The job's channel token, when the backend kept it (needed to adopt). */
  readonly channelToken?: string
  /** The job's socket directory, when the backend kept it (needed to adopt). */
  readonly channelDir?: string
}

/** A backend. */
export interface JobLauncher {
  /** `"process"`, `"docker"`, ... */
  readonly name: string
  readonly capabilities: Capabilities
  /** Checks the backend's own `launcher_spec` mode (and only it) before anything is registered. */
  readonly validate?: (meta: JobMeta, site: string) => Effect.Effect<void, InvalidJobMeta>
  /**
   * Launches the job. Whatever it acquires belongs to `Scope` (the job's scope,
   * closed after the outcome is read, or when the launch is interrupted).
   */
  readonly launch: (
    request: LaunchRequest
  ) => Effect.Effect<JobHandle, LaunchFailed | ImageNotFound | BackendUnavailable, Scope.Scope>
  /** Jobs a previous parent of `instanceId` left behind. */
  readonly recover?: (instanceId: string) => Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable>
  /**
   * True when jobs run on this host's `node` and load the worker runtime through
   * `workerRuntime.nodePath` (the process backend): the engine then makes a V8
   * code cache of the runtime there (option `workerCodeCache`).
   */
  readonly workerRuntimeOnHost?: boolean
  /**
   * The user the jobs run as, when it is not the parent's (a container user):
   * the engine makes each job's socket directory and socket theirs.
   */
  readonly runAs?: { readonly uid: number; readonly gid: number }
}

/** Resolves `{workspace}`, `{jobDir}`, `{appDir}`, `{jobId}`, `{startup}` in an argv template. */
export const resolveCommand = (
  template: ReadonlyArray<string>,
  values: { readonly workspace: string; readonly jobDir: string; readonly appDir: string; readonly jobId: string; readonly startup: string }
): ReadonlyArray<string> =>
  template.map((arg) =>
    arg.replace(/\{(workspace|jobDir|appDir|jobId|startup)\}/g, (_, key: keyof typeof values) => values[key])
  )
