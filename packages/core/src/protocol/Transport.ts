/**
 * Transport: the seam between a job's channel and the bytes' way to the job.
 * A transport listens for one job's channel and hands every accepted stream
 * to the channel server, which does the rest (hello, request/reply) the same
 * way for every transport. The unix socket (`UnixTransport.ts`) is the one
 * today; a TCP + TLS transport for jobs on other hosts is another
 * implementation of this interface (`TcpTransport.ts`).
 * Types only: it imports nothing of ours but `LaunchFailed`.
 *
 * @since 0.1.0
 */
import type { Effect, Scope } from "effect"
import type { Duplex } from "node:stream"
import type { LaunchFailed } from "../Errors.js"

/** Where a transport is asked to listen for a job's channel (checked before anything is made). */
export interface TransportAddressOptions {
  /** The job (named in errors and logs). */
  readonly jobId: string
  /** The channel's private directory (0700; made by the channel server between `check` and `listen`). */
  readonly dir: string
  /** The file name a socket in `dir` would have (`"ch.sock"` by default). */
  readonly socketName: string
}

/** What a transport gets to listen for one job's channel. */
export interface TransportListenOptions extends TransportAddressOptions {
  /** Owner of what the transport makes in `dir` (a container user); default: the parent's. */
  readonly owner?: { readonly uid: number; readonly gid: number }
  /** `dir` was kept from an earlier parent (adoption): a stale endpoint of this transport in it is replaced. */
  readonly reuse: boolean
  /**
   * Takes each accepted stream, synchronously from the transport's accept, with
   * a short description of the peer for logs (`"unix socket"`, `"10.0.0.7:51234"`).
   * The channel server then owns the stream: it reads it, admits or refuses its
   * hello, and destroys it when it is done.
   */
  readonly accept: (stream: Duplex, peer: string) => void
}

/** A listening transport endpoint of one job's channel. */
export interface TransportListener {
  /** The URL the job connects to (`FLEXEC_PARENT_URL`): `unix://<socket path>`, `tcp://host:port`, `tls://host:port`. */
  readonly url: string
  /** The unix socket's path; a transport without a socket file leaves it out. */
  readonly socketPath?: string
  /**
   * Variables the job needs besides `FLEXEC_PARENT_URL` to connect (the TLS
   * certificate pin `FLEXEC_CHANNEL_CERT_SHA256`); the engine adds them to the
   * job's environment. `FLEXEC_CHANNEL_*` names only
   * (others are dropped), never `FLEXEC_CHANNEL_TOKEN`.
   */
  readonly env?: Readonly<Record<string, string>>
}

/**
 * A way for jobs to reach their channel. Provide one with the `ChannelTransport`
 * tag (`ChannelTransport.layer(transport)`); without one, channels listen on a
 * unix socket in their directory.
 */
export interface ChannelTransportService {
  /** The transport's name for logs and errors (`"unix"`). */
  readonly name: string
  /**
   * Why this transport cannot listen for these options (e.g. a unix socket path
   * over 107 bytes), or `undefined`. Runs before the channel makes anything, so
   * a refusal leaves nothing behind.
   */
  readonly check: (options: TransportAddressOptions) => string | undefined
  /**
   * Listens, in the given scope, and says where. Closing the scope is the
   * transport's close: it stops listening, destroys every stream it accepted
   * that is still open, and removes what it made (a socket file). Fails with
   * `LaunchFailed` when it cannot listen.
   */
  readonly listen: (options: TransportListenOptions) => Effect.Effect<TransportListener, LaunchFailed, Scope.Scope>
}
