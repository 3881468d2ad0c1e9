#!/usr/bin/env node
// flexec benchmarks: `npm run bench [-- [--quick] [--check] [--no-write] [name ...]]`.
// Names: start-process rtt bulk channel start-docker start-slurm scale abort codec (default: all).
// Each measurement runs flexec and its raw baseline in this same process,
// paired and interleaved, and the table of medians and ratios (flexec / raw)
// is printed and written to bench/RESULTS.md. --check exits 1 when a ratio
// misses its bar. Never part of `npm test` or CI.
import { execSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { benchDir } from "./lib/common.mjs"

const all = ["codec", "start-process", "rtt", "bulk", "channel", "abort", "scale", "start-docker", "start-slurm"]
const args = process.argv.slice(2)
const quick = args.includes("--quick")
const check = args.includes("--check")
const write = !args.includes("--no-write")
const outArg = args.find((a) => a.startsWith("--out="))
const names = args.filter((a) => !a.startsWith("--"))
for (const n of names) {
  if (!all.includes(n)) {
    console.error(`unknown benchmark ${n}; known: ${all.join(" ")}`)
    process.exit(2)
  }
}
const selected = names.length > 0 ? all.filter((n) => names.includes(n)) : all
const log = (s) => console.error(`[bench] ${s}`)

const cpu = os.cpus()[0]?.model ?? "unknown CPU"
const loadBefore = os.loadavg()
const startedAt = new Date()
let commit = "unknown"
try {
  commit = execSync("git rev-parse --short HEAD", { cwd: benchDir, stdio: ["ignore", "pipe", "ignore"] }).toString().trim()
} catch {}

const rows = []
const failures = []
for (const name of selected) {
  const t0 = Date.now()
  log(`${name}: running${quick ? " (quick)" : ""}, load ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`)
  try {
    const suite = await import(`./suites/${name}.mjs`)
    rows.push(...(await suite.run({ quick, log })))
  } catch (error) {
    failures.push(`${name}: ${error?._tag ?? ""} ${error?.message ?? error}`)
    log(`${name} FAILED: ${error?.stack ?? error}`)
    rows.push({ id: name, what: `${name} did not complete`, flexec: "–", raw: "–", ratio: NaN, bar: { op: "<=", value: NaN }, pass: false, note: String(error?.message ?? error).slice(0, 200) })
  }
  log(`${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`)
}
const loadAfter = os.loadavg()

const fmtRatio = (r) => (Number.isFinite(r) ? r.toFixed(2) : "–")
const fmtBar = (b) => (b === undefined ? "(reported)" : `${b.op === "<=" ? "≤" : "≥"} ${b.value}`)
const verdict = (r) => (r.pass === undefined ? "" : r.pass ? "pass" : "**MISS**")
const esc = (s) => String(s).replaceAll("|", "\\|")
const peerRows = rows.filter((r) => r.peer)
const barRows = rows.filter((r) => !r.peer)
const table = [
  "| # | measurement | flexec | raw baseline | ratio | bar | verdict | notes |",
  "|---|---|---|---|---|---|---|---|",
  ...barRows.map((r) => `| ${r.id} | ${esc(r.what)} | ${esc(r.flexec)} | ${esc(r.raw)} | ${fmtRatio(r.ratio)} | ${fmtBar(r.bar)} | ${verdict(r)} | ${esc(r.note)} |`)
].join("\n")
// Side by side with the peers: every contender of a figure, sampled in the same rotated rounds.
const peerTable =
  peerRows.length === 0
    ? ""
    : [
        "Side by side (same run, rotated rounds; for MB/s and msg/s the p99 column is the rate at the p99 time, and a ratio > 1 is faster):",
        "",
        "| # | figure | who | version | p50 | p99 | × raw | × flexec | n |",
        "|---|---|---|---|---|---|---|---|---|",
        ...peerRows.map((r) => `| ${r.id} | ${esc(r.figure)} | ${esc(r.who)} | ${esc(r.version)} | ${esc(r.p50)} | ${esc(r.p99)} | ${fmtRatio(r.xRaw)} | ${fmtRatio(r.xFlexec)} | ${r.n} |`)
      ].join("\n")

const machine = [
  `- machine: ${cpu}, ${os.cpus().length} cores, ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, ${os.type()} ${os.release()}`,
  `- Node ${process.version}; flexec commit ${commit}; ${startedAt.toISOString()}; ${quick ? "**--quick** (fewer runs)" : "full run"}; measurements: ${selected.join(", ")}`,
  `- load average (1/5/15 min) before: ${loadBefore.map((x) => x.toFixed(2)).join(" / ")}, after: ${loadAfter.map((x) => x.toFixed(2)).join(" / ")}`
].join("\n")

console.log(`\n${machine}\n\n${table}\n${peerTable ? `\n${peerTable}\n` : ""}`)
if (failures.length > 0) console.log(`failed to run: ${failures.join("; ")}`)

if (write) {
  // A full run of every measurement writes bench/RESULTS.md (with bench/FINDINGS.md
  // appended); a --quick or partial run writes bench/RESULTS.generated.md (not committed).
  const full = !quick && selected.length === all.length
  const out = outArg ? path.resolve(outArg.slice("--out=".length)) : path.join(benchDir, full ? "RESULTS.md" : "RESULTS.generated.md")
  const findingsPath = path.join(benchDir, "FINDINGS.md")
  const findings = fs.existsSync(findingsPath) ? `\n${fs.readFileSync(findingsPath, "utf8")}` : ""
  const how = [
    "How: `npm run bench` (`-- --quick` for a smoke run, `-- --check` to exit 1 on a missed bar, `-- <name> ...` to select:",
    `${all.join(", ")}). flexec and its raw baseline run in this one process, paired and interleaved (A B, B A, …),`,
    "after a warm-up; both children get flexec's allowlisted environment (no NODE_EXTRA_CA_CERTS). Ratio = flexec / raw",
    "unless the notes say otherwise."
  ].join("\n")
  fs.writeFileSync(out, `# flexec benchmark results\n\n${machine}\n\n${how}\n\n${table}\n${peerTable ? `\n${peerTable}\n` : ""}${failures.length > 0 ? `\nFailed to run: ${failures.join("; ")}\n` : ""}${findings}`)
  log(`wrote ${out}`)
}

const missed = barRows.filter((r) => r.pass === false)
if (check && missed.length > 0) {
  console.error(`--check: ${missed.length} ratio(s) missed their bar: ${missed.map((r) => `${r.id} ${r.what}`).join("; ")}`)
  process.exit(1)
}
process.exit(0)
