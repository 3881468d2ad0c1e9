/**
 * The worker runtime over tcp:// and tls:// against a real job channel on
 * loopback (the channel server with `makeTcpTransport`, the runtime's own
 * `connectParent`): payloads both ways byte-exact, the token and the
 * certificate pin refused when wrong, bad URLs and a missing pin refused as
 * configuration errors (exit 103) before anything reaches the parent.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { Buffer } from "node:buffer"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as tls from "node:tls"
import * as Message from "../src/Message.js"
import { makeSelfSignedCert } from "../src/internal/selfSignedCert.js"
import { openJobChannel } from "../src/protocol/ChannelServer.js"
import type { IncomingRequest } from "../src/protocol/ChannelServer.js"
import { ChannelTransport } from "../src/protocol/ChannelTransport.js"
import { CERT_PIN_ENV, makeTcpTransport } from "../src/protocol/TcpTransport.js"
import type { TcpTransportOptions } from "../src/protocol/TcpTransport.js"
import { connectParent } from "../src/worker/connect.js"
import { runJobWith } from "../src/worker/runtime.js"
import type { JobSpec } from "../src/worker/types.js"

const base = fs.mkdtempSync(path.join(os.tmpdir(), "fxtw-"))
afterAll(() => fs.rmSync(base, { recursive: true, force: true }))
let dirs = 0
const nextDir = () => path.join(base, `j${++dirs}`)

const JOB = "job-1"
const TOKEN = "t0ken-of-job-1"
const MIB = 1024 * 1024
const hasIpv6Loopback = Object.values(os.networkInterfaces()).some((list) => list?.some((a) => a.address === "::1"))
if (!hasIpv6Loopback) console.warn("SKIPPED: the IPv6 test of tcp-worker.test.ts needs ::1 on a loopback interface")

/** Polls every 10 ms until `check` holds; dies naming `what` after `ms`. */
const waitFor = (check: () => boolean, what: string, ms = 10_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("10 millis")
    }
  })

/** A job channel over the tcp transport; every request the job makes is kept in `received`. */
const channelOver = (transport: TcpTransportOptions) =>
  Effect.gen(function* () {
    const received: Array<IncomingRequest> = []
    const dir = nextDir()
    const channel = yield* openJobChannel({
      jobId: JOB,
      token: TOKEN,
      dir,
      onRequest: (request) => {
        received.push(request)
        if (request.topic === "upload") {
          const bytes = request.message.payload as Uint8Array
          return Option.some(Effect.succeed({ length: bytes.byteLength, sha256: sha256(bytes) }))
        }
        return Option.some(Effect.succeed(undefined))
      }
    }).pipe(Effect.provide(ChannelTransport.layer(makeTcpTransport(transport))))
    return { channel, received, dir }
  })

const sha256 = (bytes: Uint8Array): string => crypto.createHash("sha256").update(bytes).digest("hex")

/** The job's environment for the worker runtime, as the engine builds it. */
const jobEnv = (url: string, dir: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> => ({
  FLEXEC_PARENT_URL: url,
  FLEXEC_CHANNEL_TOKEN: TOKEN,
  FLEXEC_JOB_ID: JOB,
  FLEXEC_JOB_DIR: dir,
  FLEXEC_RECONNECT_MS: "1500",
  ...extra
})

/** Runs the worker runtime in this process over its real connector. */
const runWorker = (spec: JobSpec, env: Record<string, string | undefined>) => {
  const logs: Array<string> = []
  const exits: Array<number> = []
  const done = runJobWith(spec, { env, connect: connectParent, exit: (code) => exits.push(code), log: (line) => logs.push(line) })
  return { done, logs, exits, env }
}

/** What the job received on `echo`: each payload's bytes. */
const echoJob = () => {
  const got: Array<Buffer> = []
  let finish: () => void = () => {}
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const spec: JobSpec = {
    run: async (ctx) => {
      // the job's own request to the parent, 1 MiB of bytes
      const upload = crypto.randomBytes(MIB)
      const answer = await ctx.request({ channel: "app", topic: "upload", message: { payload: upload } })
      await finished
      return (answer.payload as { sha256: string }).sha256 === sha256(upload) ? 0 : 9
    },
    handlers: {
      app: {
        echo: (message) => {
          const bytes = Buffer.from(message.payload as Uint8Array)
          got.push(bytes)
          return bytes
        },
        done: () => {
          finish()
          return "bye"
        }
      }
    }
  }
  return { spec, got }
}

const carriesPayloads = (transport: TcpTransportOptions, scheme: string) =>
  Effect.gen(function* () {
    const { channel, received, dir } = yield* channelOver(transport)
    expect(channel.info.url.startsWith(`${scheme}://127.0.0.1:`)).toBe(true)
    const job = echoJob()
    const worker = runWorker(job.spec, jobEnv(channel.info.url, dir, channel.info.env))
    yield* channel.awaitConnected
    for (const size of [0, MIB]) {
      const sent = crypto.randomBytes(size)
      const reply = yield* channel.request({ channel: "app", topic: "echo", message: Message.make(new Uint8Array(sent)), timeout: 10_000 })
      // what the job received is what was sent, byte for byte; and back
      const got = job.got.at(-1)!
      expect(got.byteLength).toBe(size)
      expect(Buffer.compare(got, sent)).toBe(0)
      const back = reply.payload instanceof Uint8Array ? reply.payload : new Uint8Array(0)
      expect(Buffer.compare(Buffer.from(back), sent)).toBe(0)
    }
    // the job's 1 MiB upload reached the parent intact (the job checks the digest the parent computed)
    yield* waitFor(() => received.some((r) => r.topic === "upload"), "the job's upload")
    expect((received.find((r) => r.topic === "upload")!.message.payload as Uint8Array).byteLength).toBe(MIB)
    yield* channel.request({ channel: "app", topic: "done", message: Message.make(), timeout: 5000 })
    expect(yield* Effect.promise(() => worker.done)).toBe(0)
    expect(received.filter((r) => r.topic === "notify_job_status").map((r) => r.message.payload)).toEqual([{ status: 2 }, { status: 3 }])
    // the secrets were deleted from the job's environment, the pin with the token
    expect(worker.env.FLEXEC_CHANNEL_TOKEN).toBeUndefined()
    expect(worker.env[CERT_PIN_ENV]).toBeUndefined()
  })

/** A TLS server that counts connections and the application bytes it received. */
const countingTlsServer = () =>
  Effect.acquireRelease(
    Effect.async<{ port: number; connections: () => number; bytes: () => number; server: tls.Server }>((resume) => {
      const { key, cert } = makeSelfSignedCert("impostor")
      let connections = 0
      let bytes = 0
      const server = tls.createServer({ key, cert, minVersion: "TLSv1.3" }, (socket) => {
        socket.on("data", (chunk: Buffer) => (bytes += chunk.byteLength))
        socket.on("error", () => {})
      })
      server.on("connection", () => connections++)
      server.on("tlsClientError", () => {})
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ port: (server.address() as { port: number }).port, connections: () => connections, bytes: () => bytes, server }))
      )
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
  )

describe("the worker runtime over tcp:// and tls://", () => {
  it.scopedLive("tcp://: requests both ways carry 0 B and 1 MiB byte-exact", () => carriesPayloads({}, "tcp"))

  it.scopedLive("tls://: requests both ways carry 0 B and 1 MiB byte-exact, with the certificate pinned", () => carriesPayloads({ tls: true }, "tls"))

  it.scopedLive.skipIf(!hasIpv6Loopback)("tls:// on IPv6 loopback: the URL brackets the address and the worker dials it (skipped without ::1)", () =>
    Effect.gen(function* () {
      const { channel, received, dir } = yield* channelOver({ host: "::1", tls: true })
      expect(channel.info.url).toMatch(/^tls:\/\/\[::1\]:\d+$/)
      const worker = runWorker({ run: () => 0 }, jobEnv(channel.info.url, dir, channel.info.env))
      expect(yield* Effect.promise(() => worker.done)).toBe(0)
      expect(received.filter((r) => r.topic === "notify_job_status").map((r) => r.message.payload)).toEqual([{ status: 2 }, { status: 3 }])
    })
  )

  it.scopedLive("tls://: a wrong token is refused by the parent; the job never runs and gives up (104)", () =>
    Effect.gen(function* () {
      const { channel, received, dir } = yield* channelOver({ tls: true })
      let ran = false
      const worker = runWorker(
        { run: () => ((ran = true), 0) },
        { ...jobEnv(channel.info.url, dir, channel.info.env), FLEXEC_CHANNEL_TOKEN: "not-the-token", FLEXEC_RECONNECT_MS: "600" }
      )
      expect(yield* Effect.promise(() => worker.done)).toBe(104)
      expect(ran).toBe(false)
      expect(yield* channel.isConnected).toBe(false)
      expect(received).toEqual([])
    })
  )

  it.scopedLive("tls://: a certificate that is not the pinned one is refused by the worker (103) before it wrote a byte", () =>
    Effect.gen(function* () {
      const impostor = yield* countingTlsServer()
      const pinned = crypto.createHash("sha256").update(new crypto.X509Certificate(makeSelfSignedCert("real").cert).raw).digest("hex")
      const worker = runWorker({ run: () => 0 }, jobEnv(`tls://127.0.0.1:${impostor.port}`, nextDir(), { [CERT_PIN_ENV]: pinned }))
      expect(yield* Effect.promise(() => worker.done)).toBe(103)
      // one attempt (a refusal is not retried), and the hello with its token never left
      expect(impostor.connections()).toBe(1)
      expect(impostor.bytes()).toBe(0)
      expect(worker.logs.join("\n")).toMatch(/not the one FLEXEC_CHANNEL_CERT_SHA256 pins/)

      // against the real channel, another transport's pin: nothing connects
      const { channel, received, dir } = yield* channelOver({ tls: true })
      const other = yield* channelOver({ tls: true })
      const wrong = runWorker({ run: () => 0 }, jobEnv(channel.info.url, dir, other.channel.info.env))
      expect(yield* Effect.promise(() => wrong.done)).toBe(103)
      expect(yield* channel.isConnected).toBe(false)
      expect(received).toEqual([])
    })
  )

  it.scopedLive("tls:// without a pin, or with a malformed one, is a configuration error (103) and nothing is dialled", () =>
    Effect.gen(function* () {
      const server = yield* countingTlsServer()
      for (const pin of [undefined, "", "abc", "z".repeat(64)]) {
        const worker = runWorker({ run: () => 0 }, jobEnv(`tls://127.0.0.1:${server.port}`, nextDir(), { [CERT_PIN_ENV]: pin }))
        expect(yield* Effect.promise(() => worker.done)).toBe(103)
        expect(worker.logs.join("\n")).toMatch(/FLEXEC_CHANNEL_CERT_SHA256/)
      }
      expect(server.connections()).toBe(0)
    })
  )

  it.scopedLive("bad tcp:// and tls:// URLs are configuration errors (103)", () =>
    Effect.gen(function* () {
      const pin = "a".repeat(64)
      for (const url of ["tcp://", "tcp://127.0.0.1", "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000", "tls://[nope]:80", "tcp://host:80/path", "udp://127.0.0.1:80"]) {
        const worker = runWorker({ run: () => 0 }, jobEnv(url, nextDir(), { [CERT_PIN_ENV]: pin }))
        expect(yield* Effect.promise(() => worker.done)).toBe(103)
        expect(worker.logs.join("\n")).toContain("FLEXEC_PARENT_URL must be")
      }
      // an uppercase pin is accepted (and compared lowercased)
      const { channel, dir } = yield* channelOver({ tls: true })
      const worker = runWorker({ run: () => 0 }, jobEnv(channel.info.url, dir, { [CERT_PIN_ENV]: channel.info.env![CERT_PIN_ENV]!.toUpperCase() }))
      expect(yield* Effect.promise(() => worker.done)).toBe(0)
    })
  )
})
