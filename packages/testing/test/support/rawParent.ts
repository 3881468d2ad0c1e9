/**
 * A tiny raw parent for the fixture tests: a unix socket server speaking the
 * wire protocol with core's frame codec, and a runner of fixture programs as
 * real child processes. Promise-based; every wait has a deadline.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as codec from "../../../core/src/protocol/Frame.js"
import { waitUntil } from "../../src/waitUntil.js"

/** Rejects after `ms` with a message naming what did not happen. */
export const within = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
    promise.then(
      (value) => (clearTimeout(timer), resolve(value)),
      (error: unknown) => (clearTimeout(timer), reject(error))
    )
  })

/** Polls `check` until it returns a value other than `undefined`, or fails at the deadline. */
export const pollUntil = <A>(check: () => A | undefined, ms: number, what: string): Promise<A> => waitUntil(what, check, ms, 20)

/** A promise with its resolver. */
const deferred = <A>() => {
  let resolve!: (value: A) => void
  const promise = new Promise<A>((r) => (resolve = r))
  return { promise, resolve }
}

/** A reply the test's handler gives to the job's requests. */
export interface RawReply {
  readonly rc?: string
  readonly payload?: unknown
}

/** A job's request, as the raw parent saw it. */
export interface RawRequest {
  readonly channel: string
  readonly topic: string
  readonly payload: unknown
}

/** One accepted connection. */
export class RawConnection {
  readonly frames: Array<{ header: codec.FrameHeader; payload: unknown }> = []
  readonly requests: Array<RawRequest> = []
  readonly statuses: Array<number> = []
  decodeError: string | undefined
  private readonly hello = deferred<codec.FrameHeader>()
  private readonly closed = deferred<void>()
  private readonly replies = new Map<number, (frame: { header: codec.FrameHeader; payload: unknown }) => void>()
  private statusWaiters: Array<() => void> = []
  private nextId = 1

  constructor(
    readonly socket: net.Socket,
    private readonly parent: RawParent
  ) {
    const decoder = new codec.FrameDecoder()
    socket.on("data", (chunk: Buffer) =>
      decoder.push(chunk, (event) => {
        if (event.type === "error") {
          this.decodeError = event.reason
          socket.destroy() // a malformed frame closes the connection
        } else if (event.type === "frame") {
          this.onFrame(event.header, codec.decodePayload(event.header.enc, event.payload))
        }
      })
    )
    socket.on("error", () => undefined)
    socket.on("close", () => this.closed.resolve())
  }

  /** The hello header (the parent answers `hello_ok` when the token matches). */
  helloHeader(ms = 10_000): Promise<codec.FrameHeader> {
    return within(this.hello.promise, ms, "the worker's hello")
  }

  /** Resolves when the connection is closed. */
  whenClosed(ms = 10_000): Promise<void> {
    return within(this.closed.promise, ms, "the connection to close")
  }

  /** Waits until the worker reported `status` (2 Started, 3 Stopped). */
  async awaitStatus(status: number, ms = 10_000): Promise<void> {
    await within(
      new Promise<void>((resolve) => {
        const check = () => (this.statuses.includes(status) ? (resolve(), true) : false)
        if (!check()) this.statusWaiters.push(() => void check())
      }),
      ms,
      `status ${status}`
    )
  }

  /** A request to the worker; resolves with the reply's rc and payload. */
  request(channel: string, topic: string, payload?: unknown, ms = 10_000): Promise<{ rc: string | undefined; payload: unknown }> {
    const id = this.nextId++
    const reply = new Promise<{ rc: string | undefined; payload: unknown }>((resolve) =>
      this.replies.set(id, (frame) => resolve({ rc: frame.header.rc, payload: frame.payload }))
    )
    const { enc, bytes } = codec.encodePayload(payload)
    for (const chunk of codec.encodeFrame({ kind: "request", id, channel, topic, enc }, bytes)) this.socket.write(chunk)
    return within(reply, ms, `the reply to ${channel}/${topic}`)
  }

  private send(header: codec.FrameHeader, payload?: unknown): void {
    const { enc, bytes } = codec.encodePayload(payload)
    for (const chunk of codec.encodeFrame({ ...header, enc }, bytes)) this.socket.write(chunk)
  }

  private onFrame(header: codec.FrameHeader, payload: unknown): void {
    this.frames.push({ header, payload })
    if (header.kind === "hello") {
      if (header.token !== this.parent.token) {
        this.socket.destroy()
        return
      }
      this.send({ kind: "hello_ok", version: codec.PROTOCOL_VERSION, maxFrame: codec.DEFAULT_MAX_FRAME_BYTES })
      this.hello.resolve(header)
      return
    }
    if (header.kind === "reply") {
      this.replies.get(header.id ?? -1)?.({ header, payload })
      this.replies.delete(header.id ?? -1)
      return
    }
    if (header.kind !== "request" && header.kind !== "notify") return
    const request: RawRequest = { channel: header.channel ?? "", topic: header.topic ?? "", payload }
    this.requests.push(request)
    let reply: RawReply
    if (request.channel === "admin" && request.topic === "notify_job_status") {
      this.statuses.push((payload as { status: number }).status)
      for (const wake of this.statusWaiters) wake()
      reply = { rc: "ok" }
    } else {
      reply = this.parent.onRequest(request) ?? { rc: "invalid_request", payload: "no handler" }
    }
    if (header.kind === "request") this.send({ kind: "reply", id: header.id!, rc: reply.rc ?? "ok" }, reply.payload)
  }
}

/** A unix socket server in a temp dir, accepting workers. */
export class RawParent {
  readonly connections: Array<RawConnection> = []
  readonly token = "raw-parent-token"
  onRequest: (request: RawRequest) => RawReply | undefined = () => undefined
  private waiters: Array<(c: RawConnection) => void> = []

  private constructor(
    readonly dir: string,
    readonly server: net.Server
  ) {}

  static async open(): Promise<RawParent> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flx-raw-"))
    const server = net.createServer()
    const parent = new RawParent(dir, server)
    server.on("connection", (socket) => {
      const connection = new RawConnection(socket, parent)
      parent.connections.push(connection)
      for (const wake of parent.waiters.splice(0)) wake(connection)
    })
    await new Promise<void>((resolve) => server.listen(path.join(dir, "s"), resolve))
    return parent
  }

  get url(): string {
    return `unix://${path.join(this.dir, "s")}`
  }

  /** The first connection (waits for it). */
  connection(ms = 10_000): Promise<RawConnection> {
    const first = this.connections[0]
    if (first) return Promise.resolve(first)
    return within(new Promise((resolve) => this.waiters.push(resolve)), ms, "a connection")
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

/** The worker runtime jobs load (`FLEXEC_WORKER_MODULE`): core's CommonJS build. */
export const workerModule = (): string => createRequire(import.meta.url).resolve("@flexec/core/worker")

/** A fixture program running as a child process. */
export class RunningFixture {
  readonly stdout: Array<string> = []
  readonly stderr: Array<string> = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>

  constructor(readonly child: ChildProcess) {
    const lines = (sink: Array<string>) => {
      let rest = ""
      return (chunk: Buffer) => {
        const parts = (rest + chunk.toString("utf8")).split("\n")
        rest = parts.pop() ?? ""
        sink.push(...parts)
      }
    }
    child.stdout?.on("data", lines(this.stdout))
    child.stderr?.on("data", lines(this.stderr))
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
  }

  /** The exit (code, signal), with a deadline. */
  exit(ms = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return within(this.exited, ms, `the exit of pid ${this.child.pid}; stderr: ${this.stderr.join("\n")}`)
  }

  /** Waits for a line containing `text` on stdout (or stderr). */
  line(text: string, ms = 10_000, stream: "stdout" | "stderr" = "stdout"): Promise<string> {
    return pollUntil(() => this[stream].find((l) => l.includes(text)), ms, `a line with ${JSON.stringify(text)} on ${stream}`)
  }
}

/** Options of `startFixture`. */
export interface StartOptions {
  readonly argv: ReadonlyArray<string>
  readonly parent?: RawParent
  readonly jobDir: string
  readonly env?: Readonly<Record<string, string>>
  /** Lead a process group of its own (for group kills). */
  readonly detached?: boolean
  readonly cwd?: string
}

const started = new Set<ChildProcess>()

/** Spawns a fixture program (without the parent's `NODE_EXTRA_CA_CERTS` and other variables). */
export const startFixture = (options: StartOptions): RunningFixture => {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    FLEXEC_JOB_ID: "job-1",
    FLEXEC_CLIENT_NAME: "site-1",
    FLEXEC_JOB_DIR: options.jobDir,
    FLEXEC_WORKER_MODULE: workerModule(),
    FLEXEC_RECONNECT_MS: "2000",
    ...(options.parent ? { FLEXEC_PARENT_URL: options.parent.url, FLEXEC_CHANNEL_TOKEN: options.parent.token } : {}),
    ...options.env
  }
  const [command, ...args] = options.argv
  const child = spawn(command!, args, {
    env,
    cwd: options.cwd ?? options.jobDir,
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false
  })
  started.add(child)
  child.once("exit", () => started.delete(child))
  return new RunningFixture(child)
}

/** Kills (SIGKILL) every fixture process these tests started that is still running. */
export const killStarted = (): void => {
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
}

/** True while a process with that pid exists and is not a zombie. */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return false
  }
}
