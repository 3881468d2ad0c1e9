/**
 * The errors of the worker runtime. Dependency-free: this file is bundled into
 * `@flexec/core/worker`.
 *
 * The ESM and the CommonJS builds of the runtime are two copies of these
 * classes, so the runtime recognises its errors by a global brand
 * (`Symbol.for`), not by `instanceof`: a `ConfigError` thrown from a module
 * that loaded the other build still exits 103.
 */

const configBrand: unique symbol = Symbol.for("@flexec/core/worker/ConfigError") as never
const unsafeBrand: unique symbol = Symbol.for("@flexec/core/worker/UnsafeComponentError") as never
const channelBrand: unique symbol = Symbol.for("@flexec/core/worker/ChannelError") as never

/**
 * The job's configuration is wrong. Thrown from `run` (or found by the runtime
 * itself, e.g. a missing `FLEXEC_PARENT_URL`), it makes the worker exit 103
 * (`JobReturnCode.ConfigError`).
 */
export class ConfigError extends Error {
  /** @internal */
  readonly [configBrand] = true
  constructor(message: string, options?: { readonly cause?: unknown }) {
    super(message, options)
    this.name = "ConfigError"
  }
}

/**
 * The job tried to use a component the site does not authorize (NVFlare's
 * `ComponentNotAuthorized`). Thrown from `run`, it makes the worker exit 102
 * (`JobReturnCode.UnsafeComponent`).
 */
export class UnsafeComponentError extends Error {
  /** @internal */
  readonly [unsafeBrand] = true
  constructor(message: string, options?: { readonly cause?: unknown }) {
    super(message, options)
    this.name = "UnsafeComponentError"
  }
}

/**
 * Message-level return codes (the values of `ReturnCode` in `@flexec/core`).
 */
export type ReturnCodeName =
  | "ok"
  | "timeout"
  | "invalid_target"
  | "target_unreachable"
  | "comm_error"
  | "msg_too_big"
  | "invalid_request"
  | "process_exception"
  | "service_unavailable"
  | "abort_run"
  | "unauthenticated"

/**
 * How `ctx.request` fails: `code` is the return code — `timeout` (no reply in
 * time), `target_unreachable` (not connected, or the connection dropped while
 * waiting), `msg_too_big` (refused locally, or the parent refused it),
 * `invalid_request` (the parent has no handler for that channel/topic, or the
 * message cannot be encoded), `process_exception` (the parent's handler failed;
 * `detail` is its payload), or any other code the parent answered.
 */
export class ChannelError extends Error {
  /** @internal */
  readonly [channelBrand] = true
  /** The return code. */
  readonly code: ReturnCodeName | (string & {})
  /** The reply's payload, when the parent sent one (e.g. the reason of a `process_exception`). */
  readonly detail: unknown
  constructor(code: ReturnCodeName | (string & {}), message: string, detail?: unknown) {
    super(message)
    this.name = "ChannelError"
    this.code = code
    this.detail = detail
  }
}

const branded = (value: unknown, brand: symbol): boolean =>
  typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[brand] === true

/** True for a `ConfigError` from either build of the runtime. */
export const isConfigError = (value: unknown): value is ConfigError => branded(value, configBrand)

/** True for an `UnsafeComponentError` from either build of the runtime. */
export const isUnsafeComponentError = (value: unknown): value is UnsafeComponentError => branded(value, unsafeBrand)

/** True for a `ChannelError` from either build of the runtime. */
export const isChannelError = (value: unknown): value is ChannelError => branded(value, channelBrand)

/** The message of anything thrown. */
export const messageOf = (error: unknown): string => {
  if (error instanceof Error) return error.message || error.name
  if (typeof error === "string") return error
  try {
    return String(error)
  } catch {
    return "unknown error"
  }
}
