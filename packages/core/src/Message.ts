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

/** Why `payload` cannot travel, or `undefined` when it can (a `Uint8Array` nested in JSON cannot). */
export const payloadProblem = (payload: unknown): string | undefined => {
  if (payload === undefined || payload instanceof Uint8Array) return undefined
  const seen = new Set<unknown>()
  const walk = (value: unknown, path: string): string | undefined => {
    if (value === null || typeof value === "string" || typeof value === "boolean") return undefined
    if (typeof value === "number") return Number.isFinite(value) ? undefined : `${path} is not a finite number`
    if (value instanceof Uint8Array || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
      return `${path} is binary inside a JSON payload; send bytes as the whole payload`
    }
    if (typeof value !== "object") return `${path} is a ${typeof value}, which JSON cannot carry`
    if (seen.has(value)) return `${path} is a circular reference`
    seen.add(value)
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const p = walk(value[i], `${path}[${i}]`)
        if (p) return p
      }
    } else {
      for (const key of Object.keys(value)) {
        const p = walk((value as Record<string, unknown>)[key], `${path}.${key}`)
        if (p) return p
      }
    }
    seen.delete(value)
    return undefined
  }
  return walk(payload, "payload")
}
