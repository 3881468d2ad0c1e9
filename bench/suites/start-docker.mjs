// 4. Job start on the Docker backend: startApp → Started, against (a) the raw
// Engine API (keep-alive HTTP over the engine's socket): create + start + the
// same hello over a bind-mounted unix socket, with the container options
// flexec uses (Init, network none, CapDrop ALL, no-new-privileges, PidsLimit,
// a tmpfs workspace, the socket dir bound read-only, the same user), and
// (b) `docker run` through the CLI, and (c) the peer a Node user would pick,
// dockerode: createContainer + start with the same options → the same hello.
// Rotated rounds (A B C D, B C D A, …) after a warm-up.
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { createDockerExecutor } from "@flexec/executor-docker"
import Docker from "dockerode"
import { eventPump, fmtMs, median, now, pct, rawServer, site, tempDir, timedStart, workersDir } from "../lib/common.mjs"
import { bestPeerRow, peerRows, rounds, versionOf } from "../lib/peers.mjs"
import { row } from "../lib/row.mjs"

export const name = "start-docker"

const image = process.env.FLEXEC_BENCH_IMAGE ?? "flexec-node:test"
const dockerSock = process.env.DOCKER_HOST?.startsWith("unix://") ? process.env.DOCKER_HOST.slice(7) : "/var/run/docker.sock"
const dockerCli = fs.existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker"
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })

const api = (method, p, body) =>
  new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const req = http.request(
      { socketPath: dockerSock, path: `/v1.41${p}`, method, agent, headers: data ? { "content-type": "application/json", "content-length": data.length } : {} },
      (res) => {
        const chunks = []
        res.on("data", (c) => chunks.push(c))
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString()
          if (res.statusCode >= 300) reject(new Error(`${method} ${p}: ${res.statusCode} ${text}`))
          else resolve(text ? JSON.parse(text) : undefined)
        })
      }
    )
    req.on("error", reject)
    req.end(data)
  })

export async function run({ quick, log }) {
  try {
    await api("GET", `/images/${encodeURIComponent(image)}/json`)
  } catch (error) {
    log(`start-docker skipped: ${error.message}`)
    return [{ id: "4", what: "docker job start (skipped: no engine or no image)", flexec: "–", raw: "–", ratio: NaN, bar: undefined, pass: undefined, note: String(error.message).slice(0, 160) }]
  }
  const warm = quick ? 1 : 2
  const n = quick ? 3 : 20
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  const workspace = tempDir("flexec-bench-ws-")
  const rawDir = tempDir("fxb-draw-")
  fs.chmodSync(rawDir, 0o755)
  fs.copyFileSync(path.join(workersDir, "rawproto.cjs"), path.join(rawDir, "rawproto.cjs"))
  fs.copyFileSync(path.join(workersDir, "raw-hello.cjs"), path.join(rawDir, "raw-hello.cjs"))
  const server = await rawServer(path.join(rawDir, "r.sock"))
  const executor = await createDockerExecutor({
    client: { clientName: site },
    image,
    allowedImages: [image],
    instanceId: `bench-sd-${process.pid}`,
    graceMs: 2000,
    killTimeoutMs: 1000
  })
  const pump = eventPump(executor)
  const flexecOnce = timedStart(executor, pump, workspace, "sd")
  // names of the raw side's containers
  let seq = 0
  /** The container both the raw Engine API and dockerode create: flexec's options, the raw hello. */
  const spec = {
    Image: image,
    Cmd: ["node", "/run/flexec/raw-hello.cjs"],
    Entrypoint: [],
    Env: ["BENCH_SOCK=/run/flexec/r.sock"],
    User: `${uid}:${gid}`,
    WorkingDir: "/run/flexec",
    AttachStdout: true,
    AttachStderr: true,
    Labels: { "flexec.bench": "raw" },
    HostConfig: {
      Init: true,
      NetworkMode: "none",
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      PidsLimit: 1024,
      Mounts: [
        { Type: "tmpfs", Target: "/var/tmp/flexec/workspace" },
        { Type: "bind", Source: rawDir, Target: "/run/flexec", ReadOnly: true }
      ]
    }
  }
  const rawApiOnce = async () => {
    const name = `fxbench-raw-${process.pid}-${++seq}`
    const t0 = now()
    const created = await api("POST", `/containers/create?name=${name}`, spec)
    await api("POST", `/containers/${created.Id}/start`)
    const { peer, at } = await server.nextHello(60_000)
    const dt = at - t0
    peer.close()
    await api("POST", `/containers/${created.Id}/wait`).catch(() => {})
    await api("DELETE", `/containers/${created.Id}?force=true`).catch(() => {})
    return dt
  }
  const cliOnce = async () => {
    const t0 = now()
    const child = spawn(
      dockerCli,
      ["run", "--rm", "--init", "--network", "none", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "1024",
        "--user", `${uid}:${gid}`, "--label", "flexec.bench=cli", "--tmpfs", "/var/tmp/flexec/workspace",
        "--mount", `type=bind,source=${rawDir},target=/run/flexec,readonly`, "-e", "BENCH_SOCK=/run/flexec/r.sock", "-w", "/run/flexec",
        "--entrypoint", "", image, "node", "/run/flexec/raw-hello.cjs"],
      { stdio: ["ignore", "ignore", "pipe"], env: process.env }
    )
    let err = ""
    child.stderr.on("data", (d) => (err += d))
    const exited = new Promise((r) => child.once("exit", r))
    const hello = server.nextHello(60_000)
    const first = await Promise.race([hello, exited.then((code) => ({ exited: code }))])
    if ("exited" in first) throw new Error(`docker run exited ${first.exited}: ${err}`)
    const dt = first.at - t0
    first.peer.close()
    await exited
    return dt
  }
  const docker = new Docker({ socketPath: dockerSock })
  const dockerodeOnce = async () => {
    const name = `fxbench-dockerode-${process.pid}-${++seq}`
    const t0 = now()
    const container = await docker.createContainer(/** @type {any} */ ({ name, ...spec, Labels: { "flexec.bench": "dockerode" } }))
    await container.start()
    const { peer, at } = await server.nextHello(60_000)
    const dt = at - t0
    peer.close()
    await container.wait().catch(() => {})
    await container.remove({ force: true }).catch(() => {})
    return dt
  }
  /** @type {Record<string, Array<number>>} */
  let s
  try {
    s = await rounds({ warm, n }, { flexec: flexecOnce, raw: rawApiOnce, cli: cliOnce, dockerode: dockerodeOnce })
  } finally {
    pump.stop()
    await executor.close()
    await server.close()
    agent.destroy()
    fs.rmSync(workspace, { recursive: true, force: true })
    fs.rmSync(rawDir, { recursive: true, force: true })
  }
  const A = s.flexec
  const B = s.raw
  const C = s.cli
  let cliVersion = "?"
  try {
    cliVersion = (await new Promise((resolve, reject) => {
      let out = ""
      const child = spawn(dockerCli, ["version", "--format", "{{.Client.Version}}"], { stdio: ["ignore", "pipe", "ignore"] })
      child.stdout.on("data", (d) => (out += d))
      child.once("error", reject)
      child.once("exit", () => resolve(out.trim() || "?"))
    })).toString()
  } catch {}
  const contenders = [
    { who: "flexec startApp → Started", version: versionOf("@flexec/executor-docker"), samples: A },
    { who: "raw", version: "Engine API v1.41, keep-alive HTTP", samples: B },
    { who: "docker run (CLI)", version: cliVersion, samples: C },
    { who: "dockerode create + start", version: versionOf("dockerode"), samples: s.dockerode }
  ]
  const ms = (x) => `${fmtMs(x)} ms`
  log(`start-docker: flexec p50 ${fmtMs(median(A))} ms, raw API ${fmtMs(median(B))} ms, CLI ${fmtMs(median(C))} ms, dockerode ${fmtMs(median(s.dockerode))} ms`)
  return [
    row({
      id: "4",
      what: `docker job start p50 vs raw Engine API (n=${n})`,
      flexec: `${fmtMs(median(A))} ms`,
      raw: `${fmtMs(median(B))} ms`,
      ratio: median(A) / median(B),
      bar: { op: "<=", value: 1.15 },
      note: `p99 ${fmtMs(pct(A, 99))} / ${fmtMs(pct(B, 99))} ms; median of paired ratios ${median(A.map((a, i) => a / B[i])).toFixed(2)}`
    }),
    row({
      id: "4",
      what: `docker job start p50 vs docker run CLI (n=${n})`,
      flexec: `${fmtMs(median(A))} ms`,
      raw: `${fmtMs(median(C))} ms`,
      ratio: median(A) / median(C),
      bar: { op: "<=", value: 1 },
      note: `p99 CLI ${fmtMs(pct(C, 99))} ms`
    }),
    bestPeerRow({ id: "4", what: `docker job start p50 (n=${n})`, flexec: contenders[0], peers: contenders.slice(2), fmt: ms, note: "the peers start the raw hello script: no job protocol" }),
    ...peerRows({ id: "4", figure: "docker job start → the job runs", contenders, fmt: ms })
  ]
}
