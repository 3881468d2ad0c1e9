/**
 * The engine's settings: the executor options with their defaults applied,
 * durations decoded once.
 */
import { Duration } from "effect"
import type { ExecutorOptions, RecoverMode } from "../../ExecutorOptions.js"
import { DEFAULT_MAX_FRAME_BYTES } from "../../protocol/Frame.js"

/** Defaults of the executor options, as DESIGN.md fixes them. */
export const defaults = {
  instanceId: "default",
  recover: "reap",
  graceMs: 10_000,
  killTimeoutMs: 5_000,
  startTimeoutMs: 60_000,
  queryTimeoutMs: 5_000,
  completionStepTimeoutMs: 30_000,
  backendSlackMs: 10_000,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  historySize: 1000,
  helloTimeoutMs: 10_000
} as const

/** The options the engine reads, resolved. */
export interface Settings {
  readonly instanceId: string
  readonly recover: RecoverMode
  readonly graceMs: number
  readonly killTimeout: Duration.Duration
  readonly startTimeout: Duration.Duration
  readonly queryTimeout: Duration.Duration
  /** Each step of the completion pipeline, and `recover`. */
  readonly stepTimeout: Duration.Duration
  /** What a backend's `poll` and `validate` get, and a launch after its interruption. */
  readonly backendSlack: Duration.Duration
  /** How long a terminate may take, and a wait after a terminate was sent. */
  readonly killBound: Duration.Duration
  readonly maxFrameBytes: number
  readonly historySize: number
  readonly helloTimeout: Duration.Duration
}

/** `options` with the defaults applied. */
export const settingsOf = (options: ExecutorOptions): Settings => {
  const reconnect = options.reconnectWindowMs
  if (reconnect !== undefined && (!Number.isSafeInteger(reconnect) || reconnect <= 0)) {
    throw new TypeError(`reconnectWindowMs must be a positive integer of milliseconds, not ${JSON.stringify(reconnect)}`)
  }
  const killTimeout = Duration.millis(options.killTimeoutMs ?? defaults.killTimeoutMs)
  const backendSlack = Duration.millis(options.backendSlackMs ?? defaults.backendSlackMs)
  return {
    instanceId: options.instanceId ?? defaults.instanceId,
    recover: options.recover ?? defaults.recover,
    graceMs: options.graceMs ?? defaults.graceMs,
    killTimeout,
    startTimeout: Duration.millis(options.startTimeoutMs ?? defaults.startTimeoutMs),
    queryTimeout: Duration.millis(options.queryTimeoutMs ?? defaults.queryTimeoutMs),
    stepTimeout: Duration.millis(options.completionStepTimeoutMs ?? defaults.completionStepTimeoutMs),
    backendSlack,
    killBound: Duration.sum(killTimeout, backendSlack),
    maxFrameBytes: options.maxFrameBytes ?? defaults.maxFrameBytes,
    historySize: Math.max(0, options.historySize ?? defaults.historySize),
    helloTimeout: Duration.millis(options.helloTimeoutMs ?? defaults.helloTimeoutMs)
  }
}
