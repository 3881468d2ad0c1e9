/**
 * `flexec doctor`: what this machine offers flexec, and a plain fix for each problem.
 *
 * @since 0.1.0
 */
import { Command as CliCommand, Options } from "@effect/cli"
import { defaultRuntimeDir } from "@flexec/core"
import { resolveEndpoint } from "@flexec/executor-docker"
import { Effect, Option, Ref } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { channelCheck } from "./internal/channel.js"
import type { ChannelChoice } from "./internal/channel.js"
import { ExitStatus } from "./internal/exitStatus.js"
import { slurmChecks } from "./internal/slurm.js"
import { verboseOption } from "./RunCommand.js"
import { runForOutput } from "./internal/platform.js"

/** One finding: `ok`, `warn` (a problem for some uses), `fail` (the process backend cannot work), or `info`. */
export interface Check {
  readonly level: "ok" | "warn" | "fail" | "info"
  readonly name: string
  readonly detail: string
  readonly fix?: string
}

/** The longest unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
export const maxSocketPath = 107

const nodeCheck = (): Check => {
  const major = Number(process.versions.node.split(".")[0])
  return major >= 20
    ? { level: "ok", name: "node", detail: `${process.version} (${process.execPath})` }
    : { level: "fail", name: "node", detail: `${process.version}: flexec needs Node 20 or newer`, fix: "install Node 20 or newer (https://nodejs.org)" }
}

/** GET `/version` of the Docker engine with a short timeout. */
const dockerVersion = (timeoutMs: number): Effect.Effect<{ readonly label: string; readonly version: Option.Option<string>; readonly error: Option.Option<string> }> => {
  const endpoint = resolveEndpoint()
  return Effect.async<string, string>((resume) => {
    const req = http.get({
      path: "/version",
      ...(endpoint.socketPath !== undefined ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port }),
      timeout: timeoutMs
    }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => (body += c))
      res.on("end", () => {
        if (res.statusCode !== 200) return resume(Effect.fail(`the engine answered HTTP ${res.statusCode}`))
        try {
          const v = JSON.parse(body) as { Version?: string; ApiVersion?: string }
          resume(Effect.succeed(`${v.Version ?? "unknown version"} (API ${v.ApiVersion ?? "?"})`))
        } catch {
          resume(Effect.fail("the engine's answer is not JSON"))
        }
      })
    })
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    req.on("error", (e: NodeJS.ErrnoException) => resume(Effect.fail(e.code !== undefined ? `${e.code}: ${e.message}` : e.message)))
    return Effect.sync(() => req.destroy())
  }).pipe(
    Effect.timeoutFail({ duration: timeoutMs + 500, onTimeout: () => `no answer within ${timeoutMs} ms` }),
    Effect.match({
      onFailure: (error) => ({ label: endpoint.label, version: Option.none(), error: Option.some(error) }),
      onSuccess: (version) => ({ label: endpoint.label, version: Option.some(version), error: Option.none() })
    })
  )
}

const dockerCheck = Effect.gen(function* () {
  const probe = yield* dockerVersion(2000)
  if (Option.isSome(probe.version)) {
    return { level: "ok", name: "docker", detail: `engine reachable at ${probe.label}: ${probe.version.value}` } satisfies Check
  }
  const error = Option.getOrElse(probe.error, () => "unknown error")
  return {
    level: "warn",
    name: "docker",
    detail: `engine unreachable at ${probe.label} (${error}); only --backend docker needs it`,
    fix: process.env.DOCKER_HOST !== undefined
      ? `DOCKER_HOST=${process.env.DOCKER_HOST}: point it at a running engine (unix:///var/run/docker.sock) or unset it, or start the engine`
      : "start the Docker engine (e.g. `sudo systemctl start docker`), or set DOCKER_HOST=unix:///path/to/docker.sock"
  } satisfies Check
})

const gpuCheck = runForOutput("nvidia-smi", ["--query-gpu=index,name,memory.total", "--format=csv,noheader"]).pipe(
  Effect.timeout("5 seconds"),
  Effect.map((out): Check => {
    const gpus = out.split("\n").map((l) => l.trim()).filter((l) => l !== "")
    return gpus.length === 0
      ? { level: "info", name: "gpus", detail: "nvidia-smi lists no GPU: jobs run on CPU" }
      : { level: "ok", name: "gpus", detail: `${gpus.length} GPU(s): ${gpus.join("; ")}` }
  }),
  Effect.catchAll(() =>
    Effect.succeed<Check>({ level: "info", name: "gpus", detail: "none seen (no nvidia-smi, or it failed): fine, jobs run on CPU; GPU jobs need the NVIDIA driver" })
  )
)

const runtimeCheck = (): Check => {
  const dir = defaultRuntimeDir("process", "default")
  const socket = path.join(dir, "ch", "xxxxxxxx", "ch.sock")
  const bytes = Buffer.byteLength(socket)
  const tmp = os.tmpdir()
  let writable = true
  try {
    fs.accessSync(tmp, fs.constants.W_OK)
  } catch {
    writable = false
  }
  if (!writable) {
    return { level: "fail", name: "runtime", detail: `runtime dir ${dir}: ${tmp} is not writable`, fix: "set TMPDIR to a short, writable folder (e.g. TMPDIR=/tmp)" }
  }
  if (bytes > maxSocketPath) {
    return {
      level: "fail",
      name: "runtime",
      detail: `runtime dir ${dir}: a job's socket path ${socket} is ${bytes} bytes, over the ${maxSocketPath}-byte limit`,
      fix: "set TMPDIR to a shorter folder (e.g. TMPDIR=/tmp), or give executors a short runtimeDir"
    }
  }
  return { level: "ok", name: "runtime", detail: `runtime dir ${dir}; job socket path ${bytes} bytes (limit ${maxSocketPath})` }
}

const caCheck = (): Check => {
  const value = process.env.NODE_EXTRA_CA_CERTS
  return value === undefined || value === ""
    ? { level: "ok", name: "ca-certs", detail: "NODE_EXTRA_CA_CERTS is not set" }
    : {
      level: "warn",
      name: "ca-certs",
      detail: `NODE_EXTRA_CA_CERTS=${value} is set here, but jobs do not inherit it`,
      fix: "if jobs need it, pass it on: executor option inheritEnv: [\"NODE_EXTRA_CA_CERTS\"] (or env: { NODE_EXTRA_CA_CERTS: ... })"
    }
}

/** Every check, in the order they are printed; the channel check opens and reaches a `channel` job channel. */
export const doctorChecksWith = (channel: ChannelChoice = "unix", advertiseHost: Option.Option<string> = Option.none()) =>
  Effect.gen(function* () {
    const [docker, gpus, slurm, reach] = yield* Effect.all([dockerCheck, gpuCheck, slurmChecks, channelCheck(channel, advertiseHost)], { concurrency: 4 })
    return [nodeCheck(), docker, ...slurm, gpus, runtimeCheck(), reach, caCheck()] as ReadonlyArray<Check>
  })

/** Every check, in the order they are printed (the channel check over the default unix channel). */
export const doctorChecks = doctorChecksWith()

/** The report as text; one line per check, and its fix under it. */
export const formatChecks = (checks: ReadonlyArray<Check>): string =>
  checks
    .map((c) => `${c.level.padEnd(5)} ${c.name.padEnd(9)} ${c.detail}${c.fix === undefined ? "" : `\n${" ".repeat(16)}fix: ${c.fix}`}`)
    .join("\n") + "\n"

/** The `doctor` subcommand: exit 0 when the process backend can work here. */
export const doctorCommand = CliCommand.make("doctor", {
  verbose: verboseOption,
  channel: Options.choice("channel", ["unix", "tcp", "tls"]).pipe(
    Options.withDefault("unix" as const),
    Options.withDescription("the job channel to check: unix (a socket per job, the default), tcp, or tls (tcp with a pinned certificate)")
  ),
  advertiseHost: Options.text("advertise-host").pipe(
    Options.optional,
    Options.withDescription("with --channel tcp|tls: the host jobs are told to connect to (default: the listening address)")
  )
}, ({ advertiseHost, channel }) =>
  Effect.gen(function* () {
    const checks = yield* doctorChecksWith(channel, advertiseHost)
    yield* Effect.sync(() => process.stdout.write(formatChecks(checks)))
    const failed = checks.some((c) => c.level === "fail")
    yield* Effect.sync(() =>
      process.stdout.write(failed ? "\nthe process backend cannot run here: fix the lines marked fail\n" : "\nthe process backend can run here\n")
    )
    yield* Ref.set(yield* ExitStatus, failed ? 1 : 0)
  })
).pipe(CliCommand.withDescription("Show what this machine offers flexec (Node, Docker, Slurm, GPUs, runtime dir, job channel, CA certificates) and how to fix problems."))
