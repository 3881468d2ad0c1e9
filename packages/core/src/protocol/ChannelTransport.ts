/**
 * ChannelTransport: the service tag of the transport job channels listen
 * through. A `Context.Reference` whose default is the unix-socket transport,
 * so nothing needs to provide it: `openJobChannel`, `bindJobChannel` and the
 * engine keep their types. Provide another with `ChannelTransport.layer`.
 * Imports `Transport` (types) and `UnixTransport`.
 *
 * @since 0.1.0
 */
import { Context, Layer } from "effect"
import type { ChannelTransportService } from "./Transport.js"
import { unixTransport } from "./UnixTransport.js"

/** The transport job channels listen through (default: a unix socket in the channel's directory). */
export class ChannelTransport extends Context.Reference<ChannelTransport>()("@flexec/core/ChannelTransport", {
  defaultValue: (): ChannelTransportService => unixTransport
}) {
  /** Channels listen through `transport`. */
  static readonly layer = (transport: ChannelTransportService): Layer.Layer<ChannelTransport> => Layer.succeed(ChannelTransport, transport)
  /** Channels listen on a unix socket in their directory (what they do when no transport is provided). */
  static readonly unix: Layer.Layer<ChannelTransport> = Layer.succeed(ChannelTransport, unixTransport)
}
