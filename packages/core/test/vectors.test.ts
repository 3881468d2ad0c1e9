/**
 * docs/PROTOCOL.md cannot drift from the code: its byte-level vectors must be
 * exactly what the codec encodes and decodes (and what the parent answers), and
 * its Python example worker must work against the real parent.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Option } from "effect"
import { Buffer } from "node:buffer"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { type DecodeEvent, DEFAULT_MAX_FRAME_BYTES, encodeFrameBuffer, FrameDecoder } from "../src/protocol/Frame.js"
import * as Message from "../src/Message.js"
import type { Payload } from "../src/Message.js"
import { openJobChannel } from "../src/protocol/ChannelServer.js"
import * as Frame from "../src/protocol/MessageFrame.js"

const docPath = fileURLToPath(new URL("../../../docs/PROTOCOL.md", import.meta.url))
const doc = fs.readFileSync(docPath, "utf8")

interface Vector {
  readonly name: string
  readonly header: string
  readonly payload: Uint8Array | undefined
  readonly payloadSpec: string | undefined
  readonly oversize: number | undefined
  readonly bytes: Buffer
}

const parseVectors = (text: string): Array<Vector> =>
  [...text.matchAll(/```vector(?: no-run)?\n([\s\S]*?)```/g)].map((match) => {
    const lines = match[1]!.split("\n")
    const field = (name: string) => lines.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2)
    const hexAt = lines.indexOf("hex:")
    if (hexAt < 0) throw new Error(`a vector block without hex: ${match[1]}`)
    const hex = lines.slice(hexAt + 1).join(" ").trim()
    if (!/^([0-9a-f]{2}( |$))+$/.test(hex)) throw new Error(`bad hex in vector ${field("name")}`)
    const payloadSpec = field("payload")
    let payload: Uint8Array | undefined
    if (payloadSpec?.startsWith("json ")) payload = Buffer.from(payloadSpec.slice(5), "utf8")
    else if (payloadSpec?.startsWith("bytes ")) payload = Buffer.from(payloadSpec.slice(6).replace(/ /g, ""), "hex")
    else if (payloadSpec !== undefined && payloadSpec !== "none") throw new Error(`bad payload ${payloadSpec}`)
    const oversize = field("oversize")
    return {
      name: field("name")!,
      header: field("header")!,
      payload,
      payloadSpec,
      oversize: oversize === undefined ? undefined : Number(oversize),
      bytes: Buffer.from(hex.replace(/ /g, ""), "hex")
    }
  })

const vectors = parseVectors(doc)
const vector = (name: string): Vector => {
  const found = vectors.find((v) => v.name === name)
  if (!found) throw new Error(`PROTOCOL.md has no vector ${name}`)
  return found
}

const decode = (bytes: Uint8Array, maxFrame?: number) => {
  const events: Array<DecodeEvent> = []
  new FrameDecoder(maxFrame).push(bytes, (e) => events.push(e))
  return events
}

describe("PROTOCOL.md test vectors", () => {
  it("has the required vectors", () => {
    const names = vectors.map((v) => v.name)
    for (const name of ["hello", "hello_ok", "json-request", "bytes-reply", "notify-none", "oversize-prefix"]) {
      expect(names).toContain(name)
    }
    expect(new Set(names).size).toBe(names.length)
  })

  for (const v of vectors.filter((v) => v.oversize === undefined)) {
    it(`encodes and decodes exactly the bytes of '${v.name}'`, () => {
      const header = JSON.parse(v.header)
      expect(encodeFrameBuffer(header, v.payload).equals(v.bytes)).toBe(true)
      // the layout the doc describes, field by field
      const headerBytes = Buffer.from(v.header, "utf8")
      expect(v.bytes.readUInt32BE(0)).toBe(4 + headerBytes.length + (v.payload?.length ?? 0))
      expect(v.bytes.readUInt32BE(4)).toBe(headerBytes.length)
      expect(v.bytes.subarray(8, 8 + headerBytes.length).equals(headerBytes)).toBe(true)
      const events = decode(v.bytes)
      expect(events).toHaveLength(1)
      const event = events[0] as Extract<DecodeEvent, { type: "frame" }>
      expect(event.type).toBe("frame")
      expect({ ...event.header }).toEqual(header)
      expect(Buffer.from(event.payload).equals(Buffer.from(v.payload ?? []))).toBe(true)
      const message = Frame.decodeMessage(event.header, event.payload)
      expect(message._tag).toBe("Right")
    })
  }

  it("the oversize prefix decodes as an oversize frame of the stated size, payload unread", () => {
    const v = vector("oversize-prefix")
    const headerBytes = Buffer.from(v.header, "utf8")
    const prefix = Buffer.alloc(8)
    prefix.writeUInt32BE(v.oversize!, 0)
    prefix.writeUInt32BE(headerBytes.length, 4)
    expect(Buffer.concat([prefix, headerBytes]).equals(v.bytes)).toBe(true)
    expect(v.oversize!).toBeGreaterThan(DEFAULT_MAX_FRAME_BYTES)
    const events = decode(v.bytes)
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({ type: "oversize", size: v.oversize, header: JSON.parse(v.header) })
    // the msg_too_big answer names that size and the default limit
    const reply = vector("msg-too-big-reply")
    expect(JSON.parse(Buffer.from(reply.payload!).toString())).toEqual({ size: v.oversize, max: DEFAULT_MAX_FRAME_BYTES })
  })

  it.scopedLive("the parent answers the hello vector with the hello_ok vector and a Started request with the ack vector", () =>
    Effect.gen(function* () {
      const base = fs.mkdtempSync(path.join(os.tmpdir(), "fxv-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(base, { recursive: true, force: true })))
      const hello = JSON.parse(vector("hello").header) as { jobId: string; token: string }
      const channel = yield* openJobChannel({
        jobId: hello.jobId,
        token: hello.token,
        dir: path.join(base, "ch"),
        onRequest: () => Option.some(Effect.succeed(undefined))
      })
      const received: Array<Buffer> = []
      const socket = yield* Effect.async<net.Socket>((resume) => {
        const s = net.connect(channel.info.socketPath, () => resume(Effect.succeed(s)))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
      socket.on("data", (chunk: Buffer) => received.push(chunk))
      const readExactly = (n: number) =>
        Effect.gen(function* () {
          const deadline = Date.now() + 5000
          while (Buffer.concat(received).length < n && Date.now() < deadline) yield* Effect.sleep(Duration.millis(5))
          const all = Buffer.concat(received)
          received.length = 0
          if (all.length > n) received.push(all.subarray(n))
          return all.subarray(0, n)
        })
      socket.write(vector("hello").bytes)
      const ok = vector("hello_ok")
      expect((yield* readExactly(ok.bytes.length)).equals(ok.bytes)).toBe(true)
      socket.write(vector("json-request").bytes)
      const ack = vector("ack-reply")
      expect((yield* readExactly(ack.bytes.length)).equals(ack.bytes)).toBe(true)
    })
  )
})

const python = spawnSync("python3", ["--version"]).status === 0 ? "python3" : undefined

describe("PROTOCOL.md Python example worker", () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "fxy-"))
  afterAll(() => fs.rmSync(base, { recursive: true, force: true }))

  it.scopedLive.skipIf(python === undefined)("reports Started, answers the built-in topics, stops on abort, exits 0 [skipped without python3]", () =>
    Effect.gen(function* () {
      const code = /```python(?: no-run)?\n([\s\S]*?)```/.exec(doc)?.[1]
      expect(code).toBeDefined()
      const script = path.join(base, "worker.py")
      fs.writeFileSync(script, code!)

      const statuses: Array<Payload> = []
      const started = yield* Deferred.make<void>()
      const stopped = yield* Deferred.make<void>()
      const channel = yield* openJobChannel({
        jobId: "py-job",
        token: "py-token",
        dir: path.join(base, "ch"),
        helloTimeout: "5 seconds",
        onRequest: ({ channel, message, topic }) =>
          channel === "admin" && topic === "notify_job_status"
            ? Option.some(
                Effect.gen(function* () {
                  statuses.push(message.payload)
                  const status = (message.payload as { status?: number } | undefined)?.status
                  if (status === 2) yield* Deferred.succeed(started, undefined)
                  if (status === 3) yield* Deferred.succeed(stopped, undefined)
                  return undefined
                })
              )
            : Option.none()
      })
      const child = spawn(python!, [script], {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          FLEXEC_PARENT_URL: channel.info.url,
          FLEXEC_CHANNEL_TOKEN: channel.info.token,
          FLEXEC_JOB_ID: "py-job"
        },
        stdio: ["ignore", "inherit", "inherit"]
      })
      const exited = new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)))
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))

      yield* Deferred.await(started).pipe(Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("no Started") }))
      const ask = (topic: string, payload?: Payload) =>
        channel.request({ channel: "client_command", topic, message: Message.make(payload), timeout: "10 seconds" })
      expect((yield* ask("check_status")).payload).toEqual({ status: 2 })
      expect(Object.keys((yield* ask("show_stats", {})).payload as object)).toEqual(["example"])
      expect((yield* ask("show_errors")).payload).toEqual({})
      expect((yield* ask("reset_errors")).payload).toBeUndefined()
      expect((yield* ask("configure_job_log", { level: "debug" })).payload).toBeUndefined()
      const bad = yield* Effect.flip(ask("configure_job_log", { level: "loud" }))
      expect(bad).toMatchObject({ _tag: "RemoteError", returnCode: "process_exception" })
      expect((bad as { detail: string }).detail).toMatch(/loud/)
      expect(yield* Effect.flip(ask("no_such_topic"))).toMatchObject({ _tag: "InvalidRequest", topic: "no_such_topic" })
      expect(yield* Effect.flip(channel.request({ channel: "app", topic: "x", message: Message.make(1), timeout: "10 seconds" }))).toMatchObject({
        _tag: "InvalidRequest"
      })
      expect((yield* ask("abort", {})).payload).toBeUndefined()
      yield* Deferred.await(stopped).pipe(Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("no Stopped") }))
      expect(statuses).toEqual([{ status: 2 }, { status: 3 }])
      expect(yield* Effect.promise(() => exited)).toBe(0)
    })
  )
})
