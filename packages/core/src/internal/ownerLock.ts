/**
 * The instance owner lock: `<runtimeDir>/owner.json` holds the owning parent's
 * pid, start time and boot id. A live owner makes a second parent fail with
 * `InstanceInUse`; a dead owner's lock is taken over.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { InstanceInUse } from "../Errors.js"
import { bootId, isAlive, processStartTime } from "./proc.js"

interface OwnerRecord {
  readonly pid: number
  readonly startTime: string | undefined
  readonly bootId: string
}

const readOwner = (file: string): OwnerRecord | undefined => {
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    try {
      const v = JSON.parse(fs.readFileSync(fd, "utf8")) as OwnerRecord
      return typeof v.pid === "number" ? v : undefined
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

const ownerIsLive = (owner: OwnerRecord): boolean =>
  owner.bootId === bootId() && isAlive(owner.pid) && processStartTime(owner.pid) === owner.startTime

/**
 * Takes the instance's owner lock for the scope's lifetime. Returns whether a
 * previous (dead) owner's lock was found, i.e. whether there may be orphans.
 */
export const acquireOwnerLock = (runtimeDir: string, instanceId: string): Effect.Effect<boolean, InstanceInUse, import("effect").Scope.Scope> => {
  const file = path.join(runtimeDir, "owner.json")
  const me: OwnerRecord = { pid: process.pid, startTime: processStartTime(process.pid), bootId: bootId() }
  const take = Effect.suspend(() => {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        fs.writeFileSync(file, JSON.stringify(me), { flag: "wx", mode: 0o600 })
        return Effect.succeed(attempt > 0)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") return Effect.die(e)
        const owner = readOwner(file)
        if (owner && ownerIsLive(owner)) return Effect.fail(new InstanceInUse({ instanceId, ownerPid: owner.pid }))
        try {
          fs.unlinkSync(file)
        } catch {
          // another parent may have removed it first: retry
        }
      }
    }
    return Effect.fail(new InstanceInUse({ instanceId, ownerPid: readOwner(file)?.pid ?? -1 }))
  })
  const release = () => {
    const owner = readOwner(file)
    if (owner && owner.pid === me.pid && owner.startTime === me.startTime) {
      try {
        fs.unlinkSync(file)
      } catch {
        // already gone
      }
    }
  }
  // a parent that exits without closing the executor leaves no lock of a dead owner behind
  return Effect.acquireRelease(
    Effect.tap(take, () => Effect.sync(() => process.on("exit", release))),
    () =>
      Effect.sync(() => {
        process.off("exit", release)
        release()
      })
  )
}
