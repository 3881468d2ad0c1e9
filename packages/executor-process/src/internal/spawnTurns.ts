/**
 * Spawns take turns. `spawn` blocks the event loop while the parent forks
 * (20–150 ms each on a loaded 2-vCPU VM), so a launcher's concurrent launches
 * spawn one per macrotask turn, in arrival order, and the sockets of jobs
 * already spawned (their hellos) are served between two spawns. Without this,
 * 200 concurrent `startApp` calls spawned in one uninterrupted run of
 * microtasks (16 s, measured by bench/ scale) and half the workers gave up
 * waiting for `hello_ok`. Each launcher has its own turns.
 *
 * @internal
 */
import { Effect } from "effect"

/**
 * A launcher's turns: the Effect waits for this launch's turn to spawn — at
 * once for a lone launch, else one macrotask turn after the previous spawn.
 * Plain callbacks, not a semaphore: the lone launch (the common case) takes no
 * Effect step.
 */
export const makeSpawnTurns = (): Effect.Effect<void> => {
  /** True from a spawn until the next macrotask turn, when the next waiting spawn goes. */
  let spawnedThisTurn = false
  /** Launches waiting for their turn to spawn, in arrival order. */
  const waiting: Array<() => void> = []
  /** Takes this macrotask turn for a spawn; the turn after it lets the next waiting launch go. */
  const takeTurn = (): void => {
    spawnedThisTurn = true
    setImmediate(() => {
      spawnedThisTurn = false
      const next = waiting.shift()
      if (next !== undefined) {
        takeTurn()
        next()
      }
    })
  }
  return Effect.suspend(() => {
    if (!spawnedThisTurn && waiting.length === 0) {
      takeTurn()
      return Effect.void
    }
    return Effect.async<void>((resume) => {
      const go = () => resume(Effect.void)
      waiting.push(go)
      // an interrupted launch leaves the queue: it takes no turn
      return Effect.sync(() => {
        const at = waiting.indexOf(go)
        if (at >= 0) waiting.splice(at, 1)
      })
    })
  })
}
