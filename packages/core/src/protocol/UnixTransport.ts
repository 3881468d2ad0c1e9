/**
 * UnixTransport: a job's channel on a unix socket in the channel's private
 * directory (`<dir>/ch.sock`, 0600, owned by the job's user when it has one).
 * The default transport. Imports `Transport` (types) only.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { Buffer } from "node:buffer"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { LaunchFailed } from "../Errors.js"
import { closeServer } from "../internal/servers.js"
import type { ChannelTransportService, TransportListener, TransportListenOptions } from "./Transport.js"

/** Longest unix socket path (bytes; `sun_path` holds 108 with the terminating NUL). */
export const MAX_SOCKET_PATH_BYTES = 107

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const launchFailed = (jobId: string, reason: string, cause?: unknown) =>
  new LaunchFailed(cause === undefined ? { jobId, reason } : { jobId, reason, cause })

/**
 * Listens on `socketPath`; every accepted socket goes to `onSocket`. A unix
 * socket binds and listens synchronously: the common case takes no turn of the
 * event loop; a failure is reported by Node on the next tick, and waited for.
 */
const listenOn = (jobId: string, socketPath: string, onSocket: (socket: net.Socket) => void) =>
  Effect.suspend(() => {
    const server = net.createServer({ allowHalfOpen: false })
    let failure: Error | undefined
    let failed: ((error: Error) => void) | undefined
    const onError = (error: Error) => {
      failure = error
      failed?.(error)
    }
    server.on("connection", onSocket)
    server.once("error", onError)
    server.listen(socketPath)
    const refused = (error: Error) => {
      server.close()
      return launchFailed(jobId, `cannot listen on ${socketPath}: ${describe(error)}`, error)
    }
    if (server.listening) {
      server.off("error", onError)
      server.on("error", () => {})
      return Effect.succeed(server)
    }
    return Effect.async<net.Server, LaunchFailed>((resume) => {
      if (failure !== undefined) return resume(Effect.fail(refused(failure)))
      failed = (error) => resume(Effect.fail(refused(error)))
    })
  })

const listen = (options: TransportListenOptions): Effect.Effect<TransportListener, LaunchFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const { jobId, owner, accept } = options
    const socketPath = path.join(options.dir, options.socketName)
    // an adopted job's directory may hold the socket of the parent that made it
    if (options.reuse) {
      yield* Effect.try({
        try: () => fs.rmSync(socketPath, { force: true }),
        catch: (error) => launchFailed(jobId, `cannot remove the stale socket ${socketPath}: ${describe(error)}`, error)
      })
    }
    const sockets = new Set<net.Socket>()
    yield* Effect.acquireRelease(
      listenOn(jobId, socketPath, (socket) => {
        sockets.add(socket)
        socket.once("close", () => sockets.delete(socket))
        accept(socket, "unix socket")
      }),
      (server) => closeServer(server, sockets)
    )
    yield* Effect.try({
      try: () => {
        fs.chmodSync(socketPath, 0o600)
        if (owner) fs.chownSync(socketPath, owner.uid, owner.gid)
      },
      catch: (error) => launchFailed(jobId, `cannot set the owner of ${socketPath}: ${describe(error)}`, error)
    })
    return { url: `unix://${socketPath}`, socketPath }
  })

/** The unix-socket transport: `unix://<dir>/<socketName>`. */
export const unixTransport: ChannelTransportService = {
  name: "unix",
  check: ({ dir, socketName }) => {
    const socketPath = path.join(dir, socketName)
    const pathBytes = Buffer.byteLength(socketPath, "utf8")
    if (pathBytes <= MAX_SOCKET_PATH_BYTES) return undefined
    return `socket path ${socketPath} is ${pathBytes} bytes; unix socket paths are limited to ${MAX_SOCKET_PATH_BYTES} (use a shorter runtime directory)`
  },
  listen
}
