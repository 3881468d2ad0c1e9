// The peers' job processes of the RTT and bulk measurements: a fork() child
// with serialization "advanced", and a vscode-jsonrpc server over a unix
// socket. Both get flexec's allowlisted job environment, the same node binary
// and their own process group, as the flexec job and the raw baseline do.
import { fork, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as rpc from "vscode-jsonrpc/node"
import { jobLikeEnv, tempDir, workersDir } from "./common.mjs"

/**
 * Forks `workers/fork-echo.cjs`; `request(op, data)` resolves with the reply
 * message (requests may be pipelined: each carries an id).
 */
export const startForkEcho = async () => {
  const child = fork(path.join(workersDir, "fork-echo.cjs"), [], {
    serialization: "advanced",
    env: jobLikeEnv(),
    detached: true,
    stdio: ["ignore", "pipe", "pipe", "ipc"]
  })
  child.stdout?.resume()
  child.stderr?.resume()
  const pending = new Map()
  let seq = 0
  child.on("message", (/** @type {any} */ m) => {
    const r = pending.get(m.id)
    pending.delete(m.id)
    r?.(m)
  })
  await new Promise((resolve, reject) => {
    child.once("spawn", resolve)
    child.once("error", reject)
  })
  // one round trip, so the child is up and its handler installed
  const request = (op, data) =>
    new Promise((resolve) => {
      const id = ++seq
      pending.set(id, resolve)
      child.send({ id, op, data })
    })
  await request("echo", null)
  const exited = new Promise((r) => child.once("exit", r))
  return {
    request,
    async close() {
      child.disconnect()
      await exited
    }
  }
}

/**
 * Starts `workers/jsonrpc-echo.cjs` and connects to it over a unix socket;
 * `request(params)` sends the JSON-RPC request "echo" and resolves with its result.
 */
export const startJsonRpcEcho = async () => {
  const dir = tempDir("fxb-rpc-")
  const sock = path.join(dir, "rpc.sock")
  /** @type {(c: rpc.MessageConnection) => void} */
  let onConnection
  const connected = new Promise((r) => (onConnection = r))
  const server = net.createServer((socket) => {
    socket.on("error", () => {})
    const connection = rpc.createMessageConnection(new rpc.SocketMessageReader(socket), new rpc.SocketMessageWriter(socket))
    connection.listen()
    onConnection(connection)
  })
  await new Promise((resolve) => server.listen(sock, () => resolve(undefined)))
  const child = spawn(process.execPath, [path.join(workersDir, "jsonrpc-echo.cjs")], {
    env: jobLikeEnv({ BENCH_SOCK: sock }),
    detached: true,
    stdio: ["ignore", "pipe", "pipe"]
  })
  child.stdout.resume()
  child.stderr.resume()
  const exited = new Promise((r) => child.once("exit", r))
  const connection = await connected
  const request = (params) => connection.sendRequest("echo", params)
  await request({ d: "" })
  return {
    request,
    async close() {
      connection.dispose()
      server.close()
      child.kill("SIGTERM")
      await exited
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}
