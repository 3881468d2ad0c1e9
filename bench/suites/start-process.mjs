// 1. Job start on the process backend: startApp → Started, against a raw
// child_process.spawn of a minimal Node script that connects to a unix socket
// and says hello, and the same script started by the peers a user would pick:
// execa and @effect/platform's Command (through @effect/platform-node). All
// four sampled in rotated rounds (A B C D, B C D A, …) after a warm-up; every
// child gets the same environment (flexec's allowlist, nothing inherited), the
// same node binary, its own process group and piped stdout/stderr.
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Command } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { createProcessExecutor } from "@flexec/executor-process"
import { Effect, ManagedRuntime } from "effect"
import { execa } from "execa"
import { eventPump, fmtMs, jobLikeEnv, median, now, pct, rawServer, site, tempDir, timedStart, workersDir } from "../lib/common.mjs"
import { bestPeerRow, peerRows, rounds, versionOf } from "../lib/peers.mjs"
import { row } from "../lib/row.mjs"

export const name = "start-process"

export async function run({ quick, log }) {
  const warm = quick ? 1 : 3
  const n = quick ? 5 : 30
  const workspace = tempDir("flexec-bench-ws-")
  const rawDir = tempDir("fxb-raw-")
  const sock = path.join(rawDir, "r.sock")
  const server = await rawServer(sock)
  const executor = await createProcessExecutor({ client: { clientName: site }, instanceId: `bench-sp-${process.pid}`, graceMs: 2000, killTimeoutMs: 1000 })
  const pump = eventPump(executor)
  const rawEnv = jobLikeEnv({ BENCH_SOCK: sock })
  const flexecOnce = timedStart(executor, pump, workspace, "sp")
  const rawOnce = async () => {
    const t0 = now()
    const child = spawn(process.execPath, [path.join(workersDir, "raw-hello.cjs")], {
      env: rawEnv,
      cwd: rawDir,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout.resume()
    child.stderr.resume()
    const exited = new Promise((r) => child.once("exit", r))
    const { peer, at } = await server.nextHello()
    const dt = at - t0
    peer.close()
    await exited
    return dt
  }
  const helloScript = path.join(workersDir, "raw-hello.cjs")
  const execaOnce = async () => {
    const t0 = now()
    const child = execa(process.execPath, [helloScript], { env: rawEnv, extendEnv: false, cwd: rawDir, detached: true, stdin: "ignore", reject: false })
    const { peer, at } = await server.nextHello()
    const dt = at - t0
    peer.close()
    await child
    return dt
  }
  const runtime = ManagedRuntime.make(NodeContext.layer)
  await runtime.runPromise(Effect.void)
  const command = Command.make(process.execPath, helloScript).pipe(
    Command.env(rawEnv, { extendEnv: false }),
    Command.workingDirectory(rawDir)
  ) // stdin stays a pipe: Command's inputs are "pipe" | "inherit" | a stream
  const effectOnce = async () => {
    const t0 = now()
    return runtime.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const proc = yield* Command.start(command)
          const { peer, at } = yield* Effect.promise(() => server.nextHello())
          peer.close()
          yield* proc.exitCode
          return at - t0
        })
      )
    )
  }
  /** @type {Record<string, Array<number>>} */
  let s
  try {
    s = await rounds({ warm, n }, { flexec: flexecOnce, raw: rawOnce, execa: execaOnce, effect: effectOnce })
  } finally {
    pump.stop()
    await executor.close()
    await runtime.dispose()
    await server.close()
    fs.rmSync(workspace, { recursive: true, force: true })
    fs.rmSync(rawDir, { recursive: true, force: true })
  }
  const A = s.flexec
  const B = s.raw
  const pairRatios = A.map((a, i) => a / B[i])
  const flexecVersion = versionOf("@flexec/executor-process")
  const contenders = [
    { who: "flexec startApp → Started", version: flexecVersion, samples: A },
    { who: "raw", version: `node ${process.version} spawn`, samples: B },
    { who: "execa", version: versionOf("execa"), samples: s.execa },
    { who: "@effect/platform Command", version: `${versionOf("@effect/platform")} (platform-node ${versionOf("@effect/platform-node")})`, samples: s.effect }
  ]
  log(`start-process: flexec p50 ${fmtMs(median(A))} ms, raw ${fmtMs(median(B))}, execa ${fmtMs(median(s.execa))}, Command ${fmtMs(median(s.effect))} ms (n=${n})`)
  const ms = (x) => `${fmtMs(x)} ms`
  return [
    row({
      id: "1",
      what: `process job start p50 (n=${n})`,
      flexec: `${fmtMs(median(A))} ms`,
      raw: `${fmtMs(median(B))} ms`,
      ratio: median(A) / median(B),
      bar: { op: "<=", value: 1.15 },
      note: `p99 ${fmtMs(pct(A, 99))} / ${fmtMs(pct(B, 99))} ms; median of paired ratios ${median(pairRatios).toFixed(2)}`
    }),
    bestPeerRow({ id: "1", what: `process job start p50 (n=${n})`, flexec: contenders[0], peers: contenders.slice(2), fmt: ms, note: "the peers start the raw hello script: no job protocol" }),
    ...peerRows({ id: "1", figure: "process job start → the job runs", contenders, fmt: ms })
  ]
}
