/**
 * `makeJobExecutor`: the engine. It implements every `ClientExecutor` method
 * over any `JobLauncher`: validation, the registry, supervision, the outcome
 * table, completion exactly once, the history, events, recovery. This module
 * only assembles it; each part lives in `internal/engine/` (see
 * docs/ARCHITECTURE.md).
 *
 * One job's way through it: `startApp` → prepare (validate) → register
 * `Starting` → open the job's channel → `launcher.launch` → a supervising fiber
 * waits for Started and for the exit → classify → close the job's scope → free
 * → unregister → `Completed`.
 *
 * @since 0.1.0
 */
import { Context, Deferred, Effect, Either, Exit, ExecutionStrategy, Layer, Scope, Stream } from "effect"
import * as path from "node:path"
import type {
  ClientExecutorService,
  JobOutcome,
  RecoveryRecord,
  JobSummary,
  StartAppError,
  StartAppParams,
  UnsafeClientExecutorService
} from "./ClientExecutor.js"
import { ClientExecutor, UnsafeClientExecutor } from "./ClientExecutor.js"
import { BackendUnavailable, JobAlreadyRegistered, JobNotFound, TargetUnreachable } from "./Errors.js"
import type { InstanceInUse, InvalidClient, InvalidJobId, RequestError } from "./Errors.js"
import type { JobExecutorOptions } from "./ExecutorOptions.js"
import { checkJobId, decodeClientInfo, decodeJobId } from "./JobId.js"
import type { JobId } from "./JobId.js"
import type { Message } from "./Message.js"
import { ClientStatus, statusMessage, Topic } from "./Status.js"
import type { Engine } from "./internal/engine/context.js"
import { now } from "./internal/engine/context.js"
import { makeEventHub } from "./internal/engine/events.js"
import { launchJob } from "./internal/engine/launch.js"
import { launchRequestOf, prepareJob } from "./internal/engine/prepare.js"
import { recoverJobs } from "./internal/engine/recovery.js"
import { makeEntry, Registry } from "./internal/engine/registry.js"
import type { Entry } from "./internal/engine/registry.js"
import { makeJobRequests } from "./internal/engine/requests.js"
import { settingsOf } from "./internal/engine/settings.js"
import { abortEntry } from "./internal/engine/supervise.js"
import { acquireInstance } from "./internal/instance.js"
import { randomToken } from "./internal/randomPool.js"

export { defaults } from "./internal/engine/settings.js"
export { classifyExit } from "./internal/engine/outcome.js"
export { defaultRuntimeDir } from "./internal/instance.js"

/** What `makeJobExecutor` builds: the Effect service and its fiberless door (the implementation the service wraps). */
export type JobExecutorService = ClientExecutorService & UnsafeClientExecutorService

const asRecord = (payload: Message["payload"]): Record<string, any> =>
  typeof payload === "object" && payload !== null && !(payload instanceof Uint8Array) && !Array.isArray(payload)
    ? (payload as Record<string, any>)
    : {}

/**
 * Builds an executor over `options.launcher`, for the lifetime of the scope.
 * Closing the scope aborts what still runs and waits for every job's
 * completion. Fails with `InstanceInUse` when a live parent holds the instance.
 */
export const makeJobExecutor = (
  options: JobExecutorOptions
): Effect.Effect<JobExecutorService, InstanceInUse | BackendUnavailable | InvalidClient, Scope.Scope> =>
  Effect.gen(function* () {
    const launcher = options.launcher
    const client = yield* decodeClientInfo(options.client)
    const settings = settingsOf(options)
    // the channel option or the executor's layer decides the transport, not startApp's caller
    const { runtimeDir, workerRuntime, transport } = yield* acquireInstance(launcher, options, settings.instanceId, settings.recover === "adopt")
    // Job fibers live in their own scope, closed after the abort-all finalizer below has run.
    const jobsScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const engine: Engine = {
      launcher,
      options,
      settings,
      client,
      runtimeDir,
      workerRuntime,
      registry: new Registry(settings.historySize),
      events: makeEventHub(),
      jobsScope,
      runtime: yield* Effect.runtime<never>(),
      transport,
      closing: false
    }
    const { registry, events } = engine
    const facts = { options, client, instanceId: settings.instanceId, runtimeDir, backendSlack: settings.backendSlack }
    const launchFacts = { ...facts, killTimeout: settings.killTimeout, workerRuntime }
    const requests = makeJobRequests(engine)
    const recovered: Array<RecoveryRecord> = []

    const startApp = (params: StartAppParams): Effect.Effect<void, StartAppError> =>
      Effect.gen(function* () {
        const job = yield* prepareJob(facts, launcher, params)
        // Register atomically (no yield between the check and the set).
        if (engine.closing) return yield* new BackendUnavailable({ backend: launcher.name, detail: "the executor is closing" })
        const entry = yield* makeEntry(
          {
            jobId: job.jobId,
            allocation: job.allocation,
            token: job.token,
            resourceManager: job.resourceManager,
            rcFile: job.paths.rcFile,
            status: ClientStatus.Starting,
            phase: "launching"
          },
          yield* now
        )
        if (registry.has(job.jobId)) {
          yield* Scope.close(entry.jobScope, Exit.void)
          return yield* new JobAlreadyRegistered({ jobId: job.jobId })
        }
        registry.register(entry)
        const channelToken = randomToken(32)
        const channelDir = path.join(runtimeDir, "ch", randomToken(6))
        yield* launchJob(engine, entry, (channel) => launchRequestOf(launchFacts, job, channel, channelToken), channelDir, channelToken)
      })

    /** A known job's status, else `NotStarted` for a valid id: no fiber either way. */
    const statusExit = (jobId: string): Exit.Exit<ClientStatus, InvalidJobId> => {
      const known = registry.statusOf(jobId)
      if (known !== undefined) return Exit.succeed(known)
      const checked = checkJobId(jobId)
      return Either.isRight(checked) ? Exit.succeed(ClientStatus.NotStarted) : Exit.fail(checked.left)
    }

    const unsafe: UnsafeClientExecutorService = {
      unsafeSendToJob: requests.unsafeSendToJob,
      unsafeGetStatus: (jobId, done) => done(statusExit(jobId)),
      unsafeSubscribe: events.unsafeSubscribe
    }

    const withEntry = <A, E>(jobId: string, f: (entry: Entry | undefined, id: JobId) => Effect.Effect<A, E>) =>
      Effect.flatMap(decodeJobId(jobId), (id) => f(registry.get(id), id))

    const service: JobExecutorService = {
      ...unsafe,
      startApp,
      checkStatus: (jobId) => Effect.suspend(() => Exit.map(statusExit(jobId), statusMessage)),
      getStatus: (jobId) => Effect.suspend(() => statusExit(jobId)),
      abortApp: (jobId) => withEntry(jobId, (entry) => (entry === undefined ? Effect.void : abortEntry(engine, entry))),
      abortTask: (jobId) =>
        withEntry(jobId, (entry, id): Effect.Effect<void, RequestError | InvalidJobId> =>
          entry === undefined || entry.status === ClientStatus.Starting
            ? Effect.fail(new TargetUnreachable({ jobId: id }))
            : Effect.asVoid(requests.topicRequest(id, Topic.AbortTask, {}))
        ),
      getRunInfo: (jobId) => Effect.map(requests.topicRequest(jobId, Topic.ShowStats, {}), (m) => asRecord(m.payload)),
      getErrors: (jobId) => Effect.map(requests.topicRequest(jobId, Topic.ShowErrors, {}), (m) => asRecord(m.payload)),
      resetErrors: (jobId) => Effect.asVoid(requests.topicRequest(jobId, Topic.ResetErrors, {})),
      configureJobLog: (jobId, config) => Effect.asVoid(requests.topicRequest(jobId, Topic.ConfigureJobLog, config as Message["payload"])),
      sendToJob: requests.sendToJob,
      jobs: Effect.sync(() => registry.all().map((e): JobSummary => ({ jobId: e.jobId, status: e.status, since: e.since }))),
      events: events.events,
      subscribe: events.subscribe,
      recovered: Effect.sync(() => [...recovered]),
      logs: (jobId) => Stream.unwrap(Effect.sync(() => registry.get(jobId)?.handle?.logs ?? Stream.empty)),
      awaitCompletion: (jobId) =>
        withEntry(jobId, (entry, id): Effect.Effect<JobOutcome, JobNotFound> => {
          if (entry) return Deferred.await(entry.completed)
          const done = registry.outcomeOf(id)
          return done ? Effect.succeed(done) : Effect.fail(new JobNotFound({ jobId: id }))
        })
    }

    yield* recoverJobs(engine, recovered)

    // close(): abort what still runs and wait for every pipeline (runs before jobsScope closes).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        engine.closing = true
        return Effect.forEach(registry.all(), (entry) => abortEntry(engine, entry), { concurrency: "unbounded", discard: true })
      })
    )
    return service
  })

/**
 * An executor `make` builds, as a layer of `ClientExecutor` and of its
 * fiberless door `UnsafeClientExecutor` (the Promise facade's way in). The
 * backends' executor layers are this over their `make`.
 */
export const executorLayer = <E, R>(
  make: Effect.Effect<JobExecutorService, E, R>
): Layer.Layer<ClientExecutor | UnsafeClientExecutor, E, Exclude<R, Scope.Scope>> =>
  Layer.scopedContext(Effect.map(make, (service) => Context.make(ClientExecutor, service).pipe(Context.add(UnsafeClientExecutor, service))))

/** `makeJobExecutor` as a layer (see `executorLayer`). */
export const jobExecutorLayer = (
  options: JobExecutorOptions
): Layer.Layer<ClientExecutor | UnsafeClientExecutor, InstanceInUse | BackendUnavailable | InvalidClient> =>
  executorLayer(makeJobExecutor(options))

export type { RequestError } // for callers that only want the types
