/**
 * What the groups ask of a job and check of what came out: bounded waits, the
 * recorded requests and handles, echo and `conformance-job` topics, exit
 * records, the job's processes.
 *
 * @internal
 *
 * @since 0.1.0
 */
import type { ExecutorEvent, JobExit, JobHandle, LaunchRequest } from "@flexec/core"
import { Message } from "@flexec/core"
import { Duration, Effect } from "effect"
import * as path from "node:path"
import { fixtureFacts } from "../../fixtures.js"
import type { Harness } from "../harness.js"
import { pollUntil } from "../pollUntil.js"
import { processesOfJob } from "../processes.js"
import { conformanceEchoFixture, conformanceTopics } from "../program.js"

/** Fails with `message` (naming what broke) unless `effect` succeeds within `ms`. */
export const within = <A, E, R>(ms: number, message: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Error, R> =>
  Effect.timeoutFail(effect, { duration: Duration.millis(ms), onTimeout: () => new Error(`${message} (waited ${ms} ms)`) })

/** `awaitCompletion`, bounded: a backend whose wait never resolves fails here, naming it. */
export const completion = (h: Harness, jobId: string, ms = h.common.timeouts.eventMs) =>
  within(ms, `the completion of ${jobId} was not reported: the handle's wait did not resolve after the job ended`, h.executor.awaitCompletion(jobId))

/** Fails with `message` when `ok` is false (a plain assertion whose message names the promise's detail). */
export const check = (ok: boolean, message: string): Effect.Effect<void, Error> => (ok ? Effect.void : Effect.fail(new Error(message)))

/** A job's exit record, not OOM-killed (`lost` when given). */
export const exitOf = (code: number | null, signal: string | null, lost = false): JobExit => ({ code, signal, oomKilled: false, lost })

/**
 * The truthful outcomes of a job killed behind the backend's back: lost (no
 * record of its end), or the death a scheduler really recorded (a signal, or a
 * non-zero code). Never a clean exit: code 0 without a signal is fabricated.
 */
export const isTruthfulDeath = (exit: JobExit): boolean =>
  exit.lost
    ? exit.code === null && exit.signal === null
    : exit.signal !== null ? exit.code === null : exit.code !== null && exit.code !== 0

/** A value as JSON, for a failure message. */
export const show = (value: unknown) => JSON.stringify(value)

/** The request the launcher got for `jobId` (the suite records it). */
export const requestOf = (h: Harness, jobId: string): LaunchRequest => {
  const request = h.requests.get(jobId)
  if (request === undefined) throw new Error(`suite: no launch request recorded for ${jobId}`)
  return request
}

/** The handle the launcher returned for `jobId`. */
export const handleOf = (h: Harness, jobId: string): JobHandle => {
  const handle = h.handles.get(jobId)
  if (handle === undefined) throw new Error(`suite: no handle recorded for ${jobId}`)
  return handle
}

/** Polls until no OS process of `jobId` is left, failing with `what` and the pids. */
export const treeGone = (h: Harness, jobId: string, what: string) =>
  pollUntil(what, () => processesOfJob(jobId).length === 0, h.common.timeouts.processGoneMs).pipe(
    Effect.mapError(() => new Error(`${what}: process(es) ${processesOfJob(jobId).join(", ")} of the job still run ${h.common.timeouts.processGoneMs} ms after its completion`))
  )

/** Sends a `conformance-job` topic and returns the reply's payload. */
export const ask = (h: Harness, jobId: string, topic: string, timeout?: number) =>
  echo(h, jobId, {}, topic, timeout).pipe(Effect.map((m) => m.payload))

/** A file in the job's directory of the workspace. */
export const jobFile = (h: Harness, jobId: string, name: string) => path.join(h.workspace, jobId, name)

/** The tags of the events of `jobId`, in order. */
export const eventsOf = (h: Harness, jobId: string): ReadonlyArray<ExecutorEvent["_tag"]> =>
  h.seen.filter((e) => e.jobId === jobId).map((e) => e._tag)

/** Waits for the `Completed` event of `jobId` and returns its outcome. */
export const completedOf = (h: Harness, jobId: string) =>
  h.waitEvent("Completed", jobId).pipe(Effect.map((e) => (e as Extract<ExecutorEvent, { _tag: "Completed" }>).outcome))

/** `n` bytes of a fixed pattern. */
export const bytesOf = (n: number): Uint8Array => {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + 7) & 0xff
  return out
}

/** Whether `a` is a `Uint8Array` holding exactly the bytes of `b`. */
export const sameBytes = (a: unknown, b: Uint8Array): boolean =>
  a instanceof Uint8Array && a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b)) === 0

/** Starts the echo fixture and waits for its `Started`; returns its job id. */
export const startedEcho = (h: Harness) =>
  Effect.gen(function* () {
    const jobId = yield* h.start(conformanceEchoFixture)
    yield* h.waitEvent("Started", jobId)
    return jobId
  })

/** Sends `payload` on the fixtures' channel (topic `echo` unless told) and returns the reply. */
export const echo = (h: Harness, jobId: string, payload: Message.Payload, topic: string = conformanceTopics.echo, timeout?: number): ReturnType<Harness["executor"]["sendToJob"]> =>
  h.executor.sendToJob({
    jobId,
    channel: fixtureFacts.channel,
    topic,
    message: Message.make(payload),
    ...(timeout === undefined ? {} : { timeout: `${timeout} millis` as const })
  })
