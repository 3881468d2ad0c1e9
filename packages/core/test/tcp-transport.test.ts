/**
 * The TCP + TLS transport with real sockets on loopback: what a client on the
 * wire sees (the URL's port, the certificate, the hello's answer), the pin the
 * job gets, the credentials file, and that closing a channel closes its port.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as tls from "node:tls"
import { makeSelfSignedCert } from "../src/internal/selfSignedCert.js"
import { openJobChannel } from "../src/protocol/ChannelServer.js"
import type { JobChannelOptions } from "../src/protocol/ChannelServer.js"
import { ChannelTransport } from "../src/protocol/ChannelTransport.js"
import { encodeFrame, FrameDecoder } from "../src/protocol/Frame.js"
import type { DecodeEvent } from "../src/protocol/Frame.js"
import { CERT_PIN_ENV, makeTcpTransport } from "../src/protocol/TcpTransport.js"
import type { TcpTransportOptions } from "../src/protocol/TcpTransport.js"

const base = fs.mkdtempSync(path.join(os.tmpdir(), "fxtcp-"))
afterAll(() => fs.rmSync(base, { recursive: true, force: true }))
let dirs = 0
const nextDir = () => path.join(base, `j${++dirs}`)

const JOB = "job-1"
const TOKEN = "t0ken-of-job-1"

const options = (overrides: Partial<JobChannelOptions> = {}): JobChannelOptions => ({
  jobId: JOB,
  token: TOKEN,
  dir: nextDir(),
  onRequest: () => Option.some(Effect.succeed(undefined)),
  ...overrides
})

const open = (transport: TcpTransportOptions, overrides: Partial<JobChannelOptions> = {}) =>
  openJobChannel(options(overrides)).pipe(Effect.provide(ChannelTransport.layer(makeTcpTransport(transport))))

const portOf = (url: string): number => Number(new URL(url).port)

/** What a client saw: the decoded frames, the close, errors; and the socket. */
interface Seen {
  readonly socket: net.Socket
  readonly events: Array<DecodeEvent>
  closed: boolean
  error: string | undefined
}

const watch = (socket: net.Socket): Seen => {
  const seen: Seen = { socket, events: [], closed: false, error: undefined }
  const decoder = new FrameDecoder()
  socket.on("data", (chunk: Buffer) => decoder.push(chunk, (event) => seen.events.push(event)))
  socket.on("close", () => (seen.closed = true))
  socket.on("error", (error) => (seen.error = error.message))
  return seen
}

const hello = (socket: net.Socket, token: string) => {
  for (const chunk of encodeFrame({ kind: "hello", version: 1, jobId: JOB, token })) socket.write(chunk)
}

/** Polls every 10 ms until `check` holds; dies naming `what` after `ms`. */
const waitFor = (check: () => boolean, what: string, ms = 5000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("10 millis")
    }
  })

/** Resolves with the connect outcome of a plain TCP client on `port`: "connected" or the error code. */
const tryConnect = (port: number) =>
  Effect.async<string>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed("connected"))
    })
    socket.once("error", (error: NodeJS.ErrnoException) => resume(Effect.succeed(error.code ?? error.message)))
  })

const kinds = (seen: Seen) => seen.events.map((e) => (e.type === "frame" ? e.header.kind : e.type))

describe("the self-signed certificate", () => {
  it("is a v3 certificate signed by its own key, for the key it comes with", () => {
    const { key, cert } = makeSelfSignedCert("flexec")
    const x509 = new crypto.X509Certificate(cert)
    expect(x509.subject).toBe("CN=flexec")
    expect(x509.issuer).toBe("CN=flexec")
    expect(x509.verify(x509.publicKey)).toBe(true)
    expect(x509.checkPrivateKey(crypto.createPrivateKey(key))).toBe(true)
    expect(new Date(x509.validFrom).getTime()).toBeLessThan(Date.now())
    expect(new Date(x509.validTo).getTime()).toBeGreaterThan(Date.now() + 365 * 86_400_000)
    // two are never the same (fresh key, random serial)
    expect(new crypto.X509Certificate(makeSelfSignedCert("flexec").cert).serialNumber).not.toBe(x509.serialNumber)
  })

  it("is read by openssl as well (skipped when there is no openssl command)", (context) => {
    let version: string
    try {
      version = execFileSync("openssl", ["version"], { encoding: "utf8" })
    } catch {
      console.warn("SKIPPED: no openssl command on PATH; install openssl to check the certificate with it")
      return context.skip()
    }
    expect(version).toMatch(/SSL/)
    const file = path.join(base, "cert.pem")
    fs.writeFileSync(file, makeSelfSignedCert("flexec").cert)
    const text = execFileSync("openssl", ["x509", "-in", file, "-noout", "-text"], { encoding: "utf8" })
    expect(text).toContain("Version: 3")
    expect(text).toContain("ecdsa-with-SHA256")
    expect(text).toContain("prime256v1")
    // self-signed: it verifies as its own trust anchor
    expect(execFileSync("openssl", ["verify", "-CAfile", file, file], { encoding: "utf8" })).toContain(": OK")
  })
})

describe("makeTcpTransport: plain tcp://", () => {
  it.scopedLive("listens on an ephemeral loopback port per channel; the right token gets hello_ok, a wrong one is refused", () =>
    Effect.gen(function* () {
      const dir = nextDir()
      const first = yield* open({}, { dir })
      const second = yield* open({})
      expect(first.info.url).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/)
      expect(portOf(first.info.url)).not.toBe(portOf(second.info.url))
      expect(first.info.env).toBeUndefined()
      // no socket file in the channel's directory
      expect(fs.readdirSync(dir)).toEqual([])

      const wrong = watch(net.connect({ host: "127.0.0.1", port: portOf(first.info.url) }))
      hello(wrong.socket, "not-the-token")
      yield* waitFor(() => wrong.closed, "the refused connection closed")
      expect(wrong.events).toEqual([])
      expect(yield* first.isConnected).toBe(false)

      const right = watch(net.connect({ host: "127.0.0.1", port: portOf(first.info.url) }))
      hello(right.socket, TOKEN)
      yield* first.awaitConnected
      yield* waitFor(() => right.events.length > 0, "hello_ok")
      expect(kinds(right)).toEqual(["hello_ok"])
      right.socket.destroy()
    })
  )

  it.scopedLive("uses the advertised host in the URL; a fixed port another transport holds is EADDRINUSE, nothing left behind", () =>
    Effect.gen(function* () {
      const port = yield* Effect.scoped(Effect.map(open({}), (probe) => portOf(probe.info.url)))
      const fixed = yield* open({ port, advertiseHost: "node-7.cluster" })
      expect(fixed.info.url).toBe(`tcp://node-7.cluster:${port}`)
      const dir = nextDir()
      const busy = yield* Effect.exit(Effect.scoped(open({ port }, { dir })))
      expect(Exit.isFailure(busy)).toBe(true)
      if (Exit.isFailure(busy)) expect(busy.cause).toMatchObject({ error: { _tag: "LaunchFailed", reason: expect.stringContaining("EADDRINUSE") } })
      // nothing half-done: the refused channel's directory is gone
      expect(fs.existsSync(dir)).toBe(false)
    })
  )

  it.live("one fixed port serves every channel of a transport: each connection reaches the channel its hello names; the port closes with the last", () =>
    Effect.gen(function* () {
      const port = yield* Effect.scoped(Effect.map(open({}), (probe) => portOf(probe.info.url)))
      const transport = makeTcpTransport({ port })
      const scope = yield* Scope.make()
      const channelOf = (jobId: string, token: string) =>
        openJobChannel(options({ jobId, token })).pipe(Effect.provide(ChannelTransport.layer(transport)), Scope.extend(scope))
      const a = yield* channelOf("job-a", "token-a")
      const b = yield* channelOf("job-b", "token-b")
      expect(a.info.url).toBe(`tcp://127.0.0.1:${port}`)
      expect(b.info.url).toBe(a.info.url)
      const say = (jobId: string, token: string) => {
        const seen = watch(net.connect({ host: "127.0.0.1", port }))
        for (const chunk of encodeFrame({ kind: "hello", version: 1, jobId, token })) seen.socket.write(chunk)
        return seen
      }
      // b first: the routing is by the hello, not by the order of the channels
      const toB = say("job-b", "token-b")
      yield* b.awaitConnected
      yield* waitFor(() => toB.events.length > 0, "job-b's hello_ok")
      expect(kinds(toB)).toEqual(["hello_ok"])
      expect(yield* a.isConnected).toBe(false)
      // a's token for b's channel is refused by b's channel; an unknown job and a first frame that is not a hello are closed unanswered
      const crossed = say("job-b", "token-a")
      const unknown = say("job-z", "token-a")
      const garbage = watch(net.connect({ host: "127.0.0.1", port }))
      for (const chunk of encodeFrame({ kind: "request", id: 1, channel: "c", topic: "t" })) garbage.socket.write(chunk)
      yield* waitFor(() => crossed.closed && unknown.closed && garbage.closed, "the three wrong connections closed")
      expect([crossed.events, unknown.events, garbage.events]).toEqual([[], [], []])
      const toA = say("job-a", "token-a")
      yield* a.awaitConnected
      yield* waitFor(() => toA.events.length > 0, "job-a's hello_ok")
      expect(kinds(toA)).toEqual(["hello_ok"])
      yield* Scope.close(scope, Exit.void)
      yield* waitFor(() => toA.closed && toB.closed, "both connections closed with their channels")
      expect(yield* tryConnect(port)).toBe("ECONNREFUSED")
    })
  )

  it.scopedLive("check refuses bad options before anything is made", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<[TcpTransportOptions, string]> = [
        [{ host: "not a host" }, "bind host"],
        [{ port: 70000 }, "port 70000"],
        [{ port: 1.5 }, "port 1.5"],
        [{ advertiseHost: "0.0.0.0" }, "advertised host"],
        [{ tls: { key: "k" } }, "both key and cert"]
      ]
      for (const [transport, reason] of cases) {
        expect(makeTcpTransport(transport).check({ jobId: JOB, dir: "x", socketName: "s" })).toContain(reason)
        const dir = nextDir()
        const refused = yield* Effect.exit(Effect.scoped(open(transport, { dir })))
        expect(Exit.isFailure(refused)).toBe(true)
        if (Exit.isFailure(refused)) expect(refused.cause).toMatchObject({ error: { _tag: "LaunchFailed", reason: expect.stringContaining(reason) } })
        expect(fs.existsSync(dir)).toBe(false)
      }
      expect(makeTcpTransport({ host: "::1" }).check({ jobId: JOB, dir: "x", socketName: "s" })).toBeUndefined()
    })
  )

  it.live("closing the channel closes its port and the connections it accepted", () =>
    Effect.gen(function* () {
      const { port, client } = yield* Effect.scoped(
        Effect.gen(function* () {
          const channel = yield* open({})
          const port = portOf(channel.info.url)
          expect(yield* tryConnect(port)).toBe("connected")
          const client = watch(net.connect({ host: "127.0.0.1", port }))
          hello(client.socket, TOKEN)
          yield* channel.awaitConnected
          return { port, client }
        })
      )
      yield* waitFor(() => client.closed, "the accepted connection closed")
      expect(yield* tryConnect(port)).toBe("ECONNREFUSED")
    })
  )
})

describe("makeTcpTransport: tls://", () => {
  /** A TLS client; resolves once the handshake is done (or failed). */
  const tlsClient = (port: number, extra: tls.ConnectionOptions = {}) =>
    Effect.async<{ seen: Seen; socket: tls.TLSSocket; secure: boolean }>((resume) => {
      const socket = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...extra })
      const seen = watch(socket)
      socket.once("secureConnect", () => resume(Effect.succeed({ seen, socket, secure: true })))
      socket.once("close", () => resume(Effect.succeed({ seen, socket, secure: false })))
    })

  it.scopedLive("presents the transport's certificate over TLS 1.3, gives the job its SHA-256, and carries the hello", () =>
    Effect.gen(function* () {
      const transport = makeTcpTransport({ tls: true })
      const channel = yield* openJobChannel(options()).pipe(Effect.provide(ChannelTransport.layer(transport)))
      const other = yield* openJobChannel(options()).pipe(Effect.provide(ChannelTransport.layer(transport)))
      expect(channel.info.url).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/)
      const pin = channel.info.env?.[CERT_PIN_ENV]
      expect(pin).toMatch(/^[0-9a-f]{64}$/)
      // one certificate per transport: every channel of it gives the same pin
      expect(other.info.env?.[CERT_PIN_ENV]).toBe(pin)

      const { seen, socket, secure } = yield* tlsClient(portOf(channel.info.url))
      expect(secure).toBe(true)
      expect(socket.getProtocol()).toBe("TLSv1.3")
      const der = socket.getPeerCertificate(true).raw
      expect(crypto.createHash("sha256").update(der).digest("hex")).toBe(pin)
      hello(socket, TOKEN)
      yield* channel.awaitConnected
      yield* waitFor(() => seen.events.length > 0, "hello_ok")
      expect(kinds(seen)).toEqual(["hello_ok"])
      socket.destroy()
    })
  )

  it.scopedLive("refuses a client that offers at most TLS 1.2, and a plain-text hello never reaches the channel", () =>
    Effect.gen(function* () {
      const channel = yield* open({ tls: true })
      const port = portOf(channel.info.url)
      const old = yield* tlsClient(port, { maxVersion: "TLSv1.2" })
      expect(old.secure).toBe(false)
      const plain = watch(net.connect({ host: "127.0.0.1", port }))
      hello(plain.socket, TOKEN)
      yield* waitFor(() => plain.closed, "the plain-text connection closed")
      expect(plain.events).toEqual([])
      expect(yield* channel.isConnected).toBe(false)
    })
  )

  it.scopedLive("a given key and certificate are presented as they are", () =>
    Effect.gen(function* () {
      const given = makeSelfSignedCert("given")
      const channel = yield* open({ tls: { key: given.key, cert: given.cert } })
      const { socket, secure } = yield* tlsClient(portOf(channel.info.url))
      expect(secure).toBe(true)
      expect(socket.getPeerCertificate().subject?.CN).toBe("given")
      expect(channel.info.env?.[CERT_PIN_ENV]).toBe(
        crypto.createHash("sha256").update(new crypto.X509Certificate(given.cert).raw).digest("hex")
      )
      socket.destroy()
      // a key that is not the certificate's: LaunchFailed, nothing left
      const dir = nextDir()
      const mismatched = yield* Effect.exit(Effect.scoped(open({ tls: { key: makeSelfSignedCert("x").key, cert: given.cert } }, { dir })))
      expect(Exit.isFailure(mismatched)).toBe(true)
      if (Exit.isFailure(mismatched)) {
        expect(mismatched.cause).toMatchObject({ error: { _tag: "LaunchFailed", reason: expect.stringContaining("not the private key's") } })
      }
      expect(fs.existsSync(dir)).toBe(false)
    })
  )

  it.scopedLive("the credentials file is written 0600 on the first listen, and a new transport given it presents the same certificate", () =>
    Effect.gen(function* () {
      const file = path.join(base, `creds-${dirs}.pem`)
      const transport = makeTcpTransport({ tls: { credentialsFile: file } })
      // made lazily: nothing written before a channel listens
      expect(fs.existsSync(file)).toBe(false)
      const first = yield* openJobChannel(options()).pipe(Effect.provide(ChannelTransport.layer(transport)))
      expect(fs.statSync(file).mode & 0o777).toBe(0o600)
      expect(fs.readFileSync(file, "utf8")).toContain("-----BEGIN PRIVATE KEY-----")
      const second = yield* open({ tls: { credentialsFile: file } })
      expect(second.info.env?.[CERT_PIN_ENV]).toBe(first.info.env?.[CERT_PIN_ENV])
      const { socket } = yield* tlsClient(portOf(second.info.url))
      expect(crypto.createHash("sha256").update(socket.getPeerCertificate(true).raw).digest("hex")).toBe(first.info.env?.[CERT_PIN_ENV])
      socket.destroy()
      // a symlink in its place is not followed
      const link = path.join(base, `link-${dirs}.pem`)
      fs.symlinkSync(file, link)
      const dir = nextDir()
      const refused = yield* Effect.exit(Effect.scoped(open({ tls: { credentialsFile: link } }, { dir })))
      expect(Exit.isFailure(refused)).toBe(true)
      expect(fs.existsSync(dir)).toBe(false)
    })
  )

  it.live("closing the channel closes its port and destroys a handshake in progress", () =>
    Effect.gen(function* () {
      const { port, raw } = yield* Effect.scoped(
        Effect.gen(function* () {
          const channel = yield* open({ tls: true })
          const port = portOf(channel.info.url)
          // a raw TCP client that never starts the handshake
          const raw = watch(net.connect({ host: "127.0.0.1", port }))
          yield* Effect.async<void>((resume) => {
            raw.socket.once("connect", () => resume(Effect.void))
          })
          return { port, raw }
        })
      )
      yield* waitFor(() => raw.closed, "the handshaking connection closed")
      expect(yield* tryConnect(port)).toBe("ECONNREFUSED")
    })
  )
})
