/** Terminating a job's process group: SIGTERM, then SIGKILL after the kill timeout. */
import { Duration, Effect, Ref } from "effect"
import type { TerminateOptions } from "./core.js"
import { signalGroup } from "./group.js"
import type { ProcessGroup } from "./group.js"

/**
 * A handle's `terminate`: SIGTERM to the whole group once (later calls do
 * nothing), then SIGKILL after `killAfter` (the request's, else `defaultKillAfter`)
 * on a fiber `fork` places.
 */
export const makeTerminate = (
  group: ProcessGroup,
  defaultKillAfter: Duration.DurationInput,
  terminating: Ref.Ref<boolean>,
  fork: (escalation: Effect.Effect<void>) => Effect.Effect<unknown>
) =>
(options?: TerminateOptions): Effect.Effect<void> =>
  Effect.flatMap(Ref.getAndSet(terminating, true), (already) => {
    if (already) return Effect.void
    const killAfter = Duration.decode(options?.killAfter ?? defaultKillAfter)
    return Effect.sync(() => signalGroup(group, "SIGTERM")).pipe(
      Effect.zipRight(
        fork(Effect.sleep(killAfter).pipe(Effect.zipRight(Effect.sync(() => signalGroup(group, "SIGKILL")))))
      ),
      Effect.asVoid
    )
  })
