// Allocation (sampled bytes) per function of a .heapprofile, self. Usage: node bench/tools/heapprofile-top.mjs <file> [count]
import * as fs from "node:fs"
const [file, count = "30"] = process.argv.slice(2)
const prof = JSON.parse(fs.readFileSync(file, "utf8"))
const self = new Map()
let total = 0
const visit = (node) => {
  const bytes = node.selfSize
  total += bytes
  const f = node.callFrame
  const k = `${f.functionName || "(anon)"} ${f.url.replace(/^.*node_modules\//, "nm/").replace(/^.*\/work\/main\//, "")}:${f.lineNumber + 1}`
  self.set(k, (self.get(k) ?? 0) + bytes)
  for (const c of node.children ?? []) visit(c)
}
visit(prof.head)
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(count))) console.log(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${(v / 1048576).toFixed(1).padStart(7)} MiB  ${k}`)
console.log(`total ${(total / 1048576).toFixed(1)} MiB`)
