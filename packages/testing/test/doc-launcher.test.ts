/**
 * docs/WRITING_A_BACKEND.md §4 prints a minimal launcher: this test takes that
 * code block out of the markdown as it is, writes it as a module, and runs the
 * whole conformance suite on it. The printed launcher must stay safe.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { conformanceSuite } from "../src/index.js"
import type { JobLauncher } from "@flexec/core"

const here = path.dirname(fileURLToPath(import.meta.url))
const doc = path.resolve(here, "../../../docs/WRITING_A_BACKEND.md")

/** The first `ts` code block after the heading `## 4. A minimal launcher`. */
export const minimalLauncherSource = (markdown: string): string => {
  const from = markdown.indexOf("## 4. A minimal launcher")
  if (from < 0) throw new Error("WRITING_A_BACKEND.md has no section '## 4. A minimal launcher'")
  const block = /```ts[^\n]*\n([\s\S]*?)\n```/.exec(markdown.slice(from))
  if (block === null) throw new Error("WRITING_A_BACKEND.md §4 has no ts code block")
  return `${block[1]}\n`
}

const out = path.join(here, ".generated", "minimal-launcher.ts")
fs.mkdirSync(path.dirname(out), { recursive: true })
fs.writeFileSync(out, minimalLauncherSource(fs.readFileSync(doc, "utf8")))
const { makeMyLauncher } = (await import(/* @vite-ignore */ out)) as { readonly makeMyLauncher: () => JobLauncher }

conformanceSuite({
  name: "WRITING_A_BACKEND.md §4",
  makeLauncher: () => makeMyLauncher(),
  timeouts: { eventMs: 8_000, startTimeoutMs: 8_000, shortStartTimeoutMs: 800, processGoneMs: 3_000 }
})
