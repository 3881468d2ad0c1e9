#!/usr/bin/env node
// The `flexec` command: loads the build (dist/bin.cjs). Committed so that npm links
// the bin at install time, before the workspace is built; says so when it is not built.
"use strict"
const fs = require("node:fs")
const path = require("node:path")
const target = path.join(__dirname, "..", "dist", "bin.cjs")
if (!fs.existsSync(target)) {
  process.stderr.write(`flexec: ${path.relative(process.cwd(), target) || target} is missing: this copy of @flexec/cli is not built (in the flexec repository: npm run build)\n`)
  process.exit(1)
}
require(target)
