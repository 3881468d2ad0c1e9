/**
 * The worker runtime (`@flexec/core/worker`) against a tiny raw parent written
 * with the frame codec over real unix sockets: in-process (`runJobWith`) and
 * in real child processes (`runJob`, from a bundle of the worker entry).
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { EventEmitter } from "node:events"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { build } from "esbuild"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import {
  type DecodeEvent,
  decodePayload,
  encodeFrameBuffer,
  encodePayload,
  FrameDecoder,
  type FrameHeader
} from "../src/protocol/Frame.js"
import {
  ChannelError,
  ConfigError,
  connectUnix,
  type JobContext,
  type JobSpec,
  runJobWith,
  UnsafeComponentError,
  type WorkerMessage
} from "../src/worker/index.js"

// ---------------------------------------------------------------------------
// a raw parent

interface Frame {
  readonly header: FrameHeader
  readonly payload: Buffer
}

interface Reply {
  readonly rc: string
  readonly header: FrameHeader
  readonly payload: unknown
}

type ParentAnswer = { readonly rc: string; readonly payload?: unknown } | "no-reply"

/** Resolves when `check` returns a value, re-checked on every change of `events`; fails after `ms`. */
const until = <A>(events: EventEmitter, check: () => A | undefined, what: string, ms = 10_000): Promise<A> =>
  new Promise<A>((resolvePromise, reject) => {
    const first = check()
    if (first !== undefined) return resolvePromise(first)
    const onChange = (): void => {
      const value = check()
      if (value === undefined) return
      cleanup()
      resolvePromise(value)
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`timed out waiting for ${what}`))
    }, ms)
    const cleanup = (): void => {
      clearTimeout(timer)
      events.off("change", onChange)
    }
    events.on("change", onChange)
  })

class RawConn {
  hello: FrameHeader | undefined
  /** Sends the held `hello_ok` (when the parent holds them). */
  releaseHelloOk: (() => void) | undefined
  readonly frames: Array<Frame> = []
  readonly oversize: Array<{ header: FrameHeader; size: number }> = []
  closed = false
  private nextId = 1000
  private readonly pending = new Map<number, (reply: Reply) => void>()
  private readonly decoder: FrameDecoder

  constructor(
    readonly socket: net.Socket,
    private readonly parent: RawParent
  ) {
    this.decoder = new FrameDecoder(parent.maxFrame)
    socket.on("data", (chunk: Buffer) => this.decoder.push(chunk, (event) => this.onEvent(event)))
    socket.on("error", () => undefined)
    socket.on("close", () => {
      this.closed = true
      this.parent.changed()
    })
  }

  private onEvent(event: DecodeEvent): void {
    // a refused connection is done: frames pipelined after its hello are dropped
    if (this.socket.destroyed) return
    if (event.type === "error") {
      this.parent.errors.push(event.reason)
      this.socket.destroy()
    } else if (event.type === "oversize") {
      this.oversize.push({ header: event.header, size: event.size })
    } else if (this.hello === undefined) {
      const { header } = event
      if (header.kind !== "hello" || !this.parent.acceptHello(header)) {
        this.parent.refused.push(header)
        this.socket.destroy()
      } else {
        this.hello = header
        const helloOk = () => this.send({ kind: "hello_ok", version: 1, maxFrame: this.parent.maxFrame })
        if (this.parent.holdHelloOk) {
          // as the real parent: frames after the hello are recorded, and served once hello_ok is out
          this.releaseHelloOk = () => {
            helloOk()
            const held = this.held.splice(0)
            this.releaseHelloOk = undefined
            for (const frame of held) this.serve(frame.header, frame.payload)
          }
        } else helloOk()
      }
    } else if (this.releaseHelloOk !== undefined) {
      this.frames.push({ header: event.header, payload: event.payload })
      this.held.push({ header: event.header, payload: event.payload })
    } else {
      this.onFrame(event.header, event.payload)
    }
    this.parent.changed()
  }

  private readonly held: Array<Frame> = []

  private onFrame(header: FrameHeader, payload: Buffer): void {
    this.frames.push({ header, payload })
    this.serve(header, payload)
  }

  private serve(header: FrameHeader, payload: Buffer): void {
    if (header.kind === "reply") {
      const resolveReply = this.pending.get(header.id!)
      this.pending.delete(header.id!)
      resolveReply?.({ rc: header.rc ?? "ok", header, payload: decodePayload(header.enc, payload) })
      return
    }
    if (header.kind !== "request") return
    const value = decodePayload(header.enc, payload)
    const answer =
      header.channel === "admin" && header.topic === "notify_job_status"
        ? this.parent.onStatus(this, (value as { status: number }).status)
        : this.parent.onRequest(header, value)
    if (answer === "no-reply") return
    const encoded = encodePayload(answer.payload)
    const reply = encodeFrameBuffer({ kind: "reply", id: header.id!, rc: answer.rc, enc: encoded.enc }, encoded.bytes)
    const status = header.topic === "notify_job_status" ? (value as { status: number }).status : undefined
    if (status === 2 && this.parent.abortWithStartedAck) {
      // one write: the worker reads the acknowledgement and the abort in one go
      const abort = encodeFrameBuffer({ kind: "request", id: this.nextId++, channel: "client_command", topic: "abort", enc: "none" })
      this.socket.write(Buffer.concat([reply, abort]))
      return
    }
    this.socket.write(reply)
  }

  send(header: FrameHeader, payload?: Uint8Array): void {
    this.socket.write(encodeFrameBuffer(header, payload))
  }

  /** A request to the worker. */
  request(channel: string, topic: string, payload?: unknown, headers?: Record<string, string | number | boolean>): Promise<Reply> {
    const id = this.nextId++
    const encoded = encodePayload(payload)
    return new Promise((resolveReply, reject) => {
      this.pending.set(id, resolveReply)
      this.socket.once("close", () => reject(new Error(`connection closed before the reply to ${channel}/${topic}`)))
      this.send({ kind: "request", id, channel, topic, enc: encoded.enc, headers: headers ?? {} }, encoded.bytes)
    })
  }

  /** The ids of the worker's status reports on this connection. */
  get statuses(): Array<number> {
    return this.frames
      .filter((f) => f.header.kind === "request" && f.header.channel === "admin" && f.header.topic === "notify_job_status")
      .map((f) => (decodePayload(f.header.enc, f.payload) as { status: number }).status)
  }
}

interface ParentOptions {
  readonly token?: string
  readonly maxFrame?: number
}

class RawParent extends EventEmitter {
  readonly conns: Array<RawConn> = []
  readonly statuses: Array<number> = []
  readonly errors: Array<string> = []
  readonly refused: Array<FrameHeader> = []
  readonly requests: Array<{ header: FrameHeader; payload: unknown }> = []
  readonly token: string
  readonly maxFrame: number
  /** Whether status reports are answered. */
  answerStatus = true
  /** Holds `hello_ok` until `conn.releaseHelloOk()` is called. */
  holdHelloOk = false
  /** Answers the worker's requests other than status reports. */
  onRequest: (header: FrameHeader, payload: unknown) => ParentAnswer = (header, payload) => {
    this.requests.push({ header, payload })
    if (header.channel !== "svc") return { rc: "invalid_request" }
    switch (header.topic) {
      case "echo":
        return { rc: "ok", payload }
      case "fail":
        return { rc: "process_exception", payload: "the parent's handler broke" }
      case "silent":
        return "no-reply"
      default:
        return { rc: "invalid_request" }
    }
  }
  private server: net.Server | undefined

  private constructor(
    readonly dir: string,
    options: ParentOptions
  ) {
    super()
    this.setMaxListeners(100)
    this.token = options.token ?? randomBytes(16).toString("hex")
    this.maxFrame = options.maxFrame ?? 128 * 1024 * 1024
  }

  get path(): string {
    return join(this.dir, "p.sock")
  }

  get url(): string {
    return `unix://${this.path}`
  }

  static async start(options: ParentOptions = {}): Promise<RawParent> {
    const parent = new RawParent(mkdtempSync(join(tmpdir(), "fxw-")), options)
    await parent.listen()
    return parent
  }

  listen(): Promise<void> {
    const server = net.createServer((socket) => {
      this.conns.push(new RawConn(socket, this))
      this.changed()
    })
    this.server = server
    return new Promise((resolveListen, reject) => {
      server.once("error", reject)
      server.listen(this.path, () => resolveListen())
    })
  }

  acceptHello(header: FrameHeader): boolean {
    return header.version === 1 && header.token === this.token
  }

  /** Sends `abort` right behind the reply to Started (before the worker can begin `run`). */
  abortWithStartedAck = false

  onStatus(conn: RawConn, status: number): ParentAnswer {
    void conn
    this.statuses.push(status)
    return this.answerStatus ? { rc: "ok" } : "no-reply"
  }

  changed(): void {
    this.emit("change")
  }

  /** The n-th connection that said a valid hello. */
  connection(n = 0): Promise<RawConn> {
    return until(this, () => this.conns.filter((c) => c.hello !== undefined)[n], `connection #${n}`)
  }

  /** Resolves once `status` was reported. */
  status(status: number): Promise<void> {
    return until(this, () => (this.statuses.includes(status) ? true : undefined), `status ${status}`).then(() => undefined)
  }

  /** Stops listening (existing connections stay; `close`'s callback would wait for them). */
  stopListening(): void {
    this.server?.close()
    this.server = undefined
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy()
    this.stopListening()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------
// running the worker in-process

const parents: Array<RawParent> = []
afterEach(async () => {
  for (const p of parents.splice(0)) await p.close()
})

const startParent = async (options: ParentOptions = {}): Promise<RawParent> => {
  const parent = await RawParent.start(options)
  parents.push(parent)
  return parent
}

const jobEnv = (parent: RawParent, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> => ({
  FLEXEC_PARENT_URL: parent.url,
  FLEXEC_CHANNEL_TOKEN: parent.token,
  FLEXEC_JOB_ID: "job-1",
  FLEXEC_CLIENT_NAME: "site-1",
  FLEXEC_WORKSPACE: "/ws",
  FLEXEC_JOB_DIR: parent.dir,
  FLEXEC_STARTUP_DIR: "/ws/startup",
  FLEXEC_JOB_AUTH_TOKEN: "auth-token",
  FLEXEC_JOB_TOKEN_SIGNATURE: "signature",
  FLEXEC_JOB_SSID: "ssid-1",
  FLEXEC_SET: JSON.stringify({ lr: 0.1 }),
  OTHER: "kept",
  ...extra
})

interface Deferred<A> {
  readonly promise: Promise<A>
  readonly resolve: (a: A) => void
}
const deferred = <A = void>(): Deferred<A> => {
  let resolveIt!: (a: A) => void
  const promise = new Promise<A>((r) => {
    resolveIt = r
  })
  return { promise, resolve: resolveIt }
}

interface Running {
  readonly done: Promise<number>
  readonly exits: Array<number>
  readonly logs: Array<string>
  readonly env: Record<string, string | undefined>
  /** `ctx`, once `run` was called. */
  readonly ctx: Promise<JobContext>
  /** Makes a controlled `run` return this value. */
  readonly finish: (value?: unknown) => void
}

/** Runs a job in-process; by default `run` waits until `finish` is called and returns its value. */
const runInProcess = (
  env: Record<string, string | undefined>,
  spec: Partial<JobSpec> = {}
): Running => {
  const exits: Array<number> = []
  const logs: Array<string> = []
  const ctx = deferred<JobContext>()
  const result = deferred<unknown>()
  const run =
    spec.run ??
    (async (c: JobContext) => {
      ctx.resolve(c)
      return result.promise
    })
  const done = runJobWith(
    {
      run: (c) => {
        ctx.resolve(c)
        return run(c)
      },
      ...(spec.handlers ? { handlers: spec.handlers } : {})
    },
    { env, connect: connectUnix, exit: (code) => exits.push(code), log: (line) => logs.push(line) }
  )
  return { done, exits, logs, env, ctx: ctx.promise, finish: (value) => result.resolve(value) }
}

const rcFile = (dir: string): string => join(dir, "_process_rc.txt")

describe("runJobWith: handshake, status and exit", () => {
  it("sends Started right after its hello (pipelined), before hello_ok; runs only once it is acknowledged", async () => {
    const parent = await startParent()
    parent.holdHelloOk = true
    const job = runInProcess(jobEnv(parent))
    const conn = await parent.connection()
    // the status request came in while hello_ok was held
    await until(parent, () => (conn.statuses.length === 1 ? true : undefined), "the pipelined status report")
    expect(conn.statuses).toEqual([2])
    expect(conn.frames[0]?.header).toMatchObject({ kind: "request", channel: "admin", topic: "notify_job_status" })
    let ran = false
    void job.ctx.then(() => (ran = true))
    await new Promise((resolve) => setImmediate(resolve))
    expect(ran).toBe(false)
    conn.releaseHelloOk!()
    await job.ctx
    expect(parent.statuses).toEqual([2])
    job.finish(undefined)
    expect(await job.done).toBe(0)
    expect(parent.statuses).toEqual([2, 3])
  })

  it("an abort right behind the acknowledgement of Started finds run running (run begins as the acknowledgement is read)", async () => {
    const parent = await startParent()
    parent.abortWithStartedAck = true
    let abortedAtStart: boolean | undefined
    const job = runInProcess(jobEnv(parent), {
      run: (ctx) => {
        abortedAtStart = ctx.signal.aborted
        return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(5)))
      }
    })
    expect(await job.done).toBe(5)
    expect(abortedAtStart).toBe(false)
    expect(parent.statuses).toEqual([2, 3])
  })

  it("says hello with the job id and token, reads and deletes the secrets, reports Started then Stopped and exits 0", async () => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent))
    const conn = await parent.connection()
    expect(conn.hello).toMatchObject({ kind: "hello", version: 1, jobId: "job-1", token: parent.token })
    const ctx = await job.ctx
    // Started was acknowledged before run was called
    expect(parent.statuses).toEqual([2])
    expect(ctx.jobId).toBe("job-1")
    expect(ctx.clientName).toBe("site-1")
    expect(ctx.workspace).toBe("/ws")
    expect(ctx.jobDir).toBe(parent.dir)
    expect(ctx.startupDir).toBe("/ws/startup")
    expect(ctx.set).toEqual({ lr: 0.1 })
    expect(ctx.credentials).toEqual({ token: "auth-token", tokenSignature: "signature", ssid: "ssid-1" })
    for (const secret of ["FLEXEC_CHANNEL_TOKEN", "FLEXEC_JOB_AUTH_TOKEN", "FLEXEC_JOB_TOKEN_SIGNATURE", "FLEXEC_JOB_SSID"]) {
      expect(secret in job.env).toBe(false)
    }
    expect(job.env.FLEXEC_JOB_ID).toBe("job-1")
    expect(job.env.FLEXEC_PARENT_URL).toBe(parent.url)
    expect(job.env.OTHER).toBe("kept")
    expect(ctx.signal.aborted).toBe(false)
    expect(ctx.logLevel).toBe("info")
    job.finish(undefined)
    expect(await job.done).toBe(0)
    expect(job.exits).toEqual([0])
    expect(parent.statuses).toEqual([2, 3])
    expect(conn.statuses).toEqual([2, 3])
    // the socket was closed, and no rc file: no work was left
    await until(parent, () => (conn.closed ? true : undefined), "the worker to close its socket")
    expect(existsSync(rcFile(parent.dir))).toBe(false)
  })

  it("does not call run before the parent acknowledged Started", async () => {
    const parent = await startParent()
    parent.answerStatus = false
    const job = runInProcess(jobEnv(parent))
    const conn = await parent.connection()
    await parent.status(2)
    let called = false
    void job.ctx.then(() => {
      called = true
    })
    // the worker answers requests while it waits for the acknowledgement, and reports Starting
    const status = await conn.request("client_command", "check_status")
    expect(status).toMatchObject({ rc: "ok", payload: { status: 1 } })
    expect(called).toBe(false)
    // acknowledge: the Started request is still pending on the worker
    const started = conn.frames.find((f) => f.header.topic === "notify_job_status")!
    parent.answerStatus = true
    conn.send({ kind: "reply", id: started.header.id!, rc: "ok", enc: "none" })
    await job.ctx
    expect((await conn.request("client_command", "check_status")).payload).toEqual({ status: 2 })
    job.finish(0)
    expect(await job.done).toBe(0)
  })

  const outcomes: Array<[string, () => Promise<unknown>, number]> = [
    ["a number", async () => 7, 7],
    ["nothing", async () => undefined, 0],
    ["a non-number", async () => "done", 0],
    ["an Error", async () => Promise.reject(new Error("boom")), 101],
    ["a thrown string", async () => Promise.reject("boom"), 101],
    ["an UnsafeComponentError", async () => Promise.reject(new UnsafeComponentError("not allowed")), 102],
    ["a ConfigError", async () => Promise.reject(new ConfigError("bad config")), 103]
  ]
  it.each(outcomes)("run returning/throwing %s exits %i", async (_name, run, code) => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent), { run })
    expect(await job.done).toBe(code)
    expect(job.exits).toEqual([code])
    expect(parent.statuses).toEqual([2, 3])
    if (code >= 101) expect(job.logs.join("\n")).toContain(`exit ${code}`)
  })

  it("recognises a ConfigError by its brand, not its class identity (the ESM and CJS builds are two copies)", async () => {
    const parent = await startParent()
    const foreign = Object.assign(new Error("from the other build"), { [Symbol.for("@flexec/core/worker/ConfigError")]: true })
    const job = runInProcess(jobEnv(parent), { run: async () => Promise.reject(foreign) })
    expect(await job.done).toBe(103)
  })

  it.each([
    ["FLEXEC_PARENT_URL", { FLEXEC_PARENT_URL: undefined }, "FLEXEC_PARENT_URL"],
    ["FLEXEC_CHANNEL_TOKEN", { FLEXEC_CHANNEL_TOKEN: undefined }, "FLEXEC_CHANNEL_TOKEN"],
    ["FLEXEC_JOB_ID", { FLEXEC_JOB_ID: undefined }, "FLEXEC_JOB_ID"],
    ["a non-unix URL", { FLEXEC_PARENT_URL: "tcp://127.0.0.1:1" }, "unix://"],
    ["a FLEXEC_SET that is not JSON", { FLEXEC_SET: "{nope" }, "FLEXEC_SET"],
    ["a FLEXEC_SET that is not an object", { FLEXEC_SET: "[1]" }, "FLEXEC_SET"]
  ] as const)("a missing or bad setting (%s) exits 103 with a clear message, secrets still deleted", async (_n, extra, mention) => {
    const parent = await startParent()
    let called = false
    const job = runInProcess(jobEnv(parent, extra), {
      run: async () => {
        called = true
      }
    })
    expect(await job.done).toBe(103)
    expect(called).toBe(false)
    expect(job.logs.join("\n")).toMatch(/configuration error/)
    expect(job.logs.join("\n")).toContain(mention)
    expect("FLEXEC_CHANNEL_TOKEN" in job.env).toBe(false)
    expect("FLEXEC_JOB_AUTH_TOKEN" in job.env).toBe(false)
    expect(parent.conns.filter((c) => c.hello !== undefined)).toHaveLength(0)
  })

  it("a parent that refuses the token: the worker retries for the reconnect window, then exits 104 without running", async () => {
    const parent = await startParent()
    let called = false
    const job = runInProcess(jobEnv(parent, { FLEXEC_CHANNEL_TOKEN: "wrong", FLEXEC_RECONNECT_MS: "400" }), {
      run: async () => {
        called = true
      }
    })
    expect(await job.done).toBe(104)
    expect(called).toBe(false)
    expect(parent.refused.length).toBeGreaterThanOrEqual(2)
    expect(parent.refused.every((h) => h.token === "wrong")).toBe(true)
    expect(parent.statuses).toEqual([])
  })
})

describe("runJobWith: built-in topics", () => {
  const started = async (spec: Partial<JobSpec> = {}) => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent), spec)
    const conn = await parent.connection()
    const ctx = await job.ctx
    return { parent, job, conn, ctx }
  }

  it("show_stats answers { [group]: value } from ctx.setStats ({} when none)", async () => {
    const { job, conn, ctx } = await started()
    expect(await conn.request("client_command", "show_stats")).toMatchObject({ rc: "ok", payload: {} })
    ctx.setStats("train", { round: 3, loss: 0.5 })
    ctx.setStats("eval", 42)
    ctx.setStats("train", { round: 4 })
    expect((await conn.request("client_command", "show_stats")).payload).toEqual({ train: { round: 4 }, eval: 42 })
    expect(() => ctx.setStats("bad", { data: new Uint8Array(2) })).toThrow(/binary/)
    job.finish()
    await job.done
  })

  it("show_errors answers the latest error per group and level with an ISO time; reset_errors clears them", async () => {
    const { job, conn, ctx } = await started()
    expect(await conn.request("client_command", "show_errors")).toMatchObject({ rc: "ok", payload: {} })
    ctx.reportError("first")
    ctx.reportError("second")
    ctx.reportError("disk low", { level: "warning" })
    ctx.reportError("bad batch", { group: "trainer", level: "critical" })
    const shown = (await conn.request("client_command", "show_errors")).payload as Record<string, Record<string, string>>
    expect(Object.keys(shown).sort()).toEqual(["general", "trainer"])
    expect(Object.keys(shown.general!).sort()).toEqual(["error", "warning"])
    const iso = "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z"
    expect(shown.general!.error).toMatch(new RegExp(`^${iso}: second$`))
    expect(shown.general!.warning).toMatch(new RegExp(`^${iso}: disk low$`))
    expect(shown.trainer).toEqual({ critical: expect.stringMatching(new RegExp(`^${iso}: bad batch$`)) })
    const reset = await conn.request("client_command", "reset_errors")
    expect(reset.rc).toBe("ok")
    expect(reset.header.enc).toBe("none")
    expect((await conn.request("client_command", "show_errors")).payload).toEqual({})
    ctx.reportError("after reset")
    expect(Object.keys((await conn.request("client_command", "show_errors")).payload as object)).toEqual(["general"])
    job.finish()
    await job.done
  })

  it("configure_job_log sets ctx.logLevel for a valid level, answers process_exception with the reason otherwise", async () => {
    const { job, conn, ctx } = await started()
    expect(await conn.request("client_command", "configure_job_log", { level: "debug" })).toMatchObject({ rc: "ok", payload: undefined })
    expect(ctx.logLevel).toBe("debug")
    expect((await conn.request("client_command", "configure_job_log", { level: "WARN" })).rc).toBe("ok")
    expect(ctx.logLevel).toBe("warning")
    for (const level of ["info", "warning", "error", "critical"]) {
      expect((await conn.request("client_command", "configure_job_log", { level })).rc).toBe("ok")
      expect(ctx.logLevel).toBe(level)
    }
    const bad = await conn.request("client_command", "configure_job_log", { level: "verbose" })
    expect(bad.rc).toBe("process_exception")
    expect(bad.payload).toMatch(/unknown log level "verbose".*debug, info, warning, error, critical/)
    expect(ctx.logLevel).toBe("critical")
    const notObject = await conn.request("client_command", "configure_job_log", "debug")
    expect(notObject.rc).toBe("process_exception")
    expect(notObject.payload).toMatch(/\{ level \}/)
    const noLevel = await conn.request("client_command", "configure_job_log", {})
    expect(noLevel.rc).toBe("process_exception")
    expect(noLevel.payload).toMatch(/level/)
    job.finish()
    await job.done
  })

  it("check_status answers { status: 2 } while run runs", async () => {
    const { job, conn } = await started()
    expect(await conn.request("client_command", "check_status")).toMatchObject({ rc: "ok", payload: { status: 2 } })
    job.finish()
    await job.done
  })

  it("abort_task aborts the current task signal and acks; the next taskSignal() is fresh; the job signal stays", async () => {
    const { job, conn, ctx } = await started()
    const task = ctx.taskSignal()
    expect(ctx.taskSignal()).toBe(task)
    const aborted = new Promise<void>((r) => task.addEventListener("abort", () => r()))
    const reply = await conn.request("client_command", "abort_task")
    expect(reply.rc).toBe("ok")
    await aborted
    expect(task.aborted).toBe(true)
    expect(ctx.signal.aborted).toBe(false)
    const fresh = ctx.taskSignal()
    expect(fresh).not.toBe(task)
    expect(fresh.aborted).toBe(false)
    expect(ctx.taskSignal()).toBe(fresh)
    // and again
    expect((await conn.request("client_command", "abort_task")).rc).toBe("ok")
    expect(fresh.aborted).toBe(true)
    expect(ctx.taskSignal().aborted).toBe(false)
    job.finish()
    expect(await job.done).toBe(0)
  })

  it("abort acks first, then aborts ctx.signal and the current task; run's result is the exit code", async () => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent), {
      run: async (ctx) => {
        const task = ctx.taskSignal()
        await new Promise<void>((r) => ctx.signal.addEventListener("abort", () => r()))
        expect(task.aborted).toBe(true)
        // after a job abort, a fresh task signal is already aborted
        expect(ctx.taskSignal().aborted).toBe(true)
        return 0
      }
    })
    const conn = await parent.connection()
    const ctx = await job.ctx
    const reply = await conn.request("client_command", "abort")
    expect(reply).toMatchObject({ rc: "ok", payload: undefined })
    expect(await job.done).toBe(0)
    expect(ctx.signal.aborted).toBe(true)
    expect((ctx.signal.reason as Error).message).toMatch(/aborted/)
    expect(parent.statuses).toEqual([2, 3])
    // the reply frame was written before the abort could end the job: its Stopped came after it
    const kinds = conn.frames.map((f) => (f.header.kind === "reply" ? "reply" : f.header.topic))
    expect(kinds.indexOf("reply")).toBeLessThan(kinds.lastIndexOf("notify_job_status"))
  })
})

describe("runJobWith: handlers", () => {
  it("answers custom handlers with JSON, bytes (1 MiB, byte-exact) and nothing; passes headers and ctx", async () => {
    const parent = await startParent()
    const seen: Array<{ headers: Record<string, unknown>; jobId: string }> = []
    const job = runInProcess(jobEnv(parent), {
      handlers: {
        train: {
          echo: (message: WorkerMessage, ctx: JobContext) => {
            seen.push({ headers: { ...message.headers }, jobId: ctx.jobId })
            return { got: message.payload }
          },
          bytes: async (message: WorkerMessage) => {
            const bytes = message.payload as Uint8Array
            const out = new Uint8Array(bytes.byteLength)
            for (let i = 0; i < bytes.byteLength; i++) out[i] = bytes[i]! ^ 0xff
            return out
          },
          nothing: () => undefined
        }
      }
    })
    const conn = await parent.connection()
    await job.ctx
    const echo = await conn.request("train", "echo", { a: [1, "x", null] }, { trace: "t1", n: 2, flag: true })
    expect(echo).toMatchObject({ rc: "ok", payload: { got: { a: [1, "x", null] } } })
    expect(echo.header.enc).toBe("json")
    expect(seen).toEqual([{ headers: { trace: "t1", n: 2, flag: true }, jobId: "job-1" }])
    const big = randomBytes(1024 * 1024)
    const bytes = await conn.request("train", "bytes", big)
    expect(bytes.rc).toBe("ok")
    expect(bytes.header.enc).toBe("bytes")
    const back = bytes.payload as Buffer
    expect(back.byteLength).toBe(big.byteLength)
    const expected = Buffer.from(big.map((b) => b ^ 0xff))
    expect(Buffer.compare(back, expected)).toBe(0)
    const nothing = await conn.request("train", "nothing", "x")
    expect(nothing).toMatchObject({ rc: "ok", payload: undefined })
    expect(nothing.header.enc).toBe("none")
    job.finish()
    await job.done
  })

  it("answers invalid_request for an unknown channel or topic, process_exception for a throwing handler", async () => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent), {
      handlers: {
        train: {
          fails: () => {
            throw new Error("the handler broke")
          },
          rejects: async () => Promise.reject(new Error("async break")),
          unsendable: () => ({ data: new Uint8Array(1) })
        }
      }
    })
    const conn = await parent.connection()
    await job.ctx
    expect((await conn.request("nope", "x")).rc).toBe("invalid_request")
    expect((await conn.request("train", "nope")).rc).toBe("invalid_request")
    expect((await conn.request("train", "constructor")).rc).toBe("invalid_request")
    expect((await conn.request("client_command", "nope")).rc).toBe("invalid_request")
    const fails = await conn.request("train", "fails")
    expect(fails).toMatchObject({ rc: "process_exception", payload: "the handler broke" })
    expect(fails.header.enc).toBe("json")
    expect(await conn.request("train", "rejects")).toMatchObject({ rc: "process_exception", payload: "async break" })
    const unsendable = await conn.request("train", "unsendable")
    expect(unsendable.rc).toBe("process_exception")
    expect(unsendable.payload).toMatch(/binary inside a JSON payload/)
    job.finish()
    await job.done
  })

  it("user handlers on client_command cannot override the built-ins, but may add topics", async () => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent), {
      handlers: {
        client_command: {
          show_stats: () => "overridden",
          check_status: () => "overridden",
          custom: () => "mine"
        }
      }
    })
    const conn = await parent.connection()
    await job.ctx
    expect((await conn.request("client_command", "show_stats")).payload).toEqual({})
    expect((await conn.request("client_command", "check_status")).payload).toEqual({ status: 2 })
    expect((await conn.request("client_command", "custom")).payload).toBe("mine")
    job.finish()
    await job.done
  })

  it("runs handlers concurrently (a slow handler does not block another)", async () => {
    const parent = await startParent()
    const gate = deferred()
    const job = runInProcess(jobEnv(parent), {
      handlers: { t: { slow: async () => gate.promise.then(() => "slow"), fast: () => "fast" } }
    })
    const conn = await parent.connection()
    await job.ctx
    const slow = conn.request("t", "slow")
    expect((await conn.request("t", "fast")).payload).toBe("fast")
    gate.resolve()
    expect((await slow).payload).toBe("slow")
    job.finish()
    await job.done
  })
})

describe("runJobWith: ctx.request and frame limits", () => {
  it("round-trips to the parent's handlers; maps reply codes to ChannelError codes", async () => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent))
    await parent.connection()
    const ctx = await job.ctx
    const reply = await ctx.request({ channel: "svc", topic: "echo", message: { payload: { x: 1 }, headers: { h: "v" } }, timeout: 5000 })
    expect(reply.payload).toEqual({ x: 1 })
    expect(parent.requests[0]!.header.headers).toEqual({ h: "v" })
    const bytes = randomBytes(1000)
    const bytesReply = await ctx.request({ channel: "svc", topic: "echo", message: { payload: bytes } })
    expect(Buffer.compare(Buffer.from(bytesReply.payload as Uint8Array), bytes)).toBe(0)
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => "resolved",
        (e: unknown) => {
          expect(e).toBeInstanceOf(ChannelError)
          return (e as ChannelError).code
        }
      )
    expect(await codeOf(ctx.request({ channel: "svc", topic: "nope" }))).toBe("invalid_request")
    const failed = await ctx.request({ channel: "svc", topic: "fail" }).catch((e: ChannelError) => e)
    expect(failed).toMatchObject({ code: "process_exception", detail: "the parent's handler broke" })
    expect((failed as Error).message).toContain("the parent's handler broke")
    expect(await codeOf(ctx.request({ channel: "svc", topic: "silent", timeout: 100 }))).toBe("timeout")
    expect(await codeOf(ctx.request({ channel: "svc", topic: "echo", message: { payload: { nested: new Uint8Array(3) } } }))).toBe(
      "invalid_request"
    )
    job.finish()
    expect(await job.done).toBe(0)
  })

  it("refuses a message over the parent's maxFrame locally, both ways, and keeps the connection", async () => {
    const parent = await startParent({ maxFrame: 4096 })
    const job = runInProcess(jobEnv(parent), { handlers: { t: { big: () => new Uint8Array(8192) } } })
    const conn = await parent.connection()
    const ctx = await job.ctx
    const error = await ctx.request({ channel: "svc", topic: "echo", message: { payload: new Uint8Array(5000) } }).catch((e: ChannelError) => e)
    expect(error).toBeInstanceOf(ChannelError)
    expect((error as ChannelError).code).toBe("msg_too_big")
    expect(parent.requests).toHaveLength(0)
    const reply = await conn.request("t", "big")
    expect(reply).toMatchObject({ rc: "msg_too_big", payload: undefined })
    expect(conn.oversize).toHaveLength(0)
    // still connected
    expect((await ctx.request({ channel: "svc", topic: "echo", message: { payload: "small" } })).payload).toBe("small")
    expect(parent.conns.filter((c) => c.hello !== undefined)).toHaveLength(1)
    job.finish()
    expect(await job.done).toBe(0)
  })

  it("discards an oversize frame from the parent, answers its id msg_too_big and keeps the connection", async () => {
    const parent = await startParent({ maxFrame: 4096 })
    const job = runInProcess(jobEnv(parent), { handlers: { t: { echo: (m: WorkerMessage) => m.payload } } })
    const conn = await parent.connection()
    await job.ctx
    // a request the parent should not have sent: over its own maxFrame
    const reply = await conn.request("t", "echo", randomBytes(10_000))
    expect(reply).toMatchObject({ rc: "msg_too_big", payload: undefined })
    expect((await conn.request("t", "echo", "after")).payload).toBe("after")
    expect(parent.conns.filter((c) => c.hello !== undefined)).toHaveLength(1)
    job.finish()
    expect(await job.done).toBe(0)
  })
})

describe("runJobWith: losing the connection", () => {
  it("reconnects with a new hello and the same token after the parent drops it; pending requests fail at once", async () => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent))
    const first = await parent.connection(0)
    const ctx = await job.ctx
    const pending = ctx.request({ channel: "svc", topic: "silent", timeout: 60_000 }).catch((e: ChannelError) => e.code)
    await until(parent, () => (parent.requests.length === 1 ? true : undefined), "the silent request")
    first.socket.destroy()
    expect(await pending).toBe("target_unreachable")
    const second = await parent.connection(1)
    expect(second.hello).toMatchObject({ kind: "hello", version: 1, jobId: "job-1", token: parent.token })
    expect((await second.request("client_command", "check_status")).payload).toEqual({ status: 2 })
    expect((await ctx.request({ channel: "svc", topic: "echo", message: { payload: 1 } })).payload).toBe(1)
    job.finish(0)
    expect(await job.done).toBe(0)
    expect(second.statuses).toEqual([3])
    expect(ctx.signal.aborted).toBe(false)
    expect(job.logs.join("\n")).toMatch(/reconnected/)
  })

  it("closes and reconnects after a malformed frame from the parent", async () => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent))
    const first = await parent.connection(0)
    await job.ctx
    // a header that is not JSON
    const garbage = Buffer.alloc(8 + 5)
    garbage.writeUInt32BE(4 + 5, 0)
    garbage.writeUInt32BE(5, 4)
    garbage.write("nope!", 8)
    first.socket.write(garbage)
    await until(parent, () => (first.closed ? true : undefined), "the worker to close the connection")
    const second = await parent.connection(1)
    expect((await second.request("client_command", "check_status")).payload).toEqual({ status: 2 })
    expect(job.logs.join("\n")).toMatch(/malformed frame/)
    job.finish(0)
    expect(await job.done).toBe(0)
  })

  it("aborts itself when it cannot reconnect within FLEXEC_RECONNECT_MS, and exits 104 once run returns", async () => {
    const parent = await startParent()
    const job = runInProcess(jobEnv(parent, { FLEXEC_RECONNECT_MS: "300" }), {
      run: async (ctx) => {
        await new Promise<void>((r) => ctx.signal.addEventListener("abort", () => r()))
        return 0
      }
    })
    const conn = await parent.connection()
    const ctx = await job.ctx
    parent.stopListening()
    conn.socket.destroy()
    expect(await job.done).toBe(104)
    expect(ctx.signal.aborted).toBe(true)
    expect((ctx.signal.reason as Error).message).toMatch(/connection to the parent was lost/)
    expect(parent.statuses).toEqual([2])
    expect(job.logs.join("\n")).toMatch(/could not be re-established within 300 ms/)
    // run returned: no work left, no rc file
    expect(existsSync(rcFile(parent.dir))).toBe(false)
  })

  it("a connector throwing ConfigError while reconnecting ends the window at once", async () => {
    const parent = await startParent()
    const exits: Array<number> = []
    let connects = 0
    let dead = false
    const env = jobEnv(parent)
    const ctxReady = deferred<JobContext>()
    const done = runJobWith(
      {
        run: async (ctx) => {
          ctxReady.resolve(ctx)
          await new Promise<void>((r) => ctx.signal.addEventListener("abort", () => r()))
        }
      },
      {
        env,
        connect: (url) => {
          connects++
          if (dead) throw new ConfigError("the parent is gone")
          return connectUnix(url)
        },
        exit: (code) => exits.push(code),
        log: () => undefined
      }
    )
    const conn = await parent.connection()
    await ctxReady.promise
    dead = true
    conn.socket.destroy()
    expect(await done).toBe(104)
    expect(connects).toBe(2)
  })

  it("writes the rc file (exclusive create) when run does not return within the grace period after the self-abort", async () => {
    const parent = await startParent()
    writeFileSync(join(parent.dir, "other"), "")
    const job = runInProcess(jobEnv(parent, { FLEXEC_RECONNECT_MS: "200", FLEXEC_ABORT_GRACE_MS: "100" }), {
      run: () => new Promise<never>(() => undefined)
    })
    const conn = await parent.connection()
    await job.ctx
    parent.stopListening()
    conn.socket.destroy()
    expect(await job.done).toBe(104)
    expect(readFileSync(rcFile(parent.dir), "utf8")).toBe("104\n")
    expect(job.logs.join("\n")).toMatch(/did not return within 100 ms/)
  })

  it("the rc file's first writer wins", async () => {
    const parent = await startParent()
    writeFileSync(rcFile(parent.dir), "7\n")
    const job = runInProcess(jobEnv(parent, { FLEXEC_RECONNECT_MS: "200", FLEXEC_ABORT_GRACE_MS: "50" }), {
      run: () => new Promise<never>(() => undefined)
    })
    const conn = await parent.connection()
    await job.ctx
    parent.stopListening()
    conn.socket.destroy()
    expect(await job.done).toBe(104)
    expect(readFileSync(rcFile(parent.dir), "utf8")).toBe("7\n")
  })
})

// ---------------------------------------------------------------------------
// real child processes running `runJob` from a bundle of the worker entry

describe("runJob in a child process", () => {
  let bundleDir = ""
  let bundle = ""

  beforeAll(async () => {
    bundleDir = mkdtempSync(join(tmpdir(), "fxw-bundle-"))
    bundle = join(bundleDir, "worker.cjs")
    await build({
      entryPoints: [resolve(__dirname, "../src/worker/index.ts")],
      bundle: true,
      platform: "node",
      format: "cjs",
      target: "node20",
      outfile: bundle,
      logLevel: "silent"
    })
  })
  afterAll(() => {
    rmSync(bundleDir, { recursive: true, force: true })
  })

  interface ChildResult {
    readonly code: number | null
    readonly signal: NodeJS.Signals | null
    readonly stderr: string
  }

  /** Runs `body` (a script that gets `runJob` and friends in scope) as a child process. */
  const runChild = (parent: RawParent, body: string, env: Record<string, string | undefined> = {}): Promise<ChildResult> => {
    const script = join(parent.dir, "job.cjs")
    writeFileSync(script, `const { runJob, ConfigError, UnsafeComponentError } = require(${JSON.stringify(bundle)})\n${body}\n`)
    const childEnv: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin" }
    for (const [k, v] of Object.entries({ ...jobEnv(parent), ...env })) if (v !== undefined) childEnv[k] = v
    const child = spawn(process.execPath, [script], { env: childEnv, stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s))
    return new Promise((resolveChild, reject) => {
      child.once("error", reject)
      child.once("close", (code, signal) => resolveChild({ code, signal, stderr }))
    })
  }

  it("exits with run's result, reports Started then Stopped, and does not leak the secrets into process.env", async () => {
    const parent = await startParent()
    const result = await runChild(
      parent,
      `runJob({ run: async (ctx) => {
        await ctx.request({ channel: "svc", topic: "echo", message: { payload: {
          env: Object.keys(process.env).filter((k) => k.startsWith("FLEXEC_")).sort(),
          credentials: ctx.credentials, set: ctx.set } } })
        return 5
      } })`
    )
    expect(result).toMatchObject({ code: 5, signal: null })
    expect(parent.statuses).toEqual([2, 3])
    const seen = parent.requests[0]!.payload as { env: Array<string>; credentials: unknown; set: unknown }
    expect(seen.env).toEqual([
      "FLEXEC_CLIENT_NAME",
      "FLEXEC_JOB_DIR",
      "FLEXEC_JOB_ID",
      "FLEXEC_PARENT_URL",
      "FLEXEC_SET",
      "FLEXEC_STARTUP_DIR",
      "FLEXEC_WORKSPACE"
    ])
    expect(seen.credentials).toEqual({ token: "auth-token", tokenSignature: "signature", ssid: "ssid-1" })
    expect(seen.set).toEqual({ lr: 0.1 })
    expect(existsSync(rcFile(parent.dir))).toBe(false)
  })

  it.each([
    ["new Error('boom')", 101],
    ["new UnsafeComponentError('nope')", 102],
    ["new ConfigError('bad')", 103]
  ])("run throwing %s exits %i", async (error, code) => {
    const parent = await startParent()
    const result = await runChild(parent, `runJob({ run: async () => { throw ${error} } })`)
    expect(result.code).toBe(code)
    expect(parent.statuses).toEqual([2, 3])
    expect(result.stderr).toContain(`exit ${code}`)
  })

  it("exits 103 with a clear message when FLEXEC_PARENT_URL is missing", async () => {
    const parent = await startParent()
    const result = await runChild(parent, `runJob({ run: async () => 0 })`, { FLEXEC_PARENT_URL: undefined })
    expect(result.code).toBe(103)
    expect(result.stderr).toMatch(/configuration error: FLEXEC_PARENT_URL is not set/)
  })

  it("writes the rc file only when work is still alive at exit", async () => {
    const clean = await startParent()
    const cleanResult = await runChild(
      clean,
      `runJob({ run: async () => { await new Promise((r) => setTimeout(r, 10)); return 5 } })`
    )
    expect(cleanResult.code).toBe(5)
    expect(existsSync(rcFile(clean.dir))).toBe(false)

    const busy = await startParent()
    const busyResult = await runChild(
      busy,
      `runJob({ run: async () => { setInterval(() => {}, 1000); require("node:net").createServer().listen(0); return 5 } })`
    )
    expect(busyResult.code).toBe(5)
    expect(readFileSync(rcFile(busy.dir), "utf8")).toBe("5\n")
  })

  it("aborts itself after the reconnect window; a run that ignores the signal is cut after the grace period", async () => {
    const parent = await startParent()
    const resultPromise = runChild(
      parent,
      `runJob({ run: (ctx) => { setInterval(() => {}, 1000); return new Promise(() => {}) } })`,
      { FLEXEC_RECONNECT_MS: "300", FLEXEC_ABORT_GRACE_MS: "200" }
    )
    const conn = await parent.connection()
    await parent.status(2)
    parent.stopListening()
    conn.socket.destroy()
    const result = await resultPromise
    expect(result.code).toBe(104)
    expect(readFileSync(rcFile(parent.dir), "utf8")).toBe("104\n")
    expect(result.stderr).toMatch(/aborting the job/)
  })
})
