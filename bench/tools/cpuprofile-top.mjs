// Prints the top self-time functions of a .cpuprofile (node --cpu-prof).
// Usage: node bench/tools/cpuprofile-top.mjs <file.cpuprofile> [count] [filter]
import * as fs from "node:fs"
const [file, count = "30", filter] = process.argv.slice(2)
const prof = JSON.parse(fs.readFileSync(file, "utf8"))
const byId = new Map(prof.nodes.map((n) => [n.id, n]))
const self = new Map()
const dts = prof.timeDeltas
for (let i = 0; i < prof.samples.length; i++) {
  const n = byId.get(prof.samples[i])
  const f = n.callFrame
  const key = `${f.functionName || "(anon)"} ${f.url.replace(/^.*node_modules\//, "nm/").replace(/^file:\/\/\/work\/main\//, "")}:${f.lineNumber + 1}`
  self.set(key, (self.get(key) ?? 0) + (dts[i] ?? 0))
}
const total = [...self.values()].reduce((a, b) => a + b, 0)
const rows = [...self.entries()].filter(([k]) => !filter || k.includes(filter)).sort((a, b) => b[1] - a[1]).slice(0, Number(count))
for (const [k, v] of rows) console.log(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`)
console.log(`total ${(total / 1000).toFixed(0)} ms`)
// With BOTTOMUP=<name>: the call stacks (5 frames) that spend self time in functions named <name>.
if (process.env.BOTTOMUP) {
  const parent = new Map()
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const stacks = new Map()
  for (let i = 0; i < prof.samples.length; i++) {
    let n = byId.get(prof.samples[i])
    if (n.callFrame.functionName !== process.env.BOTTOMUP) continue
    const frames = []
    for (let d = 0; d < Number(process.env.DEPTH ?? 8) && n; d++) {
      frames.push(`${n.callFrame.functionName || "(anon)"}@${n.callFrame.url.split("/").slice(-2).join("/")}:${n.callFrame.lineNumber + 1}`)
      n = byId.get(parent.get(n.id))
    }
    const k = frames.join(" < ")
    stacks.set(k, (stacks.get(k) ?? 0) + (dts[i] ?? 0))
  }
  for (const [k, v] of [...stacks.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6)) console.log(`${(v / 1000).toFixed(0)} ms  ${k}`)
}
