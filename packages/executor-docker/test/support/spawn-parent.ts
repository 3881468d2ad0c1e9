/**
 * Runs `adopt-parent.ts` in a process of its own (vite-node runs the
 * TypeScript source): a parent that starts one job in a container and then
 * waits to be SIGKILLed, as a real parent that dies.
 */
import * as cp from "node:child_process"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))

/** The arguments of `adopt-parent.ts`. */
export interface ParentArgs {
  readonly workspace: string
  readonly runtimeDir: string
  readonly instanceId: string
  readonly jobId: string
  readonly image: string
  readonly socketPath: string
  /** What `deployConformanceJob` returned (its `meta` and `set` are used). */
  readonly job: unknown
  readonly client: unknown
  readonly labels: Readonly<Record<string, string>>
  /** After STARTED: wait to be killed (default), or `process.exit(0)` without closing (`exit`; `exit-leave` with `onParentExit: "leave"`). */
  readonly then?: "exit" | "exit-leave"
}

/** A running parent process. */
export interface SpawnedParent {
  readonly child: cp.ChildProcess
  /** Resolves once the parent printed `STARTED`; rejects if it exits first or `timeoutMs` passes. */
  readonly started: (timeoutMs: number) => Promise<void>
  /** SIGKILLs the parent (no finalizer of it runs) and resolves once it is gone. */
  readonly kill: () => Promise<void>
  /** What it printed so far. */
  readonly output: () => string
}

/** Spawns `adopt-parent.ts` with `args`. */
export const spawnParent = (args: ParentArgs): SpawnedParent => {
  const viteNode = path.join(path.dirname(require.resolve("vite-node/package.json")), "vite-node.mjs")
  const argv = [
    args.workspace,
    args.runtimeDir,
    args.instanceId,
    args.jobId,
    args.image,
    args.socketPath,
    JSON.stringify(args.job),
    JSON.stringify(args.client),
    JSON.stringify(args.labels),
    ...(args.then !== undefined ? [args.then] : [])
  ]
  const child = cp.spawn(process.execPath, [viteNode, path.join(here, "adopt-parent.ts"), ...argv], {
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.on("data", (d: Buffer) => (output += d.toString()))
  child.stderr.on("data", (d: Buffer) => (output += d.toString()))
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once("exit", () => resolve())
  })
  const started = (timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (output.includes("STARTED")) return finish(resolve)
        if (child.exitCode !== null || child.signalCode !== null) {
          return finish(() => reject(new Error(`the parent ${args.instanceId} exited (${child.exitCode ?? child.signalCode}): ${output}`)))
        }
      }
      const timer = setTimeout(
        () => finish(() => reject(new Error(`the parent ${args.instanceId} did not start its job within ${timeoutMs} ms: ${output}`))),
        timeoutMs
      )
      const finish = (f: () => void) => {
        clearTimeout(timer)
        child.stdout.off("data", check)
        child.off("exit", check)
        f()
      }
      child.stdout.on("data", check)
      child.on("exit", check)
      check()
    })
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    await exited
  }
  return { child, started, kill, output: () => output }
}
