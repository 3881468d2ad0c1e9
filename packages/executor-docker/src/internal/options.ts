/**
 * The Docker launcher's options, as the site gives them (public, through
 * `DockerJobLauncher.ts`) and as resolved once when the launcher is made: the
 * defaults filled in, the container user and the image patterns parsed.
 *
 * @internal
 */
import { Duration } from "effect"
import { containerPaths, imageMatcher, parseContainerUser } from "./spec.js"

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

/** The options as the launch, the validation and the recovery read them. */
export interface LauncherSettings {
  readonly options: DockerLauncherOptions
  /** The container user, or why `containerUser` is wrong (every launch fails with it). */
  readonly parsedUser: ReturnType<typeof parseContainerUser>
  /** The container user (the parent's when `containerUser` is wrong). */
  readonly runAs: { readonly uid: number; readonly gid: number }
  readonly isAllowed: (image: string) => boolean
  /** Why `image` is refused by `allowedImages`. */
  readonly notAllowed: (image: string) => string
  readonly pullPolicy: PullPolicy
  readonly network: string
  readonly maxLogBytes: number
  readonly workerModulePath: string
  readonly workerNodePath: string
  readonly apiTimeout: Duration.Duration
}

/** Fills in the defaults of `options`. */
export const resolveSettings = (options: DockerLauncherOptions): LauncherSettings => {
  const parsedUser = parseContainerUser(options.containerUser)
  return {
    options,
    parsedUser,
    runAs: typeof parsedUser === "string" ? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 } : parsedUser,
    isAllowed: imageMatcher(options.allowedImages),
    notAllowed: (image) =>
      `image '${image}' is not allowed by the site (allowedImages: ${(options.allowedImages ?? []).join(", ") || "none"})`,
    pullPolicy: options.pullPolicy ?? "never",
    network: options.network ?? "none",
    maxLogBytes: options.maxLogBytes ?? 30 * 1024 * 1024,
    workerModulePath: options.workerModulePath ?? containerPaths.workerModulePath,
    workerNodePath: options.workerNodePath ?? containerPaths.workerNodePath,
    apiTimeout: Duration.millis(options.apiTimeoutMs ?? 30_000)
  }
}
