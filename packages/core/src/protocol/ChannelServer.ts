/**
 * ChannelServer: the parent side of a job's channel. Makes the channel's
 * private directory, listens through the `ChannelTransport` (a unix socket by
 * default) and connects in-process streams, admits one connection by its hello
 * (the hello timeout, the cap on connections waiting for theirs), and serves
 * request/reply over the live one. The top of the protocol layer: it imports
 * `ChannelDir`, `ChannelTransport`, `Hello`, `Connection`, `FramedStream`,
 * `Request` and `Frame`; nothing in the protocol imports it.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Either, FiberSet } from "effect"
import type { Scope } from "effect"
import { Buffer } from "node:buffer"
import * as path from "node:path"
import type { Duplex } from "node:stream"
import { LaunchFailed, TargetUnreachable } from "../Errors.js"
import type { RequestError } from "../Errors.js"
import { duplexPair } from "../internal/duplexPair.js"
import { makeDeadlines } from "../internal/deadlines.js"
import type { ChannelInfo } from "../JobLauncher.js"
import type { Message } from "../Message.js"
import { makePrivateDir, removeDir } from "./ChannelDir.js"
import { ChannelTransport } from "./ChannelTransport.js"
import { makeIdleConnection } from "./Connection.js"
import type { Connection } from "./Connection.js"
import * as codec from "./Frame.js"
import { unsafeMakeFramedStream } from "./FramedStream.js"
import type { FramedStream } from "./FramedStream.js"
import { Admission, digest, helloOkFrame, helloProblem } from "./Hello.js"
import type { ChannelRequest, RequestHandler, RequestOutcome } from "./Request.js"

export type { ChannelRequest, IncomingRequest, RequestHandler, RequestOutcome } from "./Request.js"

/** Options of `openJobChannel`. */
export interface JobChannelOptions {
  readonly jobId: string
  /** The token the worker must present in its hello (compared in constant time). */
  readonly token: string
  /** The job's private socket directory: created 0700 (must not exist yet), removed when the scope closes. */
  readonly dir: string
  /** The socket file's name in `dir` (default `"ch.sock"`). */
  readonly socketName?: string
  /** Largest frame accepted and sent (default 128 MiB; at least 65540, at most 2³²−1). */
  readonly maxFrameBytes?: number
  /** A connection that has not said hello by then is closed (default 10 s). */
  readonly helloTimeout?: Duration.DurationInput
  /** Handles the job's requests (and `notify` frames, whose result is discarded). */
  readonly onRequest: RequestHandler
  /** Owner of `dir` and the socket (a container user); default: the parent's. */
  readonly owner?: { readonly uid: number; readonly gid: number }
  /**
   * Keep `dir` if it already exists (a real directory, not a link) and replace only a
   * stale socket file in it: for adopting a job whose container has `dir` bind-mounted
   * (a re-created directory would not be seen through the mount).
   */
  readonly reuseDir?: boolean
  /** At most this many of the job's requests are handled at once; more are answered `service_unavailable` (default 64). */
  readonly maxConcurrentRequests?: number
}


/** The parent end of one job's channel. */
export interface JobChannel {
  /** What the backend hands to the job. */
  readonly info: ChannelInfo
  /**
   * A request to the job. Not connected: `TargetUnreachable` at once. Reply codes
   * map to `InvalidRequest`, `MessageTooBig`, `RemoteError`; no reply in time:
   * `RequestTimeout` (a late reply is dropped). The connection dropping fails
   * every pending request with `TargetUnreachable` at once.
   */
  readonly request: (request: ChannelRequest) => Effect.Effect<Message, RequestError>
  /**
   * `request` with a callback, without a fiber (for callers outside Effect, such
   * as the Promise facade): `done` gets the outcome, once, maybe before this
   * returns. `request` is `Effect.async` over it.
   */
  readonly unsafeRequest: (request: ChannelRequest, done: (outcome: RequestOutcome) => void) => void
  /** True while a worker is connected (after a valid hello). */
  readonly isConnected: Effect.Effect<boolean>
  /** Waits until a worker is connected. */
  readonly awaitConnected: Effect.Effect<void>
  /** Closes the live connection, if any (its pending requests fail with `TargetUnreachable`). */
  readonly disconnect: Effect.Effect<void>
  /** Requests to the job still waiting for their reply (for diagnostics and tests). */
  readonly pendingRequests: Effect.Effect<number>
}


/** Default name of the socket file in the job's directory. */
export const DEFAULT_SOCKET_NAME = "ch.sock"

/** Default time a connection has to say hello. */
export const DEFAULT_HELLO_TIMEOUT: Duration.Duration = Duration.seconds(10)

/** Connections per job channel that may be waiting to say hello at once; more are closed at once. */
export const MAX_PENDING_HELLOS = 16

export { MAX_SOCKET_PATH_BYTES } from "./UnixTransport.js"

const launchFailed = (jobId: string, reason: string, cause?: unknown) =>
  new LaunchFailed(cause === undefined ? { jobId, reason } : { jobId, reason, cause })

/** A job's channel whose socket already listens, before it serves (see `bindJobChannel`). */
export interface BoundJobChannel {
  /** Where and how the job connects. */
  readonly info: ChannelInfo
  /**
   * Starts serving, in the given scope: the connections accepted so far, and
   * every later one, get the handshake. Call it once.
   */
  readonly serve: Effect.Effect<JobChannel, never, Scope.Scope>
}

/**
 * Opens a job's channel in the given scope: creates `options.dir` (0700; it must
 * not exist) and listens through the `ChannelTransport` in the context (by
 * default a unix socket at `<dir>/<socketName>`). Closing the scope closes the
 * listener and the live connection (pending requests fail with
 * `TargetUnreachable`) and removes the socket and the directory.
 *
 * A connection must say `hello { version: 1, jobId, token }` within
 * `helloTimeout`; it is answered `hello_ok { version: 1, maxFrame }` or closed
 * (wrong token or job id, another first frame, an oversize first frame, or a
 * live connection already there). Then requests flow both ways.
 *
 * Fails with `LaunchFailed` when the transport refuses the address (a unix
 * socket path longer than 107 bytes), the directory exists or cannot be made or
 * chowned, or the transport cannot listen.
 */
export const openJobChannel = (options: JobChannelOptions): Effect.Effect<JobChannel, LaunchFailed, Scope.Scope> =>
  Effect.flatMap(bindJobChannel(options), (bound) => bound.serve)

/**
 * The first half of `openJobChannel`: creates the directory and listens, in the
 * given scope. Connections that come before `serve` wait for it (at most as
 * many as may wait for their hello). A backend can then be launched before the
 * rest of the channel's set-up, which runs while the job starts.
 */
export const bindJobChannel = (options: JobChannelOptions): Effect.Effect<BoundJobChannel, LaunchFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const { dir, jobId, onRequest, owner } = options
    const socketName = options.socketName ?? DEFAULT_SOCKET_NAME
    const maxFrameBytes = options.maxFrameBytes ?? codec.DEFAULT_MAX_FRAME_BYTES
    const helloTimeout = Duration.decode(options.helloTimeout ?? DEFAULT_HELLO_TIMEOUT)

    // made on the first hello, after the launch (a hash is not free on the way to the spawn)
    let digested: Buffer | undefined
    const tokenDigest = (): Buffer => (digested ??= digest(options.token))

    if (socketName.length === 0 || socketName.includes("/") || socketName === "." || socketName === "..") {
      return yield* launchFailed(jobId, `invalid socket name ${JSON.stringify(socketName)}`)
    }
    const transport = yield* ChannelTransport
    const refusal = transport.check({ jobId, dir, socketName })
    if (refusal !== undefined) return yield* launchFailed(jobId, refusal)
    if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 4 + codec.MAX_HEADER_BYTES || maxFrameBytes > 0xffffffff) {
      return yield* launchFailed(jobId, `maxFrameBytes ${maxFrameBytes} is not an integer between ${4 + codec.MAX_HEADER_BYTES} and ${0xffffffff}`)
    }

    yield* Effect.acquireRelease(makePrivateDir(jobId, dir, owner, options.reuseDir === true), () => removeDir(dir))

    // Until `serve`, accepted streams wait here (as many as may wait for a hello).
    let serving: ((stream: Duplex, peer: string) => void) | undefined
    let unbound = false
    const waiting: Array<{ readonly stream: Duplex; readonly peer: string }> = []
    const onStream = (stream: Duplex, peer: string): void => {
      if (serving !== undefined) return serving(stream, peer)
      if (unbound || waiting.length >= MAX_PENDING_HELLOS) {
        stream.destroy()
        return
      }
      waiting.push({ stream, peer })
    }
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        unbound = true
        for (const { stream } of waiting.splice(0)) stream.destroy()
      })
    )
    const listener = yield* transport.listen({
      jobId,
      dir,
      socketName,
      reuse: options.reuseDir === true,
      accept: onStream,
      ...(owner !== undefined ? { owner } : {})
    })

    const info: ChannelInfo = {
      dir,
      socketName,
      socketPath: listener.socketPath ?? path.join(dir, socketName),
      url: listener.url,
      token: options.token,
      ...(listener.env !== undefined ? { env: listener.env } : {}),
      connectInProcess: () => {
        const [job, parent] = duplexPair()
        onStream(parent, "in-process")
        return job
      }
    }

    const serve = Effect.gen(function* () {
      /** The live connection (after a valid hello, until it has shut down). */
      let liveNow: Connection | undefined
      /** Who waits for a live connection (`awaitConnected`). */
      const connectWaiters = new Set<() => void>()
      /** Set from a valid hello until that connection is gone. */
      let claimed = false
      let closing = false
      const run = yield* FiberSet.makeRuntime<never, void, never>()
      // runs before the connections are interrupted: refuse new ones from here on
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          closing = true
        })
      )

      // the hellos' deadlines: one wake-up for all of them, on this fiber's clock
      const hellos = makeDeadlines(yield* Effect.clock)
      yield* Effect.addFinalizer(() => Effect.sync(hellos.close))
      const helloMs = Duration.toMillis(helloTimeout)
      const logWarning = (text: string, peer: string): void => {
        run(Effect.logWarning(text).pipe(Effect.annotateLogs({ jobId, peer })))
      }
      const helloOk = helloOkFrame(maxFrameBytes)
      const connectionOptions = {
        jobId,
        maxFrameBytes,
        onRequest,
        ...(options.maxConcurrentRequests !== undefined ? { maxConcurrentRequests: options.maxConcurrentRequests } : {})
      }

      /**
       * A connection's life from its accept: the request/reply connection is set up
       * while the hello is on its way (the parent waits for it anyway). Once the hello
       * is accepted (`admission`), the connection becomes the live one and reads;
       * until it has shut down. A refused hello ends it, and its stream goes.
       */
      const connectionLife = (framed: FramedStream, release: () => void, admission: Admission, peer: string) =>
        Effect.gen(function* () {
          yield* Effect.addFinalizer(() => Effect.sync(release))
          const mine: { connection: Connection | undefined } = { connection: undefined }
          // registered before the connection, so it runs after its shutdown: the slot
          // frees (and `isConnected` turns false) only once the connection is gone
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              if (mine.connection === undefined) return
              if (liveNow === mine.connection) liveNow = undefined
              claimed = false
            })
          )
          const idle = yield* makeIdleConnection(framed, connectionOptions)
          const admitted = yield* Effect.async<boolean>((resume) => {
            admission.ready(() => {
              mine.connection = idle.connection
              goLive(idle.connection)
              idle.listen()
            }, (ok) => resume(Effect.succeed(ok)))
          })
          if (!admitted) return
          yield* Effect.logDebug("worker connected")
          yield* idle.connection.closed
          yield* Effect.logDebug("worker disconnected")
        }).pipe(
          Effect.scoped,
          // a connection accepted as the scope closes: its stream still goes
          Effect.onInterrupt(() => Effect.sync(release)),
          Effect.annotateLogs({ jobId, peer })
        )

      /** Makes `connection` the live one (before it reads: a request it dispatches may already use the channel). */
      const goLive = (connection: Connection): void => {
        liveNow = connection
        const waiters = [...connectWaiters]
        connectWaiters.clear()
        for (const wake of waiters) wake()
      }

      // Connections that have not said hello yet hold a socket and up to a
      // hello-sized buffer each: cap them, so a job flooding its own socket with
      // idle connections cannot make the parent allocate without bound.
      let handshaking = 0
      /** How to drop each connection still waiting for its hello (when the channel closes). */
      const pendingHellos = new Set<() => void>()
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          for (const abandon of [...pendingHellos]) abandon()
        })
      )
      /**
       * The handshake, without a fiber on its way: the socket is read from the
       * moment it is accepted, and the hello is checked and answered in its `data`
       * handler, so `hello_ok` goes out on the turn the hello arrives and the
       * requests pipelined behind it are dispatched right after.
       */
      const accept = (stream: Duplex, peer: string): void => {
        if (closing || handshaking >= MAX_PENDING_HELLOS) {
          stream.destroy()
          return
        }
        handshaking++
        let problem: string | undefined = "no hello"
        const { framed, release } = unsafeMakeFramedStream(stream, {
          maxFrameBytes,
          firstFrame: {
            // a hello is a header and nothing else
            maxFrameBytes: Math.min(maxFrameBytes, 4 + codec.MAX_HEADER_BYTES),
            accept: (event) => {
              problem = helloProblem(event, jobId, tokenDigest)
              return problem === undefined
            }
          }
        })
        const admission = new Admission()
        const refuse = (): void => {
          admission.decide(false)
          release()
        }
        let settled = false
        const settle = (): boolean => {
          if (settled) return false
          settled = true
          handshaking--
          pendingHellos.delete(abandon)
          deadline.cancel()
          return true
        }
        const abandon = () => {
          if (settle()) refuse()
        }
        const expire = () => {
          if (!settle()) return
          refuse()
          logWarning(`closed a connection that did not say hello within ${Duration.format(helloTimeout)}`, peer)
        }
        pendingHellos.add(abandon)
        const deadline = hellos.add(helloMs, expire)
        framed.first((event) => {
          if (!settle()) return
          if (event === undefined) {
            refuse()
            run(Effect.logDebug("a connection closed before its hello").pipe(Effect.annotateLogs({ jobId, peer })))
            return
          }
          if (problem !== undefined) {
            refuse()
            return logWarning(`refused a connection: ${problem}`, peer)
          }
          if (claimed || closing || Either.isLeft(helloOk)) {
            refuse()
            return logWarning("refused a second connection while one is live", peer)
          }
          claimed = true
          framed.writeNow(helloOk.right.chunks)
          admission.decide(true)
        })
        run(connectionLife(framed, release, admission, peer))
      }

      serving = accept
      for (const { stream, peer } of waiting.splice(0)) accept(stream, peer)

      const unsafeRequest = (request: ChannelRequest, done: (outcome: RequestOutcome) => void): void => {
        if (liveNow !== undefined) return liveNow.unsafeRequest(request, done)
        done({ ok: false, error: new TargetUnreachable({ jobId }) })
      }
      const channel: JobChannel = {
        info,
        unsafeRequest,
        request: (request) =>
          Effect.suspend(() => (liveNow !== undefined ? liveNow.request(request) : Effect.fail(new TargetUnreachable({ jobId })))),
        isConnected: Effect.sync(() => liveNow !== undefined),
        awaitConnected: Effect.async<void>((resume) => {
          if (liveNow !== undefined) return resume(Effect.void)
          const wake = () => resume(Effect.void)
          connectWaiters.add(wake)
          return Effect.sync(() => {
            connectWaiters.delete(wake)
          })
        }),
        disconnect: Effect.suspend(() => (liveNow !== undefined ? liveNow.close : Effect.void)),
        pendingRequests: Effect.suspend(() => (liveNow !== undefined ? liveNow.pending : Effect.succeed(0)))
      }
      return channel
    })
    return { info, serve } satisfies BoundJobChannel
  })
