/**
 * The job's configuration, read from its environment (`FLEXEC_*`), the secrets
 * deleted from it first. Internal to the worker runtime.
 */
import { ConfigError, messageOf } from "./errors.js"
import type { Credentials } from "./types.js"

/** Default of `FLEXEC_RECONNECT_MS`: how long the worker tries to (re)connect. */
export const DEFAULT_RECONNECT_MS = 10_000
/** Default of `FLEXEC_ABORT_GRACE_MS`: how long `run` has to return after the worker aborted itself. */
export const DEFAULT_ABORT_GRACE_MS = 2_000

/** Environment variables the runtime deletes once read. */
export const SECRET_ENV = [
  "FLEXEC_CHANNEL_TOKEN",
  "FLEXEC_CHANNEL_CERT_SHA256",
  "FLEXEC_JOB_AUTH_TOKEN",
  "FLEXEC_JOB_TOKEN_SIGNATURE",
  "FLEXEC_JOB_SSID"
] as const

/** The job's configuration. */
export interface Config {
  readonly url: string
  readonly token: string
  /** The pinned SHA-256 of the parent's TLS certificate (lowercase hex), for `tls://`. */
  readonly certSha256: string | undefined
  readonly jobId: string
  readonly clientName: string | undefined
  readonly workspace: string | undefined
  readonly jobDir: string | undefined
  readonly startupDir: string | undefined
  readonly set: Readonly<Record<string, unknown>>
  readonly credentials: Credentials
  readonly reconnectMs: number
  readonly graceMs: number
}

const positiveInt = (value: string | undefined, name: string, fallback: number): number => {
  if (value === undefined || value === "") return fallback
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n <= 0) throw new ConfigError(`${name} must be a positive integer (milliseconds), got ${JSON.stringify(value)}`)
  return n
}

/** Reads the job's configuration; the secrets are deleted from `env` first, whatever follows. */
export const readConfig = (env: Record<string, string | undefined>): Config => {
  const secrets: Partial<Record<(typeof SECRET_ENV)[number], string>> = {}
  for (const name of SECRET_ENV) {
    const value = env[name]
    delete env[name]
    if (value !== undefined && value !== "") secrets[name] = value
  }
  const text = (name: string): string | undefined => {
    const value = env[name]
    return value === undefined || value === "" ? undefined : value
  }
  const url = text("FLEXEC_PARENT_URL")
  if (url === undefined) {
    throw new ConfigError("FLEXEC_PARENT_URL is not set: a flexec job must be started by a flexec executor")
  }
  const token = secrets.FLEXEC_CHANNEL_TOKEN
  if (token === undefined) {
    throw new ConfigError("FLEXEC_CHANNEL_TOKEN is not set: a flexec job must be started by a flexec executor")
  }
  const pin = secrets.FLEXEC_CHANNEL_CERT_SHA256
  if (pin !== undefined && !/^[0-9A-Fa-f]{64}$/.test(pin)) {
    throw new ConfigError("FLEXEC_CHANNEL_CERT_SHA256 must be 64 hex digits (the SHA-256 of the parent's certificate)")
  }
  const jobId = text("FLEXEC_JOB_ID")
  if (jobId === undefined) throw new ConfigError("FLEXEC_JOB_ID is not set")
  let set: Record<string, unknown> = {}
  const setText = text("FLEXEC_SET")
  if (setText !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(setText)
    } catch (error) {
      throw new ConfigError(`FLEXEC_SET is not valid JSON: ${messageOf(error)}`)
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError("FLEXEC_SET must be a JSON object")
    }
    set = parsed as Record<string, unknown>
  }
  const credentials: { token?: string; tokenSignature?: string; ssid?: string } = {}
  if (secrets.FLEXEC_JOB_AUTH_TOKEN !== undefined) credentials.token = secrets.FLEXEC_JOB_AUTH_TOKEN
  if (secrets.FLEXEC_JOB_TOKEN_SIGNATURE !== undefined) credentials.tokenSignature = secrets.FLEXEC_JOB_TOKEN_SIGNATURE
  if (secrets.FLEXEC_JOB_SSID !== undefined) credentials.ssid = secrets.FLEXEC_JOB_SSID
  return {
    url,
    token,
    certSha256: pin?.toLowerCase(),
    jobId,
    clientName: text("FLEXEC_CLIENT_NAME"),
    workspace: text("FLEXEC_WORKSPACE"),
    jobDir: text("FLEXEC_JOB_DIR"),
    startupDir: text("FLEXEC_STARTUP_DIR"),
    set: Object.freeze(set),
    credentials: Object.freeze(credentials),
    reconnectMs: positiveInt(text("FLEXEC_RECONNECT_MS"), "FLEXEC_RECONNECT_MS", DEFAULT_RECONNECT_MS),
    graceMs: positiveInt(text("FLEXEC_ABORT_GRACE_MS"), "FLEXEC_ABORT_GRACE_MS", DEFAULT_ABORT_GRACE_MS)
  }
}
