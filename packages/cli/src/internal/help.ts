/**
 * The command line's own help and its first check of the arguments: plain
 * text (no ANSI escapes, ever), the defaults shown, `flexec <command>` in the
 * usage, and an unknown option named as the culprit. `@effect/cli` parses
 * what passes this check.
 *
 * @internal
 */

/** An option of a command. */
export interface OptionSpec {
  readonly name: string
  /** The value's placeholder (`<dir>`); none for a flag. */
  readonly value?: string
  readonly default?: string
  readonly description: string
}

/** A command: its usage, what it does, its arguments and options. */
export interface CommandSpec {
  readonly name: string
  readonly args: ReadonlyArray<{ readonly name: string; readonly description: string }>
  readonly summary: string
  readonly options: ReadonlyArray<OptionSpec>
  readonly notes?: ReadonlyArray<string>
}

const verbose: OptionSpec = { name: "verbose", description: "on an error, also print its full cause (stack traces)" }

/** The commands of `flexec`, as their help shows them. */
export const commandSpecs: ReadonlyArray<CommandSpec> = [
  {
    name: "run",
    args: [{ name: "job-dir", description: "the job folder: meta.json and app/ (main.js, main.mjs or main.py)" }],
    summary: "Deploy a job folder into a workspace and run it; the exit status is the job's return code.",
    options: [
      { name: "backend", value: "process|docker", default: "process", description: "where the job runs: a child process or a Docker container" },
      { name: "workspace", value: "<dir>", default: "a temporary folder, removed at the end", description: "deploy here and keep it afterwards" },
      { name: "site", value: "<name>", default: "site-1", description: "the client (site) name the job runs as (app_<site>)" },
      { name: "image", value: "<image>", default: "the job's launcher_spec", description: "--backend docker only: the container image" },
      {
        name: "command",
        value: "<cmd>",
        default: "node for app/main.js|main.mjs, python3 for app/main.py",
        description: "the job's command line; placeholders {appDir} {jobDir} {workspace} {jobId} {startup}"
      },
      { name: "start-timeout", value: "<s>", default: "60", description: "seconds the job has to connect and report Started (call runJob)" },
      { name: "grace", value: "<s>", default: "10", description: "seconds an aborted job may take to stop before SIGTERM" },
      { name: "json", default: "off", description: "one JSON object per line (events, log lines, stats, the outcome last)" },
      verbose
    ],
    notes: [
      "Ctrl-C, SIGTERM, SIGHUP or a closed output abort the job (it gets --grace seconds, then SIGTERM,",
      "then SIGKILL after 5 s) and exit 9 once it ended; a second Ctrl-C kills it at once."
    ]
  },
  {
    name: "doctor",
    args: [],
    summary: "Show what this machine offers flexec (Node, Docker, Slurm, GPUs, runtime dir, job channel, CA certificates) and how to fix problems.",
    options: [
      { name: "channel", value: "unix|tcp|tls", default: "unix", description: "the job channel to open and reach as a job would (tls: the certificate pinned)" },
      { name: "advertise-host", value: "<host>", description: "with --channel tcp|tls: the host jobs are told to connect to" },
      verbose
    ]
  },
  {
    name: "conformance",
    args: [{ name: "module", description: "a path or package name exporting makeLauncher (or a default launcher factory)" }],
    summary: "Run the backend conformance suite of @flexec/testing on a launcher module (a pass/fail/skip table).",
    options: [{ name: "junit", value: "<file>", description: "also write a JUnit XML report to this file" }, verbose]
  }
]

const usageOf = (c: CommandSpec): string => `flexec ${c.name} [options]${c.args.map((a) => ` <${a.name}>`).join("")}`

const table = (rows: ReadonlyArray<readonly [string, string]>): Array<string> => {
  const width = Math.max(...rows.map(([left]) => left.length))
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`)
}

/** The help of one command. */
export const commandHelp = (c: CommandSpec): string =>
  [
    `usage: ${usageOf(c)}`,
    "",
    c.summary,
    ...(c.args.length > 0 ? ["", "arguments:", ...table(c.args.map((a) => [`<${a.name}>`, a.description] as const))] : []),
    "",
    "options:",
    ...table(
      c.options.map((o) => [
        `--${o.name}${o.value !== undefined ? ` ${o.value}` : ""}`,
        `${o.description}${o.default !== undefined ? ` (default: ${o.default})` : ""}`
      ] as const)
    ),
    ...(c.notes !== undefined ? ["", ...c.notes] : []),
    ""
  ].join("\n")

/** The help of `flexec` itself. */
export const rootHelp = (version: string): string =>
  [
    `flexec ${version}: run federated-learning jobs as isolated workers (child processes or Docker containers).`,
    "",
    "usage: flexec <command> [options]",
    "",
    "commands:",
    ...table(commandSpecs.map((c) => [c.name, c.summary] as const)),
    "",
    "  flexec <command> --help   shows a command's options",
    "  flexec --version          prints the version",
    ""
  ].join("\n")

/** What the first look at the arguments found. */
export type Precheck =
  | { readonly _tag: "Help"; readonly text: string }
  | { readonly _tag: "Usage"; readonly message: string }
  | { readonly _tag: "Parse" }

/**
 * Looks at the arguments after `node` and the script: `--help` / `-h` gives a
 * command's help; an option the command does not have is named.
 */
export const precheck = (args: ReadonlyArray<string>, version: string): Precheck => {
  const first = args[0]
  const command = commandSpecs.find((c) => c.name === first)
  if (command === undefined) {
    if (args.includes("--help") || args.includes("-h")) return { _tag: "Help", text: rootHelp(version) }
    return { _tag: "Parse" }
  }
  const rest = args.slice(1)
  if (rest.includes("--help") || rest.includes("-h")) return { _tag: "Help", text: commandHelp(command) }
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (arg === "--") break
    if (!arg.startsWith("-") || arg === "-") continue
    const name = arg.replace(/^--?/, "").split("=")[0]!
    const option = command.options.find((o) => o.name === name)
    if (option === undefined) {
      return { _tag: "Usage", message: `unknown option ${arg.split("=")[0]} for flexec ${command.name} (flexec ${command.name} --help lists its options)` }
    }
    if (option.value !== undefined && !arg.includes("=")) i++
  }
  return { _tag: "Parse" }
}
