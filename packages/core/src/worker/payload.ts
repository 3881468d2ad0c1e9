/**
 * Checks and encodes what the worker sends. Internal to the worker runtime.
 */
import { encodePayloadBody, type Encoding } from "../protocol/Frame.js"
import { payloadProblem } from "../Message.js"
import type { HeaderValue } from "./types.js"

export { payloadProblem }

/** Encodes a payload after checking it; throws a `TypeError` naming the problem. */
export const encodeChecked = (payload: unknown): { enc: Encoding; body: Uint8Array | string } => {
  const problem = payloadProblem(payload)
  if (problem !== undefined) throw new TypeError(problem)
  return encodePayloadBody(payload)
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
