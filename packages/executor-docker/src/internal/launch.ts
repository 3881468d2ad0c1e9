/**
 * A job's launch: the spec checked, the image present (or pulled when the
 * policy allows), the mounts checked, the job tree handed to the container
 * user, the log file opened, then the container created, attached and
 * started, each part released with the job's scope.
 *
 * @internal
 */
import { ImageNotFound, LaunchFailed } from "@flexec/core"
import type { BackendUnavailable, JobHandle, LaunchRequest } from "@flexec/core"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { DockerClientService, DockerError } from "../DockerClient.js"
import { chownTree, containerBody } from "./container.js"
import { describe, isNotFound } from "./errors.js"
import { removeOnExit } from "./exitRemove.js"
import { makeHandle } from "./handle.js"
import { makeLogSink, openLogFile, outputEnded } from "./logSink.js"
import type { LauncherSettings } from "./options.js"
import { checkJobSpec, containerName, launcherOwnedKeys, ownedKeysIn } from "./spec.js"

const realpathOr = (p: string): string => {
  try {
    return fs.realpathSync(p)
  } catch {
    return path.resolve(p)
  }
}

/** The launcher's `launch` over `client`. */
export const makeLaunch = (
  settings: LauncherSettings,
  client: DockerClientService
): ((req: LaunchRequest) => Effect.Effect<JobHandle, LaunchFailed | ImageNotFound | BackendUnavailable, Scope.Scope>) => {
  const { options, parsedUser, runAs, isAllowed, notAllowed, pullPolicy, network, maxLogBytes, workerModulePath, workerNodePath } = settings

  return (req: LaunchRequest): Effect.Effect<JobHandle, LaunchFailed | ImageNotFound | BackendUnavailable, Scope.Scope> =>
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

      return yield* makeHandle(client, {
        jobId,
        id,
        name,
        killTimeout: req.killTimeout,
        // The output is complete (or given up on) before the exit is reported.
        afterExit: outputEnded(logsDone),
        logs: sink.logs
      })
    })
}
