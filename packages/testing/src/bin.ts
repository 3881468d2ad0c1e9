/**
 * `flexec-conformance <module> [--junit <file>]`: the conformance suite as a command.
 *
 * @since 0.1.0
 */
import * as path from "node:path"
import { runCli } from "./conformance/cli.js"

runCli(process.argv.slice(2), path.join(__dirname, "index.js")).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    process.stderr.write(`flexec-conformance: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
    process.exitCode = 1
  }
)
