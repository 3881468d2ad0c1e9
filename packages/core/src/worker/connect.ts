/**
 * Opening a stream to the parent from `FLEXEC_PARENT_URL`: `unix://<path>`,
 * `tcp://host:port` or `tls://host:port`. Over TLS the parent's certificate is
 * pinned by its SHA-256 (`FLEXEC_CHANNEL_CERT_SHA256`), compared in constant
 * time once the handshake is done; nothing written (the hello and its token)
 * leaves before the pin matched. Internal to the worker runtime.
 */
import { Buffer } from "node:buffer"
import type * as crypto from "node:crypto"
import * as net from "node:net"
import type { Duplex } from "node:stream"
import type * as tls from "node:tls"
import { ConfigError } from "./errors.js"
import type { ConnectOptions } from "./types.js"

/** Connects to `unix://<path>`; any other URL is a `ConfigError`. */
export const connectUnix = (url: string): Duplex => {
  if (!url.startsWith("unix://") || url.length <= "unix://".length) {
    throw new ConfigError(`FLEXEC_PARENT_URL must be unix://<socket path>, got ${JSON.stringify(url)}`)
  }
  return net.connect({ path: url.slice("unix://".length) })
}

/** `host` and `port` of `tcp://host:port` / `tls://host:port`; a `ConfigError` for anything else. */
const hostPort = (url: string): { host: string; port: number } => {
  const bad = (): never => {
    throw new ConfigError(`FLEXEC_PARENT_URL must be unix://<socket path>, tcp://<host>:<port> or tls://<host>:<port>, got ${JSON.stringify(url)}`)
  }
  const match = /^(?:tcp|tls):\/\/(\[[0-9A-Fa-f:.]+\]|[^:/?#@[\]\s]+):(\d{1,5})$/.exec(url)
  if (match === null) return bad()
  const port = Number(match[2])
  if (port < 1 || port > 65535) return bad()
  const host = match[1]!.startsWith("[") ? match[1]!.slice(1, -1) : match[1]!
  if (match[1]!.startsWith("[") && !net.isIPv6(host)) return bad()
  return { host, port }
}

/**
 * `node:tls` and `node:crypto`, loaded on the first `tls://` connect only: loading them
 * costs a job ~1.6 ms of start (measured), which a job on a unix or tcp channel never pays.
 */
const tlsModules = (): { readonly tls: typeof tls; readonly crypto: typeof crypto } => ({
  tls: process.getBuiltinModule("node:tls"),
  crypto: process.getBuiltinModule("node:crypto")
})

/** The lowercase hex SHA-256 of the peer certificate's DER bytes, or `undefined` without one. */
const peerSha256 = (socket: tls.TLSSocket, hash: typeof crypto.createHash): Buffer | undefined => {
  const raw = socket.getPeerCertificate(true)?.raw
  return raw === undefined ? undefined : hash("sha256").update(raw).digest()
}

/**
 * Connects to the parent at `url`: `unix://<path>`, `tcp://host:port` (plain;
 * loopback and tests) or `tls://host:port` (TLS 1.3, the certificate checked
 * against `options.certSha256`). A bad URL or a `tls://` URL without a pin
 * throws a `ConfigError`; a certificate that is not the pinned one destroys the
 * socket with a `ConfigError` before anything was written to it.
 */
export const connectParent = (url: string, options: ConnectOptions = {}): Duplex => {
  if (url.startsWith("unix://")) return connectUnix(url)
  const { host, port } = hostPort(url)
  if (url.startsWith("tcp://")) return net.connect({ host, port, noDelay: true })
  const pin = options.certSha256
  if (pin === undefined || !/^[0-9a-f]{64}$/.test(pin)) {
    throw new ConfigError(
      pin === undefined
        ? "FLEXEC_CHANNEL_CERT_SHA256 is not set: a tls:// parent's certificate must be pinned"
        : "FLEXEC_CHANNEL_CERT_SHA256 must be 64 lowercase hex digits (the SHA-256 of the parent's certificate)"
    )
  }
  const expected = Buffer.from(pin, "hex")
  const { tls, crypto } = tlsModules()
  const socket = tls.connect({
    host,
    port,
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    // the pin authenticates the parent, not a CA
    rejectUnauthorized: false,
    minVersion: "TLSv1.3"
  })
  // frames go out as they are written (a reply's header and body are two writes)
  socket.setNoDelay(true)
  // what the runtime writes (hello, token) waits here until the pin matched
  socket.cork()
  socket.once("secureConnect", () => {
    const actual = peerSha256(socket, crypto.createHash)
    if (actual === undefined || actual.length !== expected.length || !crypto.timingSafeEqual(actual, expected)) {
      const seen = actual === undefined ? "no certificate" : `a certificate with SHA-256 ${actual.toString("hex")}`
      socket.destroy(new ConfigError(`the parent at ${url} presented ${seen}, not the one FLEXEC_CHANNEL_CERT_SHA256 pins`))
      return
    }
    socket.uncork()
  })
  return socket
}
