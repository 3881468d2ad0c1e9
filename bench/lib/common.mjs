// Shared helpers of the benchmarks: statistics, the job environment both sides
// get, job deployment, an event pump over a PromiseExecutor, the raw server.
import * as child_process from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import rawproto from "../workers/rawproto.cjs"

export const benchDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
export const workersDir = path.join(benchDir, "workers")
export const rawProtoPath = path.join(workersDir, "rawproto.cjs")
export const site = "site-1"

v8.setFlagsFromString("--expose-gc")
/** A full GC (several passes, so finalizers run). */
export const gc = (() => {
  const f = vm.runInNewContext("gc")
  return () => { f(); f(); f() }
})()

/** Wall-clock-based ms with sub-ms resolution (comparable across processes). */
export const wallNow = () => performance.timeOrigin + performance.now()
export const now = () => performance.now()
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Percentile (nearest-rank on a sorted copy). */
export const pct = (xs, p) => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))
  return s[i]
}
export const median = (xs) => pct(xs, 50)

/**
 * The environment a job gets from flexec's allowlist (PATH, HOME, LANG, LC_*,
 * TZ, TMPDIR): the raw side gets exactly this too, so neither pays for an
 * inherited NODE_EXTRA_CA_CERTS (60–130 ms per Node start here).
 */
export const jobLikeEnv = (extra = {}) => {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && (["PATH", "HOME", "LANG", "TZ", "TMPDIR"].includes(k) || k.startsWith("LC_"))) env[k] = v
  }
  return { ...env, ...extra }
}

/** A temporary directory, removed by the returned cleanup. */
export const tempDir = (prefix) => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

/** Deploys a job of the bench worker into `workspace` (NVFlare's layout). */
export const deployJob = (workspace, jobId, app = "flexec-echo.js") => {
  const jobDir = path.join(workspace, jobId)
  fs.mkdirSync(path.join(jobDir, `app_${site}`), { recursive: true })
  fs.writeFileSync(path.join(jobDir, "meta.json"), JSON.stringify({ job_id: jobId, name: jobId, resource_spec: {}, min_clients: 1 }))
  fs.copyFileSync(path.join(workersDir, app), path.join(jobDir, `app_${site}`, "main.js"))
  return jobDir
}

/**
 * One subscription to `executor.events()`, fanned out to waiters:
 * `waitFor(jobId, tag)` resolves with `{ event, at }` (at = performance.now()
 * when the event was seen), also for an event that came before the call.
 */
export const eventPump = (executor) => {
  const seen = new Map()
  const waiters = new Map()
  const iterator = executor.events()[Symbol.asyncIterator]()
  let stopped = false
  ;(async () => {
    while (!stopped) {
      const r = await iterator.next()
      if (r.done) return
      const at = now()
      const key = `${r.value.jobId}:${r.value._tag}`
      const entry = { event: r.value, at }
      seen.set(key, entry)
      const ws = waiters.get(key)
      waiters.delete(key)
      for (const w of ws ?? []) w(entry)
    }
  })().catch(() => {})
  return {
    waitFor(jobId, tag, timeoutMs = 120_000) {
      const key = `${jobId}:${tag}`
      const hit = seen.get(key)
      if (hit) return Promise.resolve(hit)
      return new Promise((resolve, reject) => {
        const w = (v) => {
          clearTimeout(timer)
          resolve(v)
        }
        const timer = setTimeout(() => {
          const list = waiters.get(key)
          if (list) list.splice(list.indexOf(w), 1)
          reject(new Error(`no ${tag} for ${jobId} within ${timeoutMs} ms`))
        }, timeoutMs)
        if (!waiters.has(key)) waiters.set(key, [])
        waiters.get(key).push(w)
      })
    },
    /** Started, or a failure naming the outcome if the job completes first. */
    async started(jobId, timeoutMs = 120_000) {
      const completed = this.waitFor(jobId, "Completed", timeoutMs).then(({ event }) => {
        throw new Error(`${jobId} completed before Started: ${JSON.stringify(event.outcome)}`)
      })
      completed.catch(() => {})
      return Promise.race([this.waitFor(jobId, "Started", timeoutMs), completed])
    },
    forget(jobId) {
      for (const k of seen.keys()) if (k.startsWith(`${jobId}:`)) seen.delete(k)
    },
    stop() {
      stopped = true
      iterator.return?.()
    }
  }
}

/**
 * The parent's end of the raw baseline: listens on `sockPath`; every connection
 * is a peer whose `hello` resolves `nextHello()`, and which answers
 * `request(op, data)` with the reply frame's data (requests may be pipelined).
 */
export const rawServer = async (sockPath) => {
  const helloWaiters = []
  const hellos = []
  const peers = new Set()
  const server = net.createServer((socket) => {
    // replies come in the order of the requests: pipelined requests wait in a FIFO
    const pendingReplies = []
    const peer = {
      socket,
      request(op, data) {
        return new Promise((resolve) => {
          pendingReplies.push(resolve)
          rawproto.send(socket, op, data)
        })
      },
      close() {
        socket.end()
      }
    }
    peers.add(peer)
    socket.on("close", () => peers.delete(peer))
    socket.on("error", () => {})
    socket.on("data", rawproto.reader((op, data) => {
      if (op === 0) {
        const entry = { peer, at: now() }
        const w = helloWaiters.shift()
        if (w) w(entry)
        else hellos.push(entry)
      } else {
        pendingReplies.shift()?.(data)
      }
    }))
  })
  await new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(sockPath, () => resolve(undefined))
  })
  return {
    nextHello(timeoutMs = 120_000) {
      const h = hellos.shift()
      if (h) return Promise.resolve(h)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no raw hello within ${timeoutMs} ms`)), timeoutMs)
        helloWaiters.push((e) => {
          clearTimeout(timer)
          resolve(e)
        })
      })
    },
    close: () =>
      new Promise((resolve) => {
        for (const p of peers) p.socket.destroy()
        server.close(() => resolve())
      })
  }
}

/** Samples the parent's RSS every `everyMs` until stopped; returns the peak. */
export const rssSampler = (everyMs = 2) => {
  let peak = process.memoryUsage.rss()
  const timer = setInterval(() => {
    const r = process.memoryUsage.rss()
    if (r > peak) peak = r
  }, everyMs)
  return {
    stop() {
      clearInterval(timer)
      const r = process.memoryUsage.rss()
      return r > peak ? r : peak
    }
  }
}

/** A payload of `n` bytes whose JSON text is exactly `n` bytes. */
export const jsonPayloadOf = (n) => {
  const base = JSON.stringify({ d: "" }).length
  return { d: "x".repeat(n - base) }
}

export const MiB = 1024 * 1024
export const fmtMs = (x) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)) : "–")
export const fmtUs = (ms) => (Number.isFinite(ms) ? `${(ms * 1000).toFixed(ms < 0.01 ? 2 : 0)} µs` : "–")

/**
 * Runs `a` and `b` `warm` times each, then `n` times each interleaved (A B, then
 * B A: neither side always goes first); returns the values each returned, in order.
 */
export const interleaved = async ({ warm, n }, a, b) => {
  for (let i = 0; i < warm; i++) {
    await a()
    await b()
  }
  const A = []
  const B = []
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      A.push(await a())
      B.push(await b())
    } else {
      B.push(await b())
      A.push(await a())
    }
  }
  return { A, B }
}

/**
 * One timed job start through a Promise executor: deploys `<prefix>-<k>` in
 * `workspace`, returns ms from `startApp` to Started as the pump saw it, then
 * aborts the job, waits for Completed and removes its directory.
 */
export const timedStart = (executor, pump, workspace, prefix) => {
  let seq = 0
  return async () => {
    const jobId = `${prefix}-${++seq}`
    deployJob(workspace, jobId)
    const t0 = now()
    await executor.startApp({ jobId, args: { workspace } })
    const { at } = await pump.started(jobId)
    const dt = at - t0
    await executor.abortApp(jobId)
    await pump.waitFor(jobId, "Completed")
    pump.forget(jobId)
    fs.rmSync(path.join(workspace, jobId), { recursive: true, force: true })
    return dt
  }
}

/**
 * Pins this process (all its threads) to one CPU for `run`, then gives it back
 * its own affinity; children spawned meanwhile (the jobs, the peers' children)
 * inherit the pin. Latency figures on a VM with 2 vCPUs are bimodal by
 * placement: a ping-pong on one CPU costs ~20–25 µs, across CPUs ~100 µs (the
 * idle vCPU's wake-up), and which one a run gets is chance. On one CPU every
 * contender pays only its own work: the figure is then the CPU cost of a round
 * trip, which on a busy machine is preempted by everything else on that CPU.
 * Opt-in (FLEXEC_BENCH_PIN=1; needs `taskset` from util-linux): the bars were
 * set unpinned. Returns `run`'s result and how it ran.
 * @template T
 * @param {() => Promise<T>} run
 * @returns {Promise<{ result: T, pinned: string | undefined }>}
 */
export const onOneCpu = async (run) => {
  /** @param {Array<string>} args */
  const taskset = (args) => child_process.execFileSync("taskset", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
  let mask
  try {
    if (process.env.FLEXEC_BENCH_PIN !== "1") throw new Error("off")
    mask = /mask:\s*([0-9a-f]+)/.exec(taskset(["-p", String(process.pid)]))?.[1]
    if (mask === undefined) throw new Error("no mask")
    taskset(["-acp", "0", String(process.pid)])
  } catch {
    return { result: await run(), pinned: undefined }
  }
  try {
    return { result: await run(), pinned: "the parent and every job pinned to CPU 0 (taskset): latency without the cross-CPU wake-up" }
  } finally {
    taskset(["-ap", mask, String(process.pid)])
  }
}
