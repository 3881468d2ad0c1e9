// Inclusive time of the functions of files matching a filter in a .cpuprofile.
// Usage: node bench/tools/cpuprofile-incl.mjs <file> <url-substring> [count]
import * as fs from "node:fs"
const [file, filter, count = "30"] = process.argv.slice(2)
const prof = JSON.parse(fs.readFileSync(file, "utf8"))
const byId = new Map(prof.nodes.map((n) => [n.id, n]))
const parent = new Map()
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const incl = new Map()
let total = 0
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0
  total += dt
  const seen = new Set()
  for (let n = byId.get(prof.samples[i]); n; n = byId.get(parent.get(n.id))) {
    const f = n.callFrame
    if (!f.url.includes(filter)) continue
    const k = `${f.functionName || "(anon)"} ${f.url.split("/").slice(-2).join("/")}:${f.lineNumber + 1}`
    if (seen.has(k)) continue
    seen.add(k)
    incl.set(k, (incl.get(k) ?? 0) + dt)
  }
}
for (const [k, v] of [...incl.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(count))) console.log(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`)
