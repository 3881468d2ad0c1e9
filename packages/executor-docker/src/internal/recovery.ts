/**
 * Recovery: the containers of an instance found again by their labels, each
 * given a handle (and, while it runs, its output re-attached), for a new
 * parent to adopt or reap.
 *
 * @internal
 */
import { decodeJobId } from "@flexec/core"
import type { BackendUnavailable, JobHandle, LaunchRequest, RecoveredJob } from "@flexec/core"
import { Duration, Effect, Option } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { ContainerState, DockerClientService } from "../DockerClient.js"
import { Labels } from "./container.js"
import { asUnavailable, describe, orNotFound } from "./errors.js"
import { makeHandle } from "./handle.js"
import { makeLogSink, openLogFile, outputEnded } from "./logSink.js"
import type { LauncherSettings } from "./options.js"
import { containerPaths } from "./spec.js"

/** The launcher's `recover` over `client`. */
export const makeRecover = (
  settings: LauncherSettings,
  client: DockerClientService
): ((instanceId: string) => Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable>) => {
  const { maxLogBytes, apiTimeout } = settings

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
        finish: outputEnded(done).pipe(
          Effect.zipRight(Effect.sync(() => {
            attachment.close()
            finishOutput()
          }))
        )
      }
    })

  return (instanceId: string): Effect.Effect<ReadonlyArray<RecoveredJob>, BackendUnavailable> =>
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
        const name = inspected.value.name
        const output = inspected.value.running ? yield* reattach(jobId.value, inspected.value) : undefined
        const handle = yield* makeHandle(client, {
          jobId: jobId.value,
          id: c.id,
          name,
          killTimeout: Duration.seconds(5),
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
}
