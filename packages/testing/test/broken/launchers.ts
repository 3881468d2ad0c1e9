/**
 * Deliberately broken launchers: each a small change of `InMemoryJobLauncher`,
 * and the conformance group expected to catch it first.
 */
import type { JobExit, JobHandle, LaunchRequest } from "@flexec/core"
import { Deferred, Effect, Option, Scope, Stream } from "effect"
import type { InMemoryLauncher } from "../../src/index.js"
import { conformancePrograms, InMemoryJobLauncher } from "../../src/index.js"

type Change = (launcher: InMemoryLauncher) => Partial<InMemoryLauncher>

const base = () => InMemoryJobLauncher.make({ programs: conformancePrograms })

const broken = (change: Change) => () => Effect.map(base(), (launcher): InMemoryLauncher => ({ ...launcher, ...change(launcher) }))

/** Changes every handle the launcher returns. */
const handles = (f: (handle: JobHandle, request: LaunchRequest) => Effect.Effect<JobHandle>): Change => (l) => ({
  launch: (request) => Effect.flatMap(l.launch(request), (handle) => f(handle, request))
})

/** Changes the request the launcher gets. */
const requests = (f: (request: LaunchRequest) => LaunchRequest): Change => (l) => ({
  launch: (request) => l.launch(f(request))
})

const mapExit = (f: (exit: JobExit) => JobExit) =>
  handles((h) =>
    Effect.succeed({ ...h, wait: Effect.map(h.wait, f), poll: Effect.map(h.poll, Option.map(f)) })
  )

const withoutEnv = (name: string) =>
  requests((r) => {
    const env = { ...r.env }
    delete env[name]
    return { ...r, env }
  })

const signalNumbers: Record<string, number> = { SIGTERM: 15, SIGKILL: 9 }

/** Each broken launcher: its factory and the group that must catch it. */
export const brokenLaunchers = {
  /** terminate does nothing. */
  "terminate-noop": { group: "control", make: broken(handles((h) => Effect.succeed({ ...h, terminate: () => Effect.void }))) },
  /** Any non-zero exit code is reported as 1. */
  "exit-code-misreported": {
    group: "outcomes",
    make: broken(mapExit((e) => (e.code !== null && e.code !== 0 ? { ...e, code: 1 } : e)))
  },
  /** A signal is reported as the shell's 128+n code. */
  "signal-as-code": {
    group: "control",
    make: broken(mapExit((e) => (e.signal !== null ? { ...e, code: 128 + (signalNumbers[e.signal] ?? 1), signal: null } : e)))
  },
  /** wait resolves (code 0) at once, before the job ends. */
  "wait-early": {
    group: "lifecycle",
    make: broken(
      handles((h) => Effect.succeed({ ...h, wait: Effect.as(Effect.yieldNow(), { code: 0, signal: null, oomKilled: false, lost: false }) }))
    )
  },
  /** poll and wait never see the end. */
  "wait-never": { group: "lifecycle", make: broken(handles((h) => Effect.succeed({ ...h, wait: Effect.never, poll: Effect.succeedNone }))) },
  /** Every exit is reported as lost. */
  "always-lost": { group: "lifecycle", make: broken(mapExit((e) => ({ ...e, lost: true }))) },
  /** FLEXEC_CHANNEL_TOKEN does not reach the job. */
  "no-channel-token": { group: "lifecycle", make: broken(withoutEnv("FLEXEC_CHANNEL_TOKEN")) },
  /** FLEXEC_JOB_ID does not reach the job. */
  "no-job-id": { group: "lifecycle", make: broken(withoutEnv("FLEXEC_JOB_ID")) },
  /** capabilities.logs is true, but the logs are dropped. */
  "logs-dropped": { group: "logs", make: broken(handles((h) => Effect.succeed({ ...h, logs: Stream.empty }))) },
  /**
   * The job outlives its scope: launched in a scope nobody closes, and terminate
   * reports an exit without killing it.
   */
  "leaky-terminate": {
    group: "control",
    make: broken((l) => ({
      launch: (request) =>
        Effect.gen(function* () {
          const detached = yield* Scope.make()
          const handle = yield* l.launch(request).pipe(Scope.extend(detached))
          const fake = yield* Deferred.make<JobExit>()
          return {
            ...handle,
            wait: Effect.raceFirst(handle.wait, Deferred.await(fake)),
            terminate: () => Deferred.succeed(fake, { code: null, signal: "SIGTERM", oomKilled: false, lost: false }).pipe(Effect.asVoid)
          }
        })
    }))
  },
  /** Claims recover, but recover finds nothing. */
  "recover-lies": {
    group: "recovery",
    make: broken((l) => ({ capabilities: { ...l.capabilities, recover: true }, recover: () => Effect.succeed([]) }))
  }
} as const

/** The names of the broken launchers. */
export type BrokenName = keyof typeof brokenLaunchers

