/**
 * What every part of the engine shares: the backend, the resolved settings,
 * the registry, the event hub, the scope job fibers live in, and the runtime
 * callbacks use to run an Effect (a log line, a starting job's request).
 */
import { Clock, Effect } from "effect"
import type { Runtime, Scope } from "effect"
import type { ExecutorEvent } from "../../ClientExecutor.js"
import type { ClientInfo } from "../../JobId.js"
import type { JobLauncher } from "../../JobLauncher.js"
import type { JobExecutorOptions } from "../../ExecutorOptions.js"
import type { ChannelTransportService } from "../../protocol/Transport.js"
import type { WorkerRuntimeFiles } from "../workerRuntime.js"
import type { EventHub } from "./events.js"
import type { Registry } from "./registry.js"
import type { Settings } from "./settings.js"

/** One executor's shared state. */
export interface Engine {
  readonly launcher: JobLauncher
  readonly options: JobExecutorOptions
  readonly settings: Settings
  /** The executor's client (jobs run as it unless `startApp` names another). */
  readonly client: ClientInfo
  readonly runtimeDir: string
  readonly workerRuntime: WorkerRuntimeFiles
  readonly registry: Registry
  readonly events: EventHub
  /** Where job fibers are forked: closed after every job was aborted. */
  readonly jobsScope: Scope.Scope
  /** The executor's runtime (its clock, its logger), for Effects run from callbacks. */
  readonly runtime: Runtime.Runtime<never>
  /** The transport every job's channel listens through: read once when the executor is made. */
  readonly transport: ChannelTransportService
  /** Set once the executor closes: `startApp` refuses from then on. */
  closing: boolean
}

/** The current time, on the executor's clock. */
export const now = Clock.currentTimeMillis

/** Publishes the event `make` builds for the current time. */
export const publishNow = (engine: Engine, make: (time: number) => ExecutorEvent): Effect.Effect<void> =>
  Effect.map(now, (time) => engine.events.publish(make(time)))
