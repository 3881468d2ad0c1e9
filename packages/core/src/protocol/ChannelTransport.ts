/**
 * ChannelTransport: the service tag of the transport job channels listen
 * through. A `Context.Reference` whose default is the unix-socket transport,
 * so nothing needs to provide it: `openJobChannel`, `bindJobChannel` and the
 * engine keep their types. Provide another with `ChannelTransport.layer`.
 * Imports `Transport` (types) and `UnixTransport`.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer } from "effect"
import * as path from "node:path"
import { makeTcpTransport } from "./TcpTransport.js"
import type { TcpTransportOptions } from "./TcpTransport.js"
import type { ChannelTransportService } from "./Transport.js"
import { unixTransport } from "./UnixTransport.js"

/**
 * The executor option `channel`: how its jobs reach it. `{ transport: "unix" }`
 * (a socket in each job's private directory, for jobs on this host) or
 * `{ transport: "tcp", host?, port?, advertiseHost?, tls? }` (`tcp://` or, with
 * `tls`, `tls://` with a certificate the job pins; for jobs on other hosts).
 * Absent: the `ChannelTransport` in the executor's context (unix by default).
 */
export type ChannelOption = { readonly transport: "unix" } | ({ readonly transport: "tcp" } & TcpTransportOptions)

/** The transport job channels listen through (default: a unix socket in the channel's directory). */
export class ChannelTransport extends Context.Reference<ChannelTransport>()("@flexec/core/ChannelTransport", {
  defaultValue: (): ChannelTransportService => unixTransport
}) {
  /** Channels listen through `transport`. */
  static readonly layer = (transport: ChannelTransportService): Layer.Layer<ChannelTransport> => Layer.succeed(ChannelTransport, transport)
  /** Channels listen on a unix socket in their directory (what they do when no transport is provided). */
  static readonly unix: Layer.Layer<ChannelTransport> = Layer.succeed(ChannelTransport, unixTransport)
  /**
   * The transport an executor's `channel` option names, or the one in the
   * context when it names none. With `tls: true` (or TLS options naming no key
   * or file) the certificate and its key are kept, 0600, in
   * `<runtimeDir>/channel-tls.pem`, so a later parent of the instance presents
   * the certificate its jobs pinned. An unknown `transport`, and a tcp channel
   * with `adopt` on an ephemeral port (a job dials the address it was given at
   * launch), are defects (`TypeError`), as a backend's invalid options are.
   */
  static readonly fromOption = (
    option: ChannelOption | undefined,
    instance: { readonly runtimeDir: string; readonly adopt: boolean }
  ): Effect.Effect<ChannelTransportService> => {
    if (option === undefined) return ChannelTransport
    if (option.transport === "unix") return Effect.succeed(unixTransport)
    if (option.transport !== "tcp") {
      return Effect.die(new TypeError(`channel.transport must be "unix" or "tcp", not ${JSON.stringify((option as { transport?: unknown }).transport)}`))
    }
    const { transport: _, tls, ...tcp } = option
    if (instance.adopt && (tcp.port ?? 0) === 0) {
      return Effect.die(new TypeError('channel: a tcp channel with recover: "adopt" needs a fixed port (a job dials the address it was given at launch)'))
    }
    const kept = path.join(instance.runtimeDir, "channel-tls.pem")
    const tlsOption = tls === true ? { credentialsFile: kept } : tls === undefined || tls === false || tls.key !== undefined || tls.credentialsFile !== undefined ? tls : { ...tls, credentialsFile: kept }
    return Effect.sync(() => makeTcpTransport(tlsOption === undefined ? tcp : { ...tcp, tls: tlsOption }))
  }
}
