/**
 * What `@effect/cli` needs from the platform, for Node, without
 * `@effect/platform-node` (which pulls `@effect/cluster`, `@effect/rpc`,
 * `@effect/sql` and a native file watcher into every install): a path
 * service, a file system that is never used (no option reads a file), a
 * terminal that only writes (the CLI never prompts), and running a program.
 *
 * @internal
 */
import { FileSystem, Path, Terminal } from "@effect/platform"
import { Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import { writeOut } from "./output.js"

/** A terminal for `@effect/cli` that displays on stdout and has no input. */
const terminal: Terminal.Terminal = {
  columns: Effect.sync(() => process.stdout.columns ?? 80),
  rows: Effect.sync(() => process.stdout.rows ?? 24),
  isTTY: Effect.sync(() => process.stdout.isTTY === true),
  readInput: Effect.dieMessage("flexec reads no terminal input"),
  readLine: Effect.fail(new Terminal.QuitException()),
  display: (text) => Effect.sync(() => writeOut(text))
}

/** The environment `Command.run` of `@effect/cli` requires. */
export const CliEnvironment: Layer.Layer<FileSystem.FileSystem | Path.Path | Terminal.Terminal> = Layer.mergeAll(
  FileSystem.layerNoop({}),
  Path.layer,
  Layer.succeed(Terminal.Terminal, terminal)
)

/** Runs `file` with `args` and its stdio inherited; succeeds with the exit code (128 + n for a signal). */
export const runInherited = (file: string, args: ReadonlyArray<string>): Effect.Effect<number, Error> =>
  Effect.async<number, Error>((resume) => {
    const child = spawn(file, args, { stdio: "inherit" })
    child.once("error", (e) => resume(Effect.fail(e)))
    child.once("exit", (code, signal) => resume(Effect.succeed(code ?? (signal === null ? 1 : 128 + (signalNumber(signal) ?? 0)))))
    return Effect.sync(() => void child.kill("SIGTERM"))
  })

const signalNumber = (signal: NodeJS.Signals): number | undefined =>
  ({ SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 } as Partial<Record<NodeJS.Signals, number>>)[signal]

/** Runs `file` with `args` and collects its stdout; fails when it cannot start or exits non-zero. */
export const runForOutput = (file: string, args: ReadonlyArray<string>): Effect.Effect<string, Error> =>
  Effect.async<string, Error>((resume) => {
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "ignore"] })
    let out = ""
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c))
    child.once("error", (e) => resume(Effect.fail(e)))
    child.once("close", (code) => resume(code === 0 ? Effect.succeed(out) : Effect.fail(new Error(`${file} exited with ${code}`))))
    return Effect.sync(() => void child.kill("SIGKILL"))
  })
