/**
 * Checks and encodes what the worker sends. Internal to the worker runtime.
 */
import { encodePayload, type Encoding } from "../internal/codec.js"
import type { HeaderValue } from "./types.js"

/** Why `payload` cannot travel, or `undefined` when it can. */
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

/** Encodes a payload after checking it; throws a `TypeError` naming the problem. */
export const encodeChecked = (payload: unknown): { enc: Encoding; bytes: Uint8Array } => {
  const problem = payloadProblem(payload)
  if (problem !== undefined) throw new TypeError(problem)
  return encodePayload(payload)
}

/** Copies headers, keeping string, number and boolean values. */
export const cleanHeaders = (headers: Readonly<Record<string, unknown>> | undefined): Record<string, HeaderValue> => {
  const out: Record<string, HeaderValue> = {}
  if (headers) {
    for (const key of Object.keys(headers)) {
      const value = headers[key]
      if (typeof value === "string" || typeof value === "boolean") out[key] = value
      else if (typeof value === "number" && Number.isFinite(value)) out[key] = value
    }
  }
  return out
}

/** A null-prototype copy of received headers. */
export const receivedHeaders = (headers: Readonly<Record<string, HeaderValue>> | undefined): Record<string, HeaderValue> => {
  const out: Record<string, HeaderValue> = Object.create(null)
  if (headers) for (const key of Object.keys(headers)) out[key] = headers[key]!
  return out
}
