/**
 * `@flexec/core/worker`: the runtime a job uses to speak flexec's protocol
 * with its parent. It imports only `node:` built-ins, so a job pays ~nothing
 * to load it.
 *
 * ```js
 * const { runJob } = require("@flexec/core/worker")
 * runJob({
 *   run: async (ctx) => {
 *     ctx.setStats("train", { round: 1 })
 *     return 0
 *   },
 *   handlers: { train: { ping: (message) => message.payload } }
 * })
 * ```
 *
 * @module @flexec/core/worker
 * @since 0.1.0
 */
export { ChannelError, ConfigError, UnsafeComponentError } from "./errors.js"
export type { ReturnCodeName } from "./errors.js"
export { DEFAULT_ABORT_GRACE_MS, DEFAULT_RECONNECT_MS, SECRET_ENV } from "./config.js"
export { RC_FILE_NAME } from "./exit.js"
export { connectParent, connectUnix } from "./connect.js"
export { runJob } from "./runJob.js"
export { DEFAULT_REQUEST_TIMEOUT_MS, runJobWith } from "./runtime.js"
export type {
  ConnectOptions,
  Credentials,
  Handler,
  Handlers,
  HeaderValue,
  Headers,
  JobContext,
  JobSpec,
  Json,
  LogLevel,
  OutgoingMessage,
  Payload,
  ReportErrorOptions,
  RequestOptions,
  WorkerIO,
  WorkerMessage
} from "./types.js"
