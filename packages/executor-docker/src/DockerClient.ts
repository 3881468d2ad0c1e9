/**
 * The Docker Engine API as Effects: a thin service over dockerode where every
 * call has a timeout (30 s by default) except the long-poll `wait`, an engine
 * that cannot be reached is `BackendUnavailable` naming its socket, and an
 * answer the engine refused is `DockerApiError` with its HTTP status.
 *
 * @since 0.1.0
 */
import { BackendUnavailable } from "@flexec/core"
import { Context, Duration, Effect, Layer, Option, Schema } from "effect"
import Docker from "dockerode"
import type * as http from "node:http"
import { orNotFound } from "./internal/errors.js"

/** The engine refused a request (an HTTP status other than success). */
export class DockerApiError extends Schema.TaggedError<DockerApiError>()("DockerApiError", {
  operation: Schema.String,
  statusCode: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return `Docker engine refused ${this.operation} (HTTP ${this.statusCode}): ${this.detail}`
  }
}

/** What a Docker call can fail with. */
export type DockerError = DockerApiError | BackendUnavailable

/** Where the engine listens. */
export interface DockerEndpoint {
  /** The engine's unix socket. */
  readonly socketPath?: string
  /** A TCP engine (from `DOCKER_HOST=tcp://host:port`, no TLS). */
  readonly host?: string
  readonly port?: number
  /** How errors name the engine: `unix:///var/run/docker.sock`. */
  readonly label: string
}

/**
 * The engine's address: `socketPath` when given, else `DOCKER_HOST`
 * (`unix://…` or `tcp://…`), else `/var/run/docker.sock`.
 */
export const resolveEndpoint = (socketPath?: string, env: NodeJS.ProcessEnv = process.env): DockerEndpoint => {
  if (socketPath !== undefined && socketPath !== "") return { socketPath, label: `unix://${socketPath}` }
  const host = env.DOCKER_HOST
  if (host !== undefined && host.startsWith("unix://") && host.length > "unix://".length) {
    return { socketPath: host.slice("unix://".length), label: host }
  }
  if (host !== undefined && host.startsWith("tcp://")) {
    const url = new URL(host.replace(/^tcp:/, "http:"))
    return { host: url.hostname, port: Number(url.port === "" ? 2375 : url.port), label: host }
  }
  return { socketPath: "/var/run/docker.sock", label: "unix:///var/run/docker.sock" }
}

/** The parts of a container's inspect answer flexec reads. */
export interface ContainerState {
  readonly id: string
  readonly name: string
  readonly status: string
  readonly running: boolean
  readonly exitCode: number
  readonly oomKilled: boolean
  readonly error: string
  readonly labels: Readonly<Record<string, string>>
  readonly env: ReadonlyArray<string>
  /** The container's mounts (`Type`, host `Source`, container `Destination` of the inspect answer). */
  readonly mounts: ReadonlyArray<ContainerMount>
}

/** One mount of a container, as its inspect answer lists it. */
export interface ContainerMount {
  readonly type: string
  readonly source: string
  readonly destination: string
}

/** One entry of a container listing. */
export interface ContainerSummary {
  readonly id: string
  readonly names: ReadonlyArray<string>
  readonly state: string
  readonly labels: Readonly<Record<string, string>>
}

/** A frame of a container's demultiplexed output. */
export interface OutputChunk {
  readonly stream: "stdout" | "stderr"
  readonly bytes: Buffer
}

/** The Engine API calls flexec uses. */
export interface DockerClientService {
  /** The engine's address (for messages). */
  readonly endpoint: DockerEndpoint
  readonly ping: Effect.Effect<void, DockerError>
  /** `true` when the image is present locally. */
  readonly imageExists: (image: string) => Effect.Effect<boolean, DockerError>
  /** Pulls an image (its own timeout, the `pullTimeout` of the client). */
  readonly pullImage: (image: string) => Effect.Effect<void, DockerError>
  /** Creates a container; returns its id. */
  readonly createContainer: (name: string, body: Readonly<Record<string, unknown>>) => Effect.Effect<string, DockerError>
  /**
   * Attaches to the container's stdout and stderr (before it starts, so nothing
   * is missed). `onChunk` gets each demultiplexed frame; the returned `done`
   * resolves when the stream ends, and `close` tears it down.
   */
  readonly attach: (
    id: string,
    onChunk: (chunk: OutputChunk) => void
  ) => Effect.Effect<{ readonly done: Promise<void>; readonly close: () => void }, DockerError>
  readonly start: (id: string) => Effect.Effect<void, DockerError>
  /** Long-poll until the container is not running (no timeout); `StatusCode` of the answer. */
  readonly wait: (id: string) => Effect.Effect<number, DockerError>
  readonly inspect: (id: string) => Effect.Effect<ContainerState, DockerError>
  /** Stops with SIGTERM, SIGKILL after `seconds`. A container not running is not an error. */
  readonly stop: (id: string, seconds: number) => Effect.Effect<void, DockerError>
  /** Force-removes a container; one already gone is not an error. */
  readonly remove: (id: string) => Effect.Effect<void, DockerError>
  /** Containers (running or not) carrying every `key=value` label given. */
  readonly listByLabels: (labels: Readonly<Record<string, string>>) => Effect.Effect<ReadonlyArray<ContainerSummary>, DockerError>
}

/** Options of the client. */
export interface DockerClientOptions {
  /** The engine's unix socket; default `DOCKER_HOST` or `/var/run/docker.sock`. */
  readonly socketPath?: string
  /** Timeout of every call but `wait` and pulls (default 30 s). */
  readonly timeout?: Duration.DurationInput
  /** Timeout of an image pull (default 10 minutes). */
  readonly pullTimeout?: Duration.DurationInput
}

/** The Engine API client service. */
export class DockerClient extends Context.Tag("@flexec/executor-docker/DockerClient")<DockerClient, DockerClientService>() {
  /** A client over dockerode for `options.socketPath` (or `DOCKER_HOST`, or `/var/run/docker.sock`). */
  static readonly layer = (options: DockerClientOptions = {}): Layer.Layer<DockerClient> =>
    Layer.sync(DockerClient, () => makeDockerClient(options))
}

const describe = (e: unknown): string => {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code
    return typeof code === "string" && !e.message.includes(code) ? `${code}: ${e.message}` : e.message
  }
  return String(e)
}

const apiDetail = (err: { json?: unknown; message?: string }): string => {
  const json = err.json
  if (typeof json === "object" && json !== null && !Buffer.isBuffer(json)) {
    const message = (json as { message?: unknown }).message
    if (typeof message === "string") return message
  }
  if (Buffer.isBuffer(json)) return json.toString("utf8").trim()
  if (typeof json === "string") return json.trim()
  return err.message ?? "unknown error"
}

/** Builds the client (no connection is made until a call). */
export const makeDockerClient = (options: DockerClientOptions = {}): DockerClientService => {
  const endpoint = resolveEndpoint(options.socketPath)
  const timeout = Duration.decode(options.timeout ?? Duration.seconds(30))
  const pullTimeout = Duration.decode(options.pullTimeout ?? Duration.minutes(10))
  const docker =
    endpoint.socketPath !== undefined
      ? new Docker({ socketPath: endpoint.socketPath })
      : new Docker({ host: endpoint.host!, port: endpoint.port!, protocol: "http" })

  const unreachable = (operation: string, detail: string) =>
    new BackendUnavailable({
      backend: "docker",
      detail: `cannot reach the Docker engine at ${endpoint.label} (${operation}): ${detail}`
    })

  const toError = (operation: string) => (e: unknown): DockerError => {
    const err = e as { statusCode?: unknown; json?: unknown; message?: string }
    if (typeof err === "object" && err !== null && typeof err.statusCode === "number") {
      return new DockerApiError({ operation, statusCode: err.statusCode, detail: apiDetail(err) })
    }
    return unreachable(operation, describe(e))
  }

  const call = <A>(
    operation: string,
    f: (signal: AbortSignal) => Promise<A>,
    limit: Duration.Duration = timeout
  ): Effect.Effect<A, DockerError> =>
    Effect.tryPromise({ try: f, catch: toError(operation) }).pipe(
      Effect.timeoutFail({
        duration: limit,
        onTimeout: () => unreachable(operation, `no answer within ${Duration.format(limit)}`)
      })
    )

  const ignoreStatus = (...codes: ReadonlyArray<number>) => (e: DockerError) =>
    e._tag === "DockerApiError" && codes.includes(e.statusCode) ? Effect.void : Effect.fail(e)

  const inspect = (id: string) =>
    call(`inspect container ${id}`, (signal) => docker.getContainer(id).inspect({ abortSignal: signal } as object)).pipe(
      Effect.map(
        (info): ContainerState => ({
          id: info.Id,
          name: info.Name.replace(/^\//, ""),
          status: info.State.Status,
          running: info.State.Running || info.State.Restarting || info.State.Paused,
          exitCode: info.State.ExitCode,
          oomKilled: info.State.OOMKilled,
          error: info.State.Error ?? "",
          labels: info.Config.Labels ?? {},
          env: info.Config.Env ?? [],
          mounts: (info.Mounts ?? []).map((m): ContainerMount => ({
            type: String(m.Type ?? ""),
            source: m.Source ?? "",
            destination: m.Destination ?? ""
          }))
        })
      )
    )

  /** The long-poll wait, read as a stream so that a cut connection is an error, not a hang. */
  const wait = (id: string): Effect.Effect<number, DockerError> => {
    const operation = `wait for container ${id}`
    return Effect.async<number, DockerError>((resume, signal) => {
      let settled = false
      const settle = (result: Effect.Effect<number, DockerError>) => {
        if (settled) return
        settled = true
        resume(result)
      }
      docker.modem.dial(
        {
          path: `/containers/${encodeURIComponent(id)}/wait?`,
          method: "POST",
          options: { _query: { condition: "not-running" }, _body: {} },
          isStream: true,
          abortSignal: signal,
          statusCodes: { 200: true, 400: "bad parameter", 404: "no such container", 500: "server error" }
        } as never,
        (err: unknown, res: unknown) => {
          if (err) return settle(Effect.fail(toError(operation)(err)))
          const response = res as http.IncomingMessage
          const chunks: Array<Buffer> = []
          response.on("data", (chunk: Buffer) => chunks.push(chunk))
          response.on("error", (e) => settle(Effect.fail(unreachable(operation, describe(e)))))
          response.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8")
            try {
              const body = JSON.parse(text) as { StatusCode?: unknown; Error?: { Message?: unknown } | null }
              if (typeof body.StatusCode !== "number") throw new Error(`unexpected answer ${JSON.stringify(text)}`)
              settle(Effect.succeed(body.StatusCode))
            } catch (e) {
              settle(Effect.fail(unreachable(operation, `connection lost while waiting: ${describe(e)}`)))
            }
          })
          response.on("close", () => {
            if (!response.complete) settle(Effect.fail(unreachable(operation, "connection lost while waiting")))
          })
        }
      )
    })
  }

  const attach = (id: string, onChunk: (chunk: OutputChunk) => void) =>
    call(`attach to container ${id}`, (signal) =>
      docker.getContainer(id).attach({ stream: true, stdout: true, stderr: true, abortSignal: signal } as never)
    ).pipe(
      Effect.map((stream) => {
        const readable = stream as NodeJS.ReadableStream & { destroy?: () => void }
        let buffer: Buffer = Buffer.alloc(0)
        readable.on("data", (data: Buffer) => {
          buffer = buffer.length === 0 ? data : Buffer.concat([buffer, data])
          // Frames: u8 stream (1 stdout, 2 stderr), 3 zero bytes, u32 BE length, payload.
          while (buffer.length >= 8) {
            const kind = buffer.readUInt8(0)
            const length = buffer.readUInt32BE(4)
            if (buffer.length < 8 + length) break
            const bytes = buffer.subarray(8, 8 + length)
            buffer = buffer.subarray(8 + length)
            if (kind === 1 || kind === 2) onChunk({ stream: kind === 2 ? "stderr" : "stdout", bytes: Buffer.from(bytes) })
          }
        })
        const done = new Promise<void>((resolve) => {
          readable.on("end", resolve)
          readable.on("close", resolve)
          readable.on("error", () => resolve())
        })
        return { done, close: () => readable.destroy?.() }
      })
    )

  return {
    endpoint,
    ping: call("ping", (signal) => (docker.ping as (opts: object) => Promise<unknown>).call(docker, { abortSignal: signal })).pipe(Effect.asVoid),
    imageExists: (image) =>
      orNotFound(call(`inspect image ${image}`, (signal) => docker.getImage(image).inspect({ abortSignal: signal } as object))).pipe(
        Effect.map(Option.isSome)
      ),
    pullImage: (image) =>
      call(
        `pull image ${image}`,
        (signal) =>
          new Promise<void>((resolve, reject) => {
            docker.pull(image, { abortSignal: signal } as never, (err: unknown, stream: unknown) => {
              if (err) return reject(err)
              docker.modem.followProgress(stream as NodeJS.ReadableStream, (e: unknown, events: Array<{ error?: string }>) => {
                const failed = events?.find((ev) => typeof ev.error === "string")
                if (e) reject(e)
                else if (failed) reject(Object.assign(new Error(failed.error), { statusCode: 404, json: { message: failed.error } }))
                else resolve()
              })
            })
          }),
        pullTimeout
      ),
    createContainer: (name, body) =>
      call(`create container ${name}`, (signal) =>
        docker.createContainer({ _query: { name }, _body: body, abortSignal: signal } as never)
      ).pipe(Effect.map((container) => container.id)),
    attach,
    start: (id) =>
      call(`start container ${id}`, (signal) => docker.getContainer(id).start({ abortSignal: signal } as object)).pipe(
        Effect.asVoid,
        Effect.catchAll(ignoreStatus(304))
      ),
    wait,
    inspect,
    stop: (id, seconds) =>
      call(
        `stop container ${id}`,
        (signal) => docker.getContainer(id).stop({ t: seconds, abortSignal: signal } as object),
        Duration.sum(timeout, Duration.seconds(seconds))
      ).pipe(Effect.asVoid, Effect.catchAll(ignoreStatus(304, 404))),
    remove: (id) =>
      call(`remove container ${id}`, (signal) =>
        docker.getContainer(id).remove({ force: true, v: true, abortSignal: signal } as object)
      ).pipe(Effect.asVoid, Effect.catchAll(ignoreStatus(404, 409))),
    listByLabels: (labels) =>
      call("list containers", (signal) =>
        docker.listContainers({
          all: true,
          filters: JSON.stringify({ label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) }),
          abortSignal: signal
        } as object)
      ).pipe(
        Effect.map((list) =>
          list.map(
            (c): ContainerSummary => ({ id: c.Id, names: c.Names ?? [], state: c.State, labels: c.Labels ?? {} })
          )
        )
      )
  }
}

/**
 * Why Docker cannot run jobs here, or `undefined` when it can: the engine at
 * `socketPath` (default `DOCKER_HOST` or `/var/run/docker.sock`) answers within
 * `timeout` and, when `image` is given, that image exists locally.
 */
export const dockerProblem = (
  options: { readonly socketPath?: string; readonly image?: string; readonly timeout?: Duration.DurationInput } = {}
): Effect.Effect<string | undefined> => {
  const client = makeDockerClient({
    ...(options.socketPath !== undefined ? { socketPath: options.socketPath } : {}),
    timeout: options.timeout ?? Duration.seconds(5)
  })
  return Effect.gen(function* () {
    yield* client.ping
    if (options.image !== undefined && !(yield* client.imageExists(options.image))) return `the image ${options.image} is missing`
    return undefined
  }).pipe(Effect.catchAll((e) => Effect.succeed(e.message)))
}
