/**
 * The Docker launcher's options resolved once, when the launcher is made: the
 * defaults filled in and the container user and image patterns parsed.
 *
 * @internal
 */
import { Duration } from "effect"
import type { DockerLauncherOptions, PullPolicy } from "../DockerJobLauncher.js"
import { containerPaths, imageMatcher, parseContainerUser } from "./spec.js"

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
