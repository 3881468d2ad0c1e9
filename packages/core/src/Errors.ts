/**
 * The closed set of errors flexec raises. Each is a `Schema.TaggedError`, so it
 * crosses process boundaries intact, and each `message` names its cause.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/** A job id that is not a valid `JobId`. */
export class InvalidJobId extends Schema.TaggedError<InvalidJobId>()("InvalidJobId", {
  value: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid job id ${JSON.stringify(this.value)}: ${this.reason}`
  }
}

/** A client (site) name that is not valid. */
export class InvalidClient extends Schema.TaggedError<InvalidClient>()("InvalidClient", {
  value: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid client name ${JSON.stringify(this.value)}: ${this.reason}`
  }
}

/** `startApp` found no deployed `<workspace>/<jobId>/meta.json`. */
export class JobMetaMissing extends Schema.TaggedError<JobMetaMissing>()("JobMetaMissing", {
  jobId: Schema.String,
  path: Schema.String
}) {
  override get message(): string {
    return `missing deployed job metadata file for job '${this.jobId}': ${this.path}`
  }
}

/** A protected meta key differs between `startApp`'s meta and the deployed meta. */
export class JobMetaMismatch extends Schema.TaggedError<JobMetaMismatch>()("JobMetaMismatch", {
  jobId: Schema.String,
  key: Schema.String
}) {
  override get message(): string {
    return `job '${this.jobId}': START_JOB metadata differs from deployed job metadata for '${this.key}'`
  }
}

/** Job meta failed its schema or an allowlist; `issues` names the offending key and the allowed ones. */
export class InvalidJobMeta extends Schema.TaggedError<InvalidJobMeta>()("InvalidJobMeta", {
  jobId: Schema.String,
  issues: Schema.String
}) {
  override get message(): string {
    return `invalid job meta for job '${this.jobId}': ${this.issues}`
  }
}

/** `startApp` for a job id that is still registered. */
export class JobAlreadyRegistered extends Schema.TaggedError<JobAlreadyRegistered>()("JobAlreadyRegistered", {
  jobId: Schema.String
}) {
  override get message(): string {
    return `client app for job '${this.jobId}' is still registered`
  }
}

/** `startApp` whose launch was interrupted by `abortApp`. */
export class JobAborted extends Schema.TaggedError<JobAborted>()("JobAborted", {
  jobId: Schema.String
}) {
  override get message(): string {
    return `job '${this.jobId}' was aborted while it was being launched`
  }
}

/** The backend could not start the job. */
export class LaunchFailed extends Schema.TaggedError<LaunchFailed>()("LaunchFailed", {
  jobId: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Unknown)
}) {
  override get message(): string {
    return `could not launch job '${this.jobId}': ${this.reason}`
  }
}

/** The job's image is not present (and the pull policy did not allow a pull). */
export class ImageNotFound extends Schema.TaggedError<ImageNotFound>()("ImageNotFound", {
  jobId: Schema.String,
  image: Schema.String
}) {
  override get message(): string {
    return `image '${this.image}' not found for job '${this.jobId}'`
  }
}

/** The backend cannot be reached (for example the Docker engine is down). */
export class BackendUnavailable extends Schema.TaggedError<BackendUnavailable>()("BackendUnavailable", {
  backend: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `backend '${this.backend}' is unavailable: ${this.detail}`
  }
}

/** Another live parent holds this executor instance. */
export class InstanceInUse extends Schema.TaggedError<InstanceInUse>()("InstanceInUse", {
  instanceId: Schema.String,
  ownerPid: Schema.Number
}) {
  override get message(): string {
    return `executor instance '${this.instanceId}' is held by the live process ${this.ownerPid}`
  }
}

/** `awaitCompletion` for a job id this executor has never seen. */
export class JobNotFound extends Schema.TaggedError<JobNotFound>()("JobNotFound", {
  jobId: Schema.String
}) {
  override get message(): string {
    return `job '${this.jobId}' is not known to this executor`
  }
}

/** A request to a job that is not registered or not connected. */
export class TargetUnreachable extends Schema.TaggedError<TargetUnreachable>()("TargetUnreachable", {
  jobId: Schema.String
}) {
  override get message(): string {
    return `job '${this.jobId}' is not reachable (not registered or not connected)`
  }
}

/** A request that got no reply in time. */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()("RequestTimeout", {
  jobId: Schema.String,
  channel: Schema.String,
  topic: Schema.String,
  timeout: Schema.Number
}) {
  override get message(): string {
    return `request ${this.channel}/${this.topic} to job '${this.jobId}' got no reply within ${this.timeout} ms`
  }
}

/** A message over the frame limit. */
export class MessageTooBig extends Schema.TaggedError<MessageTooBig>()("MessageTooBig", {
  size: Schema.Number,
  max: Schema.Number
}) {
  override get message(): string {
    return `message of ${this.size} bytes exceeds the frame limit of ${this.max} bytes`
  }
}

/**
 * The peer has no handler for that channel and topic; or, with `reason`, the
 * request was refused before it was sent (its payload cannot travel, e.g. a
 * `Uint8Array` nested inside JSON).
 */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  jobId: Schema.String,
  channel: Schema.String,
  topic: Schema.String,
  reason: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return this.reason === undefined
      ? `job '${this.jobId}' has no handler for ${this.channel}/${this.topic}`
      : `request ${this.channel}/${this.topic} to job '${this.jobId}' was not sent: ${this.reason}`
  }
}

/** The peer's handler failed, or answered another non-ok return code. */
export class RemoteError extends Schema.TaggedError<RemoteError>()("RemoteError", {
  jobId: Schema.String,
  returnCode: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `job '${this.jobId}' answered ${this.returnCode}: ${this.detail}`
  }
}

/** `allocateResources` with an unknown or expired token. */
export class ResourceTokenInvalid extends Schema.TaggedError<ResourceTokenInvalid>()("ResourceTokenInvalid", {
  token: Schema.String
}) {
  override get message(): string {
    return `no reserved resources for token '${this.token}' (unknown or expired)`
  }
}

/** Errors a request to a job can fail with. */
export type RequestError = TargetUnreachable | RequestTimeout | MessageTooBig | InvalidRequest | RemoteError

/** Errors `startApp` can fail with. */
export type StartError =
  | InvalidJobId
  | InvalidClient
  | JobMetaMissing
  | JobMetaMismatch
  | InvalidJobMeta
  | JobAlreadyRegistered
  | JobAborted
  | LaunchFailed
  | ImageNotFound
  | BackendUnavailable
  | ResourceTokenInvalid

/** Every error flexec raises, as a schema (for decoding errors that crossed a boundary). */
export const FlexecError = Schema.Union(
  InvalidJobId,
  InvalidClient,
  JobMetaMissing,
  JobMetaMismatch,
  InvalidJobMeta,
  JobAlreadyRegistered,
  JobAborted,
  LaunchFailed,
  ImageNotFound,
  BackendUnavailable,
  InstanceInUse,
  JobNotFound,
  TargetUnreachable,
  RequestTimeout,
  MessageTooBig,
  InvalidRequest,
  RemoteError,
  ResourceTokenInvalid
)

/** Any flexec error. */
export type FlexecError = typeof FlexecError.Type

/**
 * A resource requirement a manager cannot read: not an object, or a value of
 * the wrong type (a negative or fractional count, a string...). The managers'
 * methods cannot fail with it (the `ResourceManager` interface has no error
 * channel for them): they die with it, so `Effect.catchSomeDefect` or
 * `Cause.dieOption` picks it out, and the Promise facade rejects with it.
 */
export class InvalidResourceRequirement extends Schema.TaggedError<InvalidResourceRequirement>()(
  "InvalidResourceRequirement",
  {
    manager: Schema.String,
    reason: Schema.String
  }
) {
  override get message(): string {
    return `${this.manager}: invalid resource requirement: ${this.reason}`
  }
}

/**
 * A resource manager's configuration that cannot work: thrown by the
 * constructors, and the typed failure of `GpuResourceManager.make` (more GPUs
 * asked for than are available, more memory per GPU than a GPU has...).
 */
export class InvalidResourceConfig extends Schema.TaggedError<InvalidResourceConfig>()("InvalidResourceConfig", {
  manager: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.manager}: invalid configuration: ${this.reason}`
  }
}
