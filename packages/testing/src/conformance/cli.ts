/**
 * The `flexec-conformance` command: runs the conformance suite on a launcher
 * module through vitest's Node API, prints a pass / fail / skip table, and
 * optionally writes JUnit XML.
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"

/** One row of the report. */
export interface ConformanceRow {
  readonly group: string
  readonly test: string
  readonly status: "pass" | "fail" | "skip"
  readonly reason: string
}

/** Parsed arguments of the command. */
export interface CliArgs {
  readonly module: string
  readonly junit: string | undefined
}

const usage = "usage: flexec-conformance <module> [--junit <file>]\n" +
  "  <module>  a path or package name exporting makeLauncher (or a default export): a launcher factory.\n" +
  "            Optional exports: name, workerCommand, timeouts, executorOptions, jobEnvAdditions, unavailable, staleRecord."

/** Parses argv (without node and the script). */
export const parseArgs = (argv: ReadonlyArray<string>): CliArgs | string => {
  let module: string | undefined
  let junit: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === "--junit") {
      junit = argv[++i]
      if (junit === undefined) return usage
    } else if (a.startsWith("--junit=")) junit = a.slice("--junit=".length)
    else if (a === "-h" || a === "--help") return usage
    else if (module === undefined) module = a
    else return usage
  }
  return module === undefined ? usage : { module, junit }
}

/** Resolves a module argument: an existing path, else a package name from the working directory. */
export const resolveModule = (spec: string, cwd: string = process.cwd()): string => {
  const asPath = path.resolve(cwd, spec)
  if (fs.existsSync(asPath)) return asPath
  return createRequire(path.join(cwd, "package.json")).resolve(spec)
}

const entrySource = (suiteModule: string, target: string) => `
import { conformanceSuite } from ${JSON.stringify(pathToFileURL(suiteModule).href)}
const mod = await import(${JSON.stringify(pathToFileURL(target).href)})
const pick = (k) => mod[k] ?? mod.default?.[k]
const makeLauncher = pick("makeLauncher") ?? (typeof mod.default === "function" ? mod.default : undefined)
if (typeof makeLauncher !== "function") throw new Error(${JSON.stringify(`${target} exports no makeLauncher (nor a default launcher factory)`)})
const options = { name: pick("name") ?? ${JSON.stringify(path.basename(target))}, makeLauncher }
for (const k of ["workerCommand", "timeouts", "executorOptions", "jobEnvAdditions", "unavailable", "staleRecord"]) if (pick(k) !== undefined) options[k] = pick(k)
conformanceSuite(options)
`

interface TaskLike {
  readonly type: string
  readonly name: string
  readonly mode?: string
  readonly result?: { readonly state?: string; readonly errors?: ReadonlyArray<{ readonly message?: string }> }
  readonly tasks?: ReadonlyArray<TaskLike>
}

/** Flattens vitest's task tree into rows: group = the path under the suite's top describe. */
export const rowsOf = (files: ReadonlyArray<TaskLike>): Array<ConformanceRow> => {
  const rows: Array<ConformanceRow> = []
  const walk = (task: TaskLike, trail: ReadonlyArray<string>) => {
    if (task.type === "test") {
      const state = task.result?.state
      const skipped = task.mode === "skip" || task.mode === "todo" || state === "skip"
      const status = skipped ? "skip" : state === "pass" ? "pass" : "fail"
      const reason = skipped
        ? (/\[skipped: ([^\]]+)\]/.exec(task.name)?.[1] ?? "skipped")
        : status === "fail"
          ? (task.result?.errors?.[0]?.message ?? "failed").split("\n")[0]!
          : ""
      rows.push({ group: trail.slice(1).join(" > ") || trail.join(" > "), test: task.name.replace(/ \[skipped: [^\]]+\]$/, ""), status, reason })
      return
    }
    for (const child of task.tasks ?? []) walk(child, task.type === "suite" ? [...trail, task.name] : trail)
  }
  for (const file of files) for (const t of file.tasks ?? []) walk(t, [])
  return rows
}

/** The table the command prints. */
export const formatTable = (rows: ReadonlyArray<ConformanceRow>): string => {
  const head: ConformanceRow = { group: "group", test: "test", status: "status" as never, reason: "reason" }
  const all = [head, ...rows]
  const w = (k: keyof ConformanceRow, max: number) => Math.min(max, Math.max(...all.map((r) => r[k].length)))
  const widths = { group: w("group", 24), test: w("test", 80), status: 6 }
  const cell = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n))
  const lines = all.map((r) => `${cell(r.group, widths.group)}  ${cell(r.test, widths.test)}  ${cell(r.status, widths.status)}  ${r.reason}`)
  const count = (s: string) => rows.filter((r) => r.status === s).length
  return `${lines.join("\n")}\n\n${count("pass")} passed, ${count("fail")} failed, ${count("skip")} skipped\n`
}

const dynamicImport = new Function("s", "return import(s)") as (s: string) => Promise<any>

/**
 * Runs the suite on `args.module`; `suiteModule` is the file exporting
 * `conformanceSuite` (the package's built ESM entry). Resolves to the exit code.
 */
export const runCli = async (argv: ReadonlyArray<string>, suiteModule: string, out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> => {
  const args = parseArgs(argv)
  if (typeof args === "string") {
    out(`${args}\n`)
    return 2
  }
  let target: string
  try {
    target = resolveModule(args.module)
  } catch (e) {
    out(`flexec-conformance: cannot find ${args.module}: ${e instanceof Error ? e.message : String(e)}\n`)
    return 2
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flexec-conformance-"))
  try {
    const entry = path.join(dir, "conformance.test.mjs")
    fs.writeFileSync(entry, entrySource(suiteModule, target))
    let startVitest: (...args: Array<unknown>) => Promise<any>
    try {
      ;({ startVitest } = await dynamicImport("vitest/node"))
    } catch (e) {
      // vitest is an optional peer of @flexec/testing: only the suite needs it
      out(`flexec-conformance: the suite runs under vitest, which is not installed here: npm i -D vitest@~3.2.7 (${e instanceof Error ? e.message.split("\n")[0] : String(e)})\n`)
      return 2
    }
    const reporters: Array<unknown> = ["dot"]
    const junit = args.junit === undefined ? undefined : path.resolve(args.junit)
    if (junit !== undefined) reporters.push(["junit", { outputFile: junit }])
    const vitest = await startVitest("test", [], {
      root: dir,
      dir,
      include: ["conformance.test.mjs"],
      watch: false,
      reporters,
      testTimeout: 120_000,
      hookTimeout: 60_000,
      fileParallelism: false
    })
    const files = vitest?.state.getFiles() ?? []
    await vitest?.close()
    const rows = rowsOf(files as ReadonlyArray<TaskLike>)
    out(`\n${formatTable(rows)}`)
    const fileFailed = (files as ReadonlyArray<TaskLike>).some((f) => f.result?.state === "fail")
    return rows.length === 0 || fileFailed || rows.some((r) => r.status === "fail") ? 1 : 0
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
