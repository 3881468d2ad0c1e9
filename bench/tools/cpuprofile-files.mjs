// Self time per script file of a .cpuprofile. Usage: node bench/tools/cpuprofile-files.mjs <file> [count]
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
const repoUrl = pathToFileURL(path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")).href + "/"
const [file, count = "25"] = process.argv.slice(2)
const prof = JSON.parse(fs.readFileSync(file, "utf8"))
const byId = new Map(prof.nodes.map((n) => [n.id, n]))
const self = new Map()
let total = 0
for (let i = 0; i < prof.samples.length; i++) {
  const f = byId.get(prof.samples[i]).callFrame
  const k = f.url ? f.url.replace(/^.*node_modules\//, "").replace(repoUrl, "") : f.functionName
  self.set(k, (self.get(k) ?? 0) + (prof.timeDeltas[i] ?? 0))
  total += prof.timeDeltas[i] ?? 0
}
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(count))) console.log(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`)
