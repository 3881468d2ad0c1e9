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
  if (payload === undefined || payload instanceof Uint8Array) return undefined
  const stack = new Set<object>()
  const walk = (value: unknown, path: string): string | undefined => {
    switch (typeof value) {
      case "string":
      case "boolean":
        return undefined
      case "number":
        return Number.isFinite(value) ? undefined : `${path} is not a finite number`
      case "object":
        break
      default:
        return `${path} is a ${typeof value}, which JSON cannot carry`
    }
    if (value === null) return undefined
    if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
      return `${path} is binary inside a JSON payload; send bytes as the whole payload`
    }
    if (stack.has(value)) return `${path} is a circular reference`
    if (typeof (value as { toJSON?: unknown }).toJSON === "function") return undefined
    stack.add(value)
    try {
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const problem = walk(value[i], `${path}[${i}]`)
          if (problem) return problem
        }
      } else {
        for (const key of Object.keys(value)) {
          const v = (value as Record<string, unknown>)[key]
          if (v === undefined) continue
          const problem = walk(v, `${path}.${key}`)
          if (problem) return problem
        }
      }
      return undefined
    } finally {
      stack.delete(value)
    }
  }
  return walk(payload, "payload")
}
