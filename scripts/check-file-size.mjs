#!/usr/bin/env node
// Fails when a source file in packages/*/src is over MAX_LINES lines, except the
// files in ALLOWED, each of which may not grow beyond the size written beside it.
// The list only shrinks: docs/DECISIONS.md ("Files over 400 lines") says why each
// file is there and what splits it. Run by `npm run lint`.
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const MAX_LINES = 400

/** Files with a tighter limit of their own, and why. */
const TIGHTER = {
  // the engine's public module only assembles the parts in internal/engine/ (docs/ARCHITECTURE.md)
  "packages/core/src/JobExecutor.ts": 200
}

/** Files over the limit when the check came in, with their size then (lines). */
const ALLOWED = {}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const files = []
const walk = (dir) => {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) walk(full)
    else if (/\.(ts|mts|cts)$/.test(entry.name) && !entry.name.endsWith(".d.ts")) files.push(full)
  }
}
for (const pkg of fs.readdirSync(path.join(root, "packages"))) {
  const src = path.join(root, "packages", pkg, "src")
  if (fs.existsSync(src)) walk(src)
}

const lines = (file) => {
  const text = fs.readFileSync(file, "utf8")
  return text.length === 0 ? 0 : text.split("\n").length - (text.endsWith("\n") ? 1 : 0)
}

const problems = []
const notes = []
for (const file of files.sort()) {
  const rel = path.relative(root, file).split(path.sep).join("/")
  const count = lines(file)
  const allowed = ALLOWED[rel]
  const tighter = TIGHTER[rel]
  if (tighter !== undefined && count > tighter) problems.push(`${rel}: ${count} lines, over its own limit of ${tighter}`)
  if (allowed === undefined) {
    if (count > MAX_LINES) problems.push(`${rel}: ${count} lines, over ${MAX_LINES} (split it by concept)`)
  } else if (count > allowed) {
    problems.push(`${rel}: ${count} lines, more than the ${allowed} it is allowed (the allowlist only shrinks)`)
  } else if (count <= MAX_LINES) {
    notes.push(`${rel}: ${count} lines, now within ${MAX_LINES}: remove it from the allowlist in scripts/check-file-size.mjs`)
  } else if (count < allowed) {
    notes.push(`${rel}: ${count} lines (allowed ${allowed}): lower its entry in scripts/check-file-size.mjs`)
  }
}
for (const rel of Object.keys(ALLOWED)) {
  if (!fs.existsSync(path.join(root, rel))) notes.push(`${rel}: gone: remove it from the allowlist in scripts/check-file-size.mjs`)
}
for (const note of notes) console.warn(`note: ${note}`)
if (problems.length > 0) {
  for (const problem of problems) console.error(`error: ${problem}`)
  process.exit(1)
}
console.log(`file sizes: ${files.length} files, none over ${MAX_LINES} lines beyond the allowlist (${Object.keys(ALLOWED).length} files)`)
