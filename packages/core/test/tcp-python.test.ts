/**
 * The Python worker of examples/python-worker (standard library only) over
 * tcp:// and tls:// against a real job channel on loopback: payloads both ways
 * byte-exact, its secrets (pin included) deleted, and a certificate that is not
 * the pinned one refused (103) with nothing connected. Skipped, saying so,
 * where there is no python3.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Message from "../src/Message.js"
import { openJobChannel } from "../src/protocol/ChannelServer.js"
import type { IncomingRequest } from "../src/protocol/ChannelServer.js"
import { ChannelTransport } from "../src/protocol/ChannelTransport.js"
import { CERT_PIN_ENV, makeTcpTransport } from "../src/protocol/TcpTransport.js"
import type { TcpTransportOptions } from "../src/protocol/TcpTransport.js"

const python = spawnSync("python3", ["--version"]).status === 0 ? "python3" : undefined
if (python === undefined) console.warn("SKIPPED: tcp-python.test.ts needs python3 on PATH")
const appDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "examples", "python-worker", "app")
const base = fs.mkdtempSync(path.join(os.tmpdir(), "fxtp-"))
afterAll(() => fs.rmSync(base, { recursive: true, force: true }))
const MIB = 1024 * 1024
const sha256 = (bytes: Uint8Array): string => crypto.createHash("sha256").update(bytes).digest("hex")

/** The job: answers `echo` with the digest of the bytes it got, uploads 1 MiB, reports what it saw of its env. */
const JOB = `
import hashlib, os, threading
from flexec_worker import run_job
finished = threading.Event()
def run(ctx):
    upload = os.urandom(${MIB})
    answer = ctx.request("app", "upload", upload)
    finished.wait(20)
    left = [name for name in ("FLEXEC_CHANNEL_TOKEN", "FLEXEC_CHANNEL_CERT_SHA256") if name in os.environ]
    return 0 if answer["sha256"] == hashlib.sha256(upload).hexdigest() and not left else 9
def echo(value, ctx):
    data = value if isinstance(value, (bytes, bytearray)) else b""
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
def done(value, ctx):
    finished.set()
    return "bye"
run_job(run, handlers={"app": {"echo": echo, "done": done}})
`

const channelOver = (transport: TcpTransportOptions) =>
  Effect.gen(function* () {
    const received: Array<IncomingRequest> = []
    const channel = yield* openJobChannel({
      jobId: "py-job",
      token: "py-token",
      dir: path.join(base, `ch-${crypto.randomUUID()}`),
      onRequest: (request) => {
        received.push(request)
        if (request.topic === "upload") return Option.some(Effect.succeed({ sha256: sha256(request.message.payload as Uint8Array) }))
        return Option.some(Effect.succeed(undefined))
      }
    }).pipe(Effect.provide(ChannelTransport.layer(makeTcpTransport(transport))))
    return { channel, received }
  })

const spawnJob = (env: Record<string, string | undefined>) =>
  Effect.gen(function* () {
    const script = path.join(base, "job.py")
    fs.writeFileSync(script, JOB)
    let stderr = ""
    const child = spawn(python!, [script], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PYTHONPATH: appDir, FLEXEC_JOB_ID: "py-job", FLEXEC_CHANNEL_TOKEN: "py-token", FLEXEC_RECONNECT_MS: "2000", ...env },
      stdio: ["ignore", "ignore", "pipe"]
    })
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    const exited = new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)))
    yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
    return { exited, stderr: () => stderr }
  })

const carries = (transport: TcpTransportOptions, scheme: string) =>
  Effect.gen(function* () {
    const { channel, received } = yield* channelOver(transport)
    expect(channel.info.url.startsWith(`${scheme}://`)).toBe(true)
    const job = yield* spawnJob({ FLEXEC_PARENT_URL: channel.info.url, ...channel.info.env })
    yield* channel.awaitConnected.pipe(Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error(`no connection: ${job.stderr()}`) }))
    for (const size of [0, MIB]) {
      const sent = crypto.randomBytes(size)
      const reply = yield* channel.request({ channel: "app", topic: "echo", message: Message.make(new Uint8Array(sent)), timeout: "20 seconds" })
      expect(reply.payload).toEqual({ length: size, sha256: sha256(sent) })
    }
    yield* channel.request({ channel: "app", topic: "done", message: Message.make(), timeout: "10 seconds" })
    // 0: the parent's digest of its 1 MiB upload matched, and its secrets were gone from its environment
    expect(yield* Effect.promise(() => job.exited)).toBe(0)
    expect((received.find((r) => r.topic === "upload")?.message.payload as Uint8Array).byteLength).toBe(MIB)
  })

describe.skipIf(python === undefined)("the Python worker over tcp:// and tls:// [skipped without python3]", () => {
  it.scopedLive("tcp://: 0 B and 1 MiB each way byte-exact", () => carries({}, "tcp"), 60_000)

  it.scopedLive("tls://: 0 B and 1 MiB each way byte-exact, the certificate pinned", () => carries({ tls: true }, "tls"), 60_000)

  it.scopedLive("tls://: another certificate's pin, or none, is a configuration error (103); nothing connects", () =>
    Effect.gen(function* () {
      const { channel, received } = yield* channelOver({ tls: true })
      const other = yield* channelOver({ tls: true })
      const wrong = yield* spawnJob({ FLEXEC_PARENT_URL: channel.info.url, ...other.channel.info.env })
      expect(yield* Effect.promise(() => wrong.exited)).toBe(103)
      expect(wrong.stderr()).toContain("FLEXEC_CHANNEL_CERT_SHA256")
      const none = yield* spawnJob({ FLEXEC_PARENT_URL: channel.info.url })
      expect(yield* Effect.promise(() => none.exited)).toBe(103)
      const badUrl = yield* spawnJob({ FLEXEC_PARENT_URL: "tcp://127.0.0.1", [CERT_PIN_ENV]: undefined })
      expect(yield* Effect.promise(() => badUrl.exited)).toBe(103)
      expect(yield* channel.isConnected).toBe(false)
      expect(received).toEqual([])
    }), 60_000)
})
