/**
 * Closing a listening server of a job channel's transport: it stops
 * accepting, and every socket it accepted is destroyed (a connection never
 * outlives its channel). Bounded: a server whose close never calls back is
 * given up on after 5 s.
 */
import { Duration, Effect } from "effect"
import type * as net from "node:net"

/** Closes `server` and destroys `sockets` (the ones it accepted). */
export const closeServer = (server: net.Server, sockets: Set<net.Socket>): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    server.close(() => resume(Effect.void))
    for (const socket of sockets) socket.destroy()
    sockets.clear()
  }).pipe(Effect.timeoutOption(Duration.seconds(5)), Effect.asVoid)
