/**
 * Messages exchanged between the parent and a job.
 *
 * @since 0.1.0
 */

/** A JSON value. */
export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

/** A user header value. */
export type HeaderValue = string | number | boolean

/** User headers: a null-prototype record. */
export type Headers = Readonly<Record<string, HeaderValue>>

/** A message payload: raw bytes, a JSON value, or nothing. */
export type Payload = Uint8Array | Json | undefined

/** A message: user headers and a payload. */
export interface Message {
  readonly headers: Headers
  readonly payload: Payload
}

/** Builds a message; `headers` are copied into a null-prototype record. */
export const make = (payload?: Payload, headers?: Readonly<Record<string, HeaderValue>>): Message => ({
  headers: makeHeaders(headers),
  payload
})

/** Copies headers into a null-prototype record, keeping only string, number and boolean values. */
export const makeHeaders = (headers?: Readonly<Record<string, unknown>>): Headers => {
  const out: Record<string, HeaderValue> = Object.create(null)
  if (headers) {
    for (const key of Object.keys(headers)) {
      const value = headers[key]
      if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") out[key] = value
    }
  }
  return out
}

/**
 * Why `payload` cannot travel, or `undefined` when it can: a `Uint8Array` nested
 * in JSON, a non-finite number, a function or a circular reference cannot.
 * (Shared with the worker runtime: this module imports nothing.)
 */
export const payloadProblem = (payload: unknown): string | undefined => {
  if (payload === undefined || payload instanceof Uint8Array || plainJson(payload, 0)) return undefined
  const stack = new Set<object>()
  // the path to a problem is built only once there is one: `walk` returns the
  // problem, and each level on the way back prepends its key
  const walk = (value: unknown): Problem | undefined => {
    switch (typeof value) {
      case "string":
      case "boolean":
        return undefined
      case "number":
        return Number.isFinite(value) ? undefined : { path: [], what: "is not a finite number" }
      case "object":
        break
      default:
        return { path: [], what: `is a ${typeof value}, which JSON cannot carry` }
    }
    if (value === null) return undefined
    if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
      return { path: [], what: "is binary inside a JSON payload; send bytes as the whole payload" }
    }
    if (stack.has(value)) return { path: [], what: "is a circular reference" }
    if (typeof (value as { toJSON?: unknown }).toJSON === "function") return undefined
    stack.add(value)
    try {
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const problem = walk(value[i])
          if (problem) {
            problem.path.push(`[${i}]`)
            return problem
          }
        }
      } else {
        for (const key of Object.keys(value)) {
          const v = (value as Record<string, unknown>)[key]
          if (v === undefined) continue
          const problem = walk(v)
          if (problem) {
            problem.path.push(`.${key}`)
            return problem
          }
        }
      }
      return undefined
    } finally {
      stack.delete(value)
    }
  }
  const problem = walk(payload)
  return problem === undefined ? undefined : `payload${problem.path.reverse().join("")} ${problem.what}`
}

/** Depth beyond which `plainJson` gives up (so a cycle ends it), leaving the value to the full walk. */
const PLAIN_DEPTH = 32

/**
 * The common case, without allocating: strings, finite numbers, booleans,
 * null, and arrays and plain objects of them, at most `PLAIN_DEPTH` deep.
 * False means "not sure": the full walk then finds the problem, if any.
 */
const plainJson = (value: unknown, depth: number): boolean => {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true
    case "number":
      return Number.isFinite(value)
    case "object": {
      if (value === null) return true
      if (depth >= PLAIN_DEPTH) return false
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!plainJson(value[i], depth + 1)) return false
        return true
      }
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) return false
      for (const key in value) {
        const v = (value as Record<string, unknown>)[key]
        if (v !== undefined && !plainJson(v, depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

/** Where `payloadProblem` found a value JSON cannot carry: the keys from the inside out. */
interface Problem {
  readonly path: Array<string>
  readonly what: string
}
