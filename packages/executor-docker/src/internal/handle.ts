/**
 * The handle of a job's container: `wait` (the engine's wait, the inspect
 * having the last word), `poll`, `terminate` (stop: SIGTERM, then SIGKILL
 * after the grace period) and `logs`; the exit is recorded once.
 *
 * @internal
 */
import type { BackendUnavailable, JobExit, JobHandle, LaunchRequest, TerminateOptions } from "@flexec/core"
import { Duration, Effect, Option, Ref } from "effect"
import type { ContainerState, DockerClientService } from "../DockerClient.js"
import { exitOfState, lostExit } from "./container.js"
import { asUnavailable, isNotFound, orNotFound } from "./errors.js"

/** What a container's handle is made of. */
export interface HandleParams {
  readonly jobId: LaunchRequest["jobId"]
  /** The container's id. */
  readonly id: string
  /** The container's name. */
  readonly name: string
  /** The grace period of `terminate` when it is given none. */
  readonly killTimeout: Duration.Duration
  /** Runs once, when the exit is first known. */
  readonly afterExit: Effect.Effect<void>
  readonly logs?: JobHandle["logs"]
}

/** Waits for the container's exit; `afterExit` runs once the exit is known. */
export const makeHandle = (client: DockerClientService, params: HandleParams): Effect.Effect<JobHandle> =>
  Effect.map(Ref.make(Option.none<JobExit>()), (exitRef): JobHandle => {
    const { id } = params
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
  })
