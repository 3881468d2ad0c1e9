/**
 * Requests and status reads without a fiber, for callers outside Effect (the
 * Promise facade). A job channel made by `openJobChannel` carries
 * `RequestNow`; the engine's service carries `SendNow` and `StatusNow`. None
 * is part of the public interfaces: an executor or channel made another way
 * has none, and the facade then runs the Effect.
 */
import type { ChannelRequest, RequestOutcome } from "../protocol/Request.js"
import type { SendToJobParams } from "../ClientExecutor.js"
import type { ClientStatus } from "../Status.js"

export type { RequestOutcome } from "../protocol/Request.js"

/** The key of a channel's fiberless request. */
export const RequestNow: unique symbol = Symbol.for("@flexec/core/RequestNow")

/** Sends `request`; `done` gets the outcome. False (and nothing sent) when it cannot go this way. */
export type RequestNowFn = (request: ChannelRequest, done: (outcome: RequestOutcome) => void) => boolean

/** The key of an executor service's fiberless `sendToJob`. */
export const SendNow: unique symbol = Symbol.for("@flexec/core/SendNow")

/** `sendToJob` without a fiber; false (and nothing sent) when it cannot go this way: use the Effect. */
export type SendNowFn = (params: SendToJobParams, done: (outcome: RequestOutcome) => void) => boolean

/** The channel's fiberless request, when it has one. */
export const requestNowOf = (channel: object): RequestNowFn | undefined =>
  (channel as { readonly [RequestNow]?: RequestNowFn })[RequestNow]

/** The service's fiberless `sendToJob`, when it has one. */
export const sendNowOf = (service: object): SendNowFn | undefined => (service as { readonly [SendNow]?: SendNowFn })[SendNow]

/** The key of an executor service's fiberless status read. */
export const StatusNow: unique symbol = Symbol.for("@flexec/core/StatusNow")

/** A known job's status; `undefined` when the id is not known (the Effect then says what it is). */
export type StatusNowFn = (jobId: string) => ClientStatus | undefined

/** The service's fiberless status read, when it has one. */
export const statusNowOf = (service: object): StatusNowFn | undefined =>
  (service as { readonly [StatusNow]?: StatusNowFn })[StatusNow]
