/**
 * TcpTransport: job channels on TCP, plain (`tcp://host:port`, for loopback
 * and tests) or with TLS 1.3 (`tls://host:port`), for jobs on other hosts.
 * Each channel listens on its own ephemeral port (port 0), or all of them on
 * one fixed port, routed by the hello's job id (`HelloRouter`). Over TLS
 * the parent presents one certificate per transport (given, or self-signed
 * and made on the first listen) and the job pins it: every listener gives the
 * job `FLEXEC_CHANNEL_CERT_SHA256`. The job still authenticates with its
 * token in the hello. Imports `Transport` (types) and the certificate maker.
 *
 * @since 0.1.0
 */
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import { Buffer } from "node:buffer"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as tls from "node:tls"
import { LaunchFailed } from "../Errors.js"
import { closeServer } from "../internal/servers.js"
import { certSha256, type KeyAndCert, makeSelfSignedCert } from "../internal/selfSignedCert.js"
import { makeDeadlines } from "../internal/deadlines.js"
import type { Deadlines } from "../internal/deadlines.js"
import { makeHelloRouter } from "./HelloRouter.js"
import type { HelloRouter } from "./HelloRouter.js"
import type { ChannelTransportService, TransportListener, TransportListenOptions } from "./Transport.js"

/** The job variable holding the SHA-256 (64 lowercase hex digits) of the parent's certificate's DER bytes. */
export const CERT_PIN_ENV = "FLEXEC_CHANNEL_CERT_SHA256"

/** How a TLS channel gets its certificate. */
export interface TcpTlsOptions {
  /** The private key (PEM), with `cert`. Without both, a self-signed pair is used. */
  readonly key?: string | Buffer
  /** The certificate (PEM) of `key`. */
  readonly cert?: string | Buffer
  /**
   * A PEM file holding the self-signed key and certificate: read when it
   * exists, else made and written (0600, never through a symlink). A new parent
   * given the same file presents the same certificate, so the jobs of an
   * earlier parent (which pinned it) can reconnect to it. Ignored with `key`/`cert`.
   */
  readonly credentialsFile?: string
  /** How long a client has for the TLS handshake (default 10 s). */
  readonly handshakeTimeout?: Duration.DurationInput
}

/** Options of `makeTcpTransport`. */
export interface TcpTransportOptions {
  /** The address to bind (default `"127.0.0.1"`). */
  readonly host?: string
  /**
   * The port to bind (default 0: an ephemeral port per channel). A fixed port
   * serves every channel of the transport (each connection goes to the channel
   * its hello names); it is bound while a channel is open.
   */
  readonly port?: number
  /**
   * The host name or address jobs dial (the URL's host). Default: `host`, or
   * `os.hostname()` when `host` is a wildcard (`0.0.0.0`, `::`).
   */
  readonly advertiseHost?: string
  /** TLS 1.3 (`tls://`): `true` for a self-signed certificate, or how to get one. Default: plain TCP (`tcp://`). */
  readonly tls?: boolean | TcpTlsOptions
}

/** The credentials a TLS transport presents, and the pin jobs get. */
interface Credentials {
  readonly key: string | Buffer
  readonly cert: string | Buffer
  readonly pin: string
}

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const launchFailed = (jobId: string, reason: string, cause?: unknown) =>
  new LaunchFailed(cause === undefined ? { jobId, reason } : { jobId, reason, cause })

const isWildcard = (host: string): boolean => host === "0.0.0.0" || host === "::" || host === "[::]"

/** A host name (RFC 1123 labels) or an IP address. */
const isHost = (host: string): boolean =>
  net.isIP(host) !== 0 || (host.length <= 253 && /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$/.test(host))

/** `host:port` for a URL (IPv6 in brackets). */
const authority = (host: string, port: number): string => (net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`)

/** Reads the key and certificate from `file`, or makes them and writes it (0600, exclusive, no symlink). */
const loadOrMake = (file: string): KeyAndCert => {
  let text: string | undefined
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    try {
      text = fs.readFileSync(fd, "utf8")
    } finally {
      fs.closeSync(fd)
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error
  }
  if (text !== undefined) {
    const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/.exec(text)?.[0]
    const cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(text)?.[0]
    if (key === undefined || cert === undefined) throw new Error(`${file} does not hold a PEM private key and certificate`)
    return { key, cert }
  }
  const made = makeSelfSignedCert("flexec")
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
  try {
    fs.fchmodSync(fd, 0o600)
    fs.writeFileSync(fd, made.key + made.cert)
  } finally {
    fs.closeSync(fd)
  }
  return made
}

/** The secure context and pin of the given or self-signed key and certificate. */
const makeCredentials = (options: TcpTlsOptions): Credentials => {
  const { key, cert } =
    options.key !== undefined && options.cert !== undefined
      ? { key: options.key, cert: options.cert }
      : options.credentialsFile !== undefined
        ? loadOrMake(options.credentialsFile)
        : makeSelfSignedCert("flexec")
  const x509 = new crypto.X509Certificate(cert)
  if (!x509.checkPrivateKey(crypto.createPrivateKey(key))) throw new Error("the TLS certificate is not the private key's")
  // fails here, not at the first handshake, on a key or certificate OpenSSL refuses
  tls.createSecureContext({ key, cert, minVersion: "TLSv1.3" })
  return { key, cert, pin: certSha256(x509) }
}

/** Why these options cannot work, or `undefined`. */
const refusalOf = (options: TcpTransportOptions): string | undefined => {
  const { host = "127.0.0.1", port = 0, advertiseHost, tls: tlsOption } = options
  if (!isHost(host)) return `the tcp transport's bind host ${JSON.stringify(host)} is not a host name or IP address`
  if (!Number.isSafeInteger(port) || port < 0 || port > 65535) return `the tcp transport's port ${String(port)} is not an integer from 0 to 65535`
  if (advertiseHost !== undefined && (!isHost(advertiseHost) || isWildcard(advertiseHost))) {
    return `the tcp transport's advertised host ${JSON.stringify(advertiseHost)} is not a host name or IP address jobs can dial`
  }
  if (typeof tlsOption === "object") {
    if ((tlsOption.key === undefined) !== (tlsOption.cert === undefined)) return "the tcp transport's tls options need both key and cert, or neither"
    if (tlsOption.credentialsFile !== undefined && tlsOption.credentialsFile.length === 0) return "the tcp transport's tls credentialsFile is empty"
  }
  return undefined
}

/** Listens on host:port; resolves once bound (the port then known). */
const bind = (jobId: string, server: net.Server, host: string, port: number) =>
  Effect.async<net.Server, LaunchFailed>((resume) => {
    const onError = (error: Error) => {
      server.close()
      resume(Effect.fail(launchFailed(jobId, `cannot listen on ${authority(host, port)}: ${describe(error)}`, error)))
    }
    server.once("error", onError)
    server.listen({ host: host === "[::]" ? "::" : host, port, exclusive: true }, () => {
      server.off("error", onError)
      server.on("error", () => {})
      resume(Effect.succeed(server))
    })
  })

/**
 * A transport for job channels over TCP: `tcp://<advertiseHost>:<port>`, or
 * with `tls`, `tls://<advertiseHost>:<port>` (TLS 1.3 only; a stream reaches
 * the channel only after its handshake). `check` refuses bad options (nothing
 * is bound); each `listen` binds one server and its release closes it and
 * destroys the sockets it accepted, handshaking or not. The self-signed
 * certificate (and the `credentialsFile`) is made on the first TLS listen.
 *
 * @example
 * ```ts
 * const layer = ChannelTransport.layer(makeTcpTransport({ host: "0.0.0.0", advertiseHost: "node-7", tls: true }))
 * ```
 */
export const makeTcpTransport = (options: TcpTransportOptions = {}): ChannelTransportService => {
  const host = options.host ?? "127.0.0.1"
  const port = options.port ?? 0
  const tlsOptions: TcpTlsOptions | undefined = options.tls === true ? {} : options.tls === false ? undefined : options.tls
  const urlHost = options.advertiseHost ?? (isWildcard(host) ? os.hostname() : host)
  const handshakeMs = tlsOptions === undefined ? 0 : Duration.toMillis(Duration.decode(tlsOptions.handshakeTimeout ?? Duration.seconds(10)))
  const refusal = refusalOf(options)
  let credentials: Credentials | undefined

  const credentialsFor = (jobId: string): Effect.Effect<Credentials | undefined, LaunchFailed> =>
    tlsOptions === undefined
      ? Effect.succeed(undefined)
      : credentials !== undefined
      ? Effect.succeed(credentials)
      : Effect.try({
          try: () => (credentials ??= makeCredentials(tlsOptions)),
          catch: (error) => launchFailed(jobId, `cannot make the channel's TLS credentials: ${describe(error)}`, error)
        })

  /** A server whose accepted streams (after the TLS handshake) go to `accept`; `sockets` tracks them from their first byte. */
  const serverFor = (secure: Credentials | undefined, accept: (stream: net.Socket, peer: string) => void, sockets: Set<net.Socket>) => {
    const track = (socket: net.Socket): void => {
      sockets.add(socket)
      socket.once("close", () => sockets.delete(socket))
    }
    const peerOf = (socket: net.Socket): string => `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`
    if (secure === undefined) {
      return net.createServer({ allowHalfOpen: false, noDelay: true }, (socket) => {
        track(socket)
        accept(socket, peerOf(socket))
      })
    }
    const server = tls.createServer(
      { key: secure.key, cert: secure.cert, minVersion: "TLSv1.3", handshakeTimeout: handshakeMs, allowHalfOpen: false, noDelay: true },
      (socket) => accept(socket, peerOf(socket))
    )
    // the raw socket, tracked from its first byte: release destroys handshakes in progress too
    server.on("connection", track)
    server.on("tlsClientError", () => {})
    return server
  }

  const listenerOf = (secure: Credentials | undefined, boundPort: number): TransportListener => {
    const url = `${secure === undefined ? "tcp" : "tls"}://${authority(urlHost, boundPort)}`
    return secure === undefined ? { url } : { url, env: { [CERT_PIN_ENV]: secure.pin } }
  }

  /** Port 0: each channel binds its own ephemeral port. */
  const listenAlone = (listenOptions: TransportListenOptions): Effect.Effect<TransportListener, LaunchFailed, Scope.Scope> =>
    Effect.gen(function* () {
      const secure = yield* credentialsFor(listenOptions.jobId)
      const sockets = new Set<net.Socket>()
      const server = serverFor(secure, listenOptions.accept, sockets)
      const bound = yield* Effect.acquireRelease(bind(listenOptions.jobId, server, host, port), (s) => closeServer(s, sockets))
      return listenerOf(secure, (bound.address() as net.AddressInfo).port)
    })

  // A fixed port: one server for every channel of this transport, bound while one is open;
  // each connection goes to the channel its hello names (HelloRouter).
  let shared: { readonly server: net.Server; readonly sockets: Set<net.Socket>; readonly router: HelloRouter; readonly deadlines: Deadlines; channels: number } | undefined
  const sharedLock = Effect.unsafeMakeSemaphore(1)
  const listenShared = (listenOptions: TransportListenOptions): Effect.Effect<TransportListener, LaunchFailed, Scope.Scope> =>
    Effect.gen(function* () {
      const { jobId } = listenOptions
      const secure = yield* credentialsFor(jobId)
      const clock = yield* Effect.clock
      const port_ = yield* Effect.acquireRelease(
        sharedLock.withPermits(1)(
          Effect.gen(function* () {
            if (shared === undefined) {
              const sockets = new Set<net.Socket>()
              const deadlines = makeDeadlines(clock)
              const router = makeHelloRouter(handshakeMs > 0 ? handshakeMs : 10_000, deadlines)
              const server = yield* bind(jobId, serverFor(secure, router.route, sockets), host, port)
              shared = { server, sockets, router, deadlines, channels: 0 }
            }
            const remove = shared.router.add(jobId, listenOptions.accept)
            if (remove === undefined) return yield* launchFailed(jobId, `a channel of job ${jobId} already listens on ${authority(host, port)}`)
            shared.channels++
            return { remove, port: (shared.server.address() as net.AddressInfo).port }
          })
        ),
        ({ remove }) =>
          sharedLock.withPermits(1)(
            Effect.suspend(() => {
              remove()
              const current = shared
              if (current === undefined || --current.channels > 0) return Effect.void
              shared = undefined
              current.deadlines.close()
              return closeServer(current.server, current.sockets)
            })
          )
      )
      return listenerOf(secure, port_.port)
    })

  const listen = (listenOptions: TransportListenOptions): Effect.Effect<TransportListener, LaunchFailed, Scope.Scope> =>
    refusal !== undefined ? Effect.fail(launchFailed(listenOptions.jobId, refusal)) : port === 0 ? listenAlone(listenOptions) : listenShared(listenOptions)

  return {
    name: tlsOptions === undefined ? "tcp" : "tls",
    check: () => refusal,
    listen
  }
}
