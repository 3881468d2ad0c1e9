/**
 * Random bytes for tokens and names, drawn from a pool filled by the CSPRNG a
 * few KiB at a time (as Node's `crypto.randomUUID` does). One
 * `crypto.randomBytes` call costs 10–200 µs on the way to a job's spawn; a
 * slice of the pool costs nothing. Bytes are handed out once, never reused.
 */
import { randomFillSync } from "node:crypto"

const POOL_BYTES = 4096
const pool = Buffer.alloc(POOL_BYTES)
let used = POOL_BYTES

/** `bytes` fresh random bytes (a copy: the pool's bytes are handed out once). */
export const randomBytes = (bytes: number): Buffer => {
  if (bytes > POOL_BYTES) return randomFillSync(Buffer.alloc(bytes))
  if (used + bytes > POOL_BYTES) {
    randomFillSync(pool)
    used = 0
  }
  const out = Buffer.from(pool.subarray(used, used + bytes))
  // the handed-out bytes do not stay in the pool
  pool.fill(0, used, used + bytes)
  used += bytes
  return out
}

/** `bytes` fresh random bytes as base64url text. */
export const randomToken = (bytes: number): string => randomBytes(bytes).toString("base64url")
