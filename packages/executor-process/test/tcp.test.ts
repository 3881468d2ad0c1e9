/**
 * Jobs over the TCP + TLS channel, end to end: the engine with
 * `ChannelTransport.layer(makeTcpTransport(...))`, the process backend, and a
 * real job process loading the built worker runtime, on loopback. What the job
 * received is checked by the job (digests it sends back) and what it saw of
 * its environment by what it wrote to its log.
 */
import { describe, expect, it } from "@effect/vitest"
import { ChannelTransport, makeTcpTransport, Message } from "@flexec/core"
import type { TcpTransportOptions } from "@flexec/core"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { ProcessJobExecutor } from "../src/index.js"
import { eventually } from "./helpers.js"

const MIB = 1024 * 1024
const sha256 = (bytes: Uint8Array): string => crypto.createHash("sha256").update(bytes).digest("hex")

/** A job app: replies to `echo` with the digest of what it received, uploads 1 MiB, logs what it saw of its env. */
const JOB_APP = `
const crypto = require("node:crypto")
const url = process.env.FLEXEC_PARENT_URL
const pinGiven = /^[0-9a-f]{64}$/.test(process.env.FLEXEC_CHANNEL_CERT_SHA256 || "")
if (process.env.FORGE_PIN) process.env.FLEXEC_CHANNEL_CERT_SHA256 = "0".repeat(64)
const { runJob } = require("@flexec/core/worker")
let finish
const finished = new Promise((resolve) => (finish = resolve))
runJob({
  run: async (ctx) => {
    console.log("SAW " + JSON.stringify({ url, pinGiven, pinLeft: process.env.FLEXEC_CHANNEL_CERT_SHA256 !== undefined, tokenLeft: process.env.FLEXEC_CHANNEL_TOKEN !== undefined }))
    const upload = crypto.randomBytes(${MIB})
    const answer = await ctx.request({ channel: "app", topic: "upload", message: { payload: upload } })
    const digest = crypto.createHash("sha256").update(upload).digest("hex")
    await finished
    return answer.payload.sha256 === digest ? 0 : 9
  },
  handlers: {
    app: {
      echo: (message) => {
        const bytes = message.payload instanceof Uint8Array ? message.payload : new Uint8Array(0)
        return { length: bytes.byteLength, sha256: crypto.createHash("sha256").update(bytes).digest("hex") }
      },
      done: () => { finish(); return "bye" }
    }
  }
})
`

const deploy = (jobId: string) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "fxtcp-"))
  const workspace = path.join(root, "ws")
  const appDir = path.join(workspace, jobId, "app_site-1")
  fs.mkdirSync(appDir, { recursive: true })
  fs.writeFileSync(path.join(workspace, jobId, "meta.json"), JSON.stringify({ job_id: jobId }))
  fs.writeFileSync(path.join(appDir, "main.js"), JOB_APP)
  return { root, workspace, runtimeDir: path.join(root, "rt") }
}

/** A deployed workspace, removed when the scope closes. */
const deployed = (jobId: string) =>
  Effect.acquireRelease(Effect.sync(() => deploy(jobId)), ({ root }) => Effect.sync(() => fs.rmSync(root, { recursive: true, force: true })))

/** "connected" or the error code of a plain TCP connect to `port` on loopback. */
const tryConnect = (port: number) =>
  Effect.async<string>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed("connected"))
    })
    socket.once("error", (error: NodeJS.ErrnoException) => resume(Effect.succeed(error.code ?? error.message)))
  })

interface Saw {
  readonly url: string
  readonly pinGiven: boolean
  readonly pinLeft: boolean
  readonly tokenLeft: boolean
}

const sawOf = (log: string): Saw | undefined => {
  const line = log.split("\n").find((l) => l.startsWith("SAW "))
  return line === undefined ? undefined : (JSON.parse(line.slice(4)) as Saw)
}

/** An executor of the process backend whose channels listen through `transport`; every upload's digest is kept. */
const executorOver = (transport: TcpTransportOptions, runtimeDir: string, instanceId: string, uploads: Array<string>, env: Record<string, string> = {}, via: "layer" | "option" = "layer") => {
  const made = ProcessJobExecutor.make({
    client: { clientName: "site-1" },
    ...(via === "option" ? { channel: { transport: "tcp" as const, ...transport } } : {}),
    instanceId,
    runtimeDir,
    env,
    startTimeoutMs: 20_000,
    handlers: {
      app: {
        upload: (_jobId, message) =>
          Effect.sync(() => {
            const bytes = message.payload as Uint8Array
            uploads.push(`${bytes.byteLength}:${sha256(bytes)}`)
            return { sha256: sha256(bytes) }
          })
      }
    }
  })
  return via === "option" ? made : made.pipe(Effect.provide(ChannelTransport.layer(makeTcpTransport(transport))))
}

const jobOver = (transport: TcpTransportOptions, scheme: "tcp" | "tls", via: "layer" | "option" = "layer") =>
  Effect.gen(function* () {
    const jobId = `job-${scheme}`
    const { workspace, runtimeDir } = yield* deployed(jobId)
    const uploads: Array<string> = []
    const executor = yield* executorOver(transport, runtimeDir, `tcp-${scheme}`, uploads, {}, via)
    yield* executor.startApp({ jobId, args: { workspace } })
    const log = path.join(workspace, jobId, "log.txt")
    const saw = yield* eventually("the job's report of its environment", () => sawOf(fs.readFileSync(log, "utf8")), 20_000)
    // the job dialled the transport's URL; it got the pin over tls only; both secrets were deleted once read
    expect(saw.url).toMatch(new RegExp(`^${scheme}://127\\.0\\.0\\.1:\\d+$`))
    expect(saw).toMatchObject({ pinGiven: scheme === "tls", pinLeft: false, tokenLeft: false })
    for (const size of [0, MIB]) {
      const sent = crypto.randomBytes(size)
      const reply = yield* executor.sendToJob({ jobId, channel: "app", topic: "echo", message: Message.make(new Uint8Array(sent)), timeout: 20_000 })
      // what the job received, as the job measured it
      expect(reply.payload).toEqual({ length: size, sha256: sha256(sent) })
    }
    yield* executor.sendToJob({ jobId, channel: "app", topic: "done", message: Message.make(), timeout: 10_000 })
    const outcome = yield* executor.awaitCompletion(jobId)
    // 0: the parent's digest of the job's 1 MiB upload matched the job's own
    expect(outcome.returnCode).toBe(0)
    expect(uploads).toHaveLength(1)
    expect(uploads[0]!.startsWith(`${MIB}:`)).toBe(true)
    // the job's channel closed with the job: its port no longer accepts
    const port = Number(new URL(saw.url).port)
    expect(yield* eventuallyRefused(port)).toBe("ECONNREFUSED")
  })

/** Polls the port until it refuses (the channel closes right after the outcome), for at most 10 s. */
const eventuallyRefused = (port: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 10_000
    for (;;) {
      const outcome = yield* tryConnect(port)
      if (outcome !== "connected" || Date.now() > deadline) return outcome
      yield* Effect.sleep("20 millis")
    }
  })

describe("the process backend over the TCP + TLS channel", () => {
  it.scopedLive("a job over tcp:// gets 0 B and 1 MiB byte-exact and uploads 1 MiB; its port closes with it", () => jobOver({}, "tcp"), 60_000)

  it.scopedLive("a job over tls:// gets 0 B and 1 MiB byte-exact and uploads 1 MiB; its port closes with it", () => jobOver({ tls: true }, "tls"), 60_000)

  it.scopedLive(
    "the executor option channel: { transport: \"tcp\", tls: true } alone (no layer) puts the job on tls://",
    () => jobOver({ tls: true }, "tls", "option"),
    60_000
  )

  it.scopedLive(
    "a job whose pin is not the parent's certificate's never connects: configuration error (103), nothing run",
    () =>
      Effect.gen(function* () {
        const jobId = "job-forged"
        const { workspace, runtimeDir } = yield* deployed(jobId)
        const uploads: Array<string> = []
        // FORGE_PIN: the job replaces its pin with another before the runtime reads it
        const executor = yield* executorOver({ tls: true }, runtimeDir, "tcp-forged", uploads, { FORGE_PIN: "1" })
        yield* executor.startApp({ jobId, args: { workspace } })
        const outcome = yield* executor.awaitCompletion(jobId)
        expect(outcome.returnCode).toBe(103)
        const log = fs.readFileSync(path.join(workspace, jobId, "log.txt"), "utf8")
        expect(log).toMatch(/not the one FLEXEC_CHANNEL_CERT_SHA256 pins/)
        expect(sawOf(log)).toBeUndefined()
        expect(uploads).toEqual([])
      }),
    60_000
  )
})
